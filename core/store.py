"""Run store: one directory per run, written atomically, resumable.

A run directory holds
  config.json     the full resolved config (written first)
  metrics.jsonl   one JSON object a line, flattened `a/b` keys, appended as the run goes
  points.parquet  its fit-ready points (written at the end)
  DONE            marker written last, atomically
A run id is a stable hash of its config, so a relaunch finds finished runs and skips them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import UsageError

_SAFE = re.compile(r"[A-Za-z0-9._-]+")
MAX_NAME = 100


def safe_name(name: str, what: str) -> str:
    """`name` when it is safe as one path component, else UsageError "bad <what> name '<name>': <why>".

    Safe: characters [A-Za-z0-9._-] only, not starting with '.', no '..', at most 100 characters.
    Every name that becomes part of a path (stage prefixes, proxy sizes, presets, sweep points) goes
    through here before anything is written.
    """
    shown = repr(name)[1:-1] if isinstance(name, str) else repr(name)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    if not isinstance(name, str) or not name:
        why = "it must be a non-empty string"
    elif len(name) > MAX_NAME:
        why = f"it is longer than {MAX_NAME} characters"
    elif not _SAFE.fullmatch(name):
        why = "use only letters, digits, '.', '_' and '-' (no path separators or spaces)"
    elif name.startswith("."):
        why = "it must not start with '.'"
    elif ".." in name:
        why = "it must not contain '..'"
    else:
        return name
    raise UsageError(f"bad {what} name '{shown}': {why}")


def inside(root: str | os.PathLike, path: str | os.PathLike) -> Path:
    """`path`, after checking that it resolves (symlinks followed) inside `root`; UsageError otherwise."""
    root_r, path_r = Path(root).resolve(), Path(path).resolve()
    if not path_r.is_relative_to(root_r):
        raise UsageError(f"refusing to write {path}: it resolves to {path_r}, outside {root_r}")
    return Path(path)


def to_jsonable(obj: Any) -> Any:
    """Dataclasses, tuples, numpy scalars/arrays and paths to plain JSON types (non-finite floats to None)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def canonical_json(obj: Any) -> str:
    return json.dumps(to_jsonable(obj), sort_keys=True, separators=(",", ":"))


def run_id(config: Any, prefix: str = "") -> str:
    """Stable id of a resolved config: sha256 of its canonical JSON (independent of process and dict order)."""
    digest = hashlib.sha256(canonical_json(config).encode()).hexdigest()[:12]
    return f"{prefix}-{digest}" if prefix else digest


_UMASK = os.umask(0)
os.umask(_UMASK)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temp file in the same directory, fsync, then rename over `path`.

    A crash before the rename leaves the previous file (if any) intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(to_jsonable(obj), indent=2, sort_keys=True) + "\n")


def atomic_write_parquet(path: str | os.PathLike, df) -> None:
    """Write a DataFrame as Parquet atomically."""
    import io

    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    atomic_write_bytes(path, buf.getvalue())


def flatten(d: dict, prefix: str = "") -> dict:
    """{'a': {'b': 1}} -> {'a/b': 1}."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}/{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


class Run:
    """One run directory. `Run.open(root, config)` creates it (or finds it) under `root/<run_id>`."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def file(self, name: str) -> Path:
        """The path of `name` inside this run, checked to resolve inside it (no symlinked escape)."""
        return inside(self.path, self.path / name)

    @classmethod
    def open(cls, root: str | os.PathLike, config: Any, prefix: str = "") -> Run:
        if prefix:
            safe_name(prefix, "stage")
        rid = run_id(config, prefix)
        run = cls(Path(root) / rid)
        inside(root, run.path)
        run.path.mkdir(parents=True, exist_ok=True)
        cfg_path = run.file("config.json")
        if cfg_path.exists():
            if canonical_json(json.loads(cfg_path.read_text())) != canonical_json(config):
                raise RuntimeError(f"run {run.path} exists with a different config (hash collision?)")
        else:
            atomic_write_json(cfg_path, config)
        return run

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def done(self) -> bool:
        return (self.path / "DONE").exists()

    def config(self) -> dict:
        return json.loads((self.path / "config.json").read_text())

    def log(self, metrics: dict, **extra) -> None:
        """Append one flattened JSON line to metrics.jsonl (a single write; a torn last line is skipped on read)."""
        row = flatten({**extra, **metrics})
        line = json.dumps(to_jsonable(row), sort_keys=True) + "\n"
        with open(self.file("metrics.jsonl"), "a") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def reset_metrics(self) -> None:
        """Start metrics afresh (a resumed run that restarts from its beginning)."""
        p = self.file("metrics.jsonl")
        if p.exists():
            p.unlink()

    def metrics(self) -> list[dict]:
        p = self.path / "metrics.jsonl"
        if not p.exists():
            return []
        rows = []
        for line in p.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # torn last line after a kill
                continue
        return rows

    def write_points(self, df) -> None:
        atomic_write_parquet(self.file("points.parquet"), df)

    def points(self):
        import pandas as pd

        return pd.read_parquet(self.path / "points.parquet")

    @contextlib.contextmanager
    def lock(self):
        """Exclusive lock on this run (an flock on `.lock`), held while a process computes it.

        Parallel sweep jobs that share a stage wait here; the one that got the lock first
        marks it DONE and the others then find it done. The OS drops the lock if a holder dies.
        """
        fd = os.open(self.file(".lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield self
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def mark_done(self, info: dict | None = None) -> None:
        atomic_write_json(self.file("DONE"), info or {})


def find_runs(root: str | os.PathLike, done_only: bool = True) -> list[Run]:
    """Every run directory (one holding config.json) at or below `root`, sorted by path."""
    root = Path(root)
    runs = [Run(p.parent) for p in sorted(root.rglob("config.json"))]
    return [r for r in runs if r.done] if done_only else runs
