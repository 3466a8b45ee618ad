"""The files of a Hugging Face checkpoint directory: config.json, safetensors (single or sharded) and
PyTorch `.bin` weights (single or sharded), read without `transformers`; safetensors written back.

The safetensors format is read and written here directly (8-byte little-endian header length, a JSON
header of name -> dtype, shape, byte offsets, then the raw little-endian bytes), memory-mapped, so
no extra dependency is needed and bfloat16 is read through `ml_dtypes` (a JAX dependency). `.bin`
files need torch (the `torch` extra) and are loaded with `weights_only=True`.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import ml_dtypes
import numpy as np

from core.errors import UsageError

DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": ml_dtypes.bfloat16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}
NAMES = {np.dtype(v): k for k, v in DTYPES.items()}
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def read_config(path) -> dict:
    """config.json of a checkpoint directory as a dict; a missing or unreadable one is a UsageError."""
    path = Path(path)
    if not path.is_dir():
        raise UsageError(f"Hugging Face checkpoint {str(path)!r} is not a directory")
    cfg = path / "config.json"
    try:
        out = json.loads(cfg.read_text())
    except FileNotFoundError:
        raise UsageError(f"Hugging Face checkpoint {str(path)!r} has no config.json") from None
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read {cfg}: {e}") from None
    if not isinstance(out, dict):
        raise UsageError(f"{cfg} is not a JSON object")
    return out


def read_safetensors(path) -> dict[str, np.ndarray]:
    """name -> array (memory-mapped, read-only) of one .safetensors file."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > size - 8:
                raise ValueError("header longer than the file")
            header = json.loads(f.read(n))
    except (OSError, ValueError, struct.error) as e:
        raise UsageError(f"cannot read safetensors file {path}: {e}") from None
    header.pop("__metadata__", None)
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n) if size > 8 + n else np.zeros(0, np.uint8)
    out = {}
    for name, info in header.items():
        if info["dtype"] not in DTYPES:
            raise UsageError(f"{path}: tensor {name!r} has dtype {info['dtype']}, which is not supported")
        lo, hi = info["data_offsets"]
        if hi > data.size:
            raise UsageError(f"{path}: tensor {name!r} runs past the end of the file (truncated?)")
        out[name] = data[lo:hi].view(DTYPES[info["dtype"]]).reshape(info["shape"])
    return out


def read_bin(path) -> dict[str, np.ndarray]:
    """name -> array of one PyTorch state-dict file (torch.load with weights_only=True)."""
    try:
        import torch  # optional extra: only .bin checkpoints need it
    except ImportError:
        raise UsageError(f"{path} is a PyTorch file: install the torch extra to read it") from None
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 (torch raises many types for a bad file)
        raise UsageError(f"cannot read PyTorch weights {path}: {type(e).__name__}") from None
    out = {}
    for name, t in sd.items():
        if t.dtype == torch.bfloat16:
            out[name] = t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        else:
            out[name] = t.numpy()
    return out


def read_weights(path) -> dict[str, np.ndarray]:
    """Every tensor of a checkpoint directory: model.safetensors (or its sharded index), else
    pytorch_model.bin (or its index). None of them is a UsageError naming the directory."""
    path = Path(path)
    for name in WEIGHT_FILES:
        f = path / name
        if not f.exists():
            continue
        reader = read_safetensors if "safetensors" in name else read_bin
        if not name.endswith(".index.json"):
            return reader(f)
        try:
            shards = sorted(set(json.loads(f.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, AttributeError) as e:
            raise UsageError(f"cannot read the shard index {f}: {e}") from None
        out = {}
        for shard in shards:
            if not (path / shard).exists():
                raise UsageError(f"{f} names the shard {shard!r}, which is missing")
            out.update(reader(path / shard))
        return out
    raise UsageError(f"Hugging Face checkpoint {str(path)!r} has no weights (looked for {', '.join(WEIGHT_FILES)})")


def write_safetensors(path, tensors: dict[str, np.ndarray], metadata: dict | None = None) -> None:
    """Write name -> array as one .safetensors file (written to a temporary name, then renamed)."""
    path = Path(path)
    header: dict = {"__metadata__": {"format": "pt", **(metadata or {})}}
    arrays, offset = [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        if a.dtype not in NAMES:
            raise ValueError(f"write_safetensors: {name} has dtype {a.dtype}")
        header[name] = {"dtype": NAMES[a.dtype], "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        arrays.append(a)
        offset += a.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    tmp = path.with_name(f".{path.name}.partial")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for a in arrays:
            f.write(a.tobytes())
    os.replace(tmp, path)
