"""The text study's first stages (`study.text_study`): its models and its prompt bank.

model:<role>   one per model reference (the policy, the gold, each proxy backbone): a `tiny:FAMILY:WIDTH`
               reference is built into the run (`lm.hf.tiny`, `save_pretrained`); an `hf:DIR` / `torch:DIR`
               reference is read where it is, and its files' sha256 (`fingerprint`) is in the instance's key,
               so a checkpoint changed on disk redoes what read it.
prompts        the policy's tokenization of the prompts (the built-in ones or a file, whose sha256 is in
               the key): each prompt keeps at most its last K = `prompt_tokens` tokens and is left-padded
               to the longest (`lm.sampling.PaddedBank`): every compiled program (sampling, PPO, the
               proxies' training and scores) never attends to the padding and counts positions from each
               prompt's first token, so a padded prompt scores as it does alone (tests/test_text_padding.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import tempfile
from pathlib import Path

import numpy as np

from core import safe_read
from core.errors import UsageError
from core.log import log
from core.store import atomic_write_bytes, atomic_write_json
from lm.hf import load, tiny
from lm.hf.families import model_config
from lm.hf.files import read_config
from lm.hf.text_rm import parse_ref
from lm.hf.tokenizer import encode, left_padded, load_tokenizer, special_ids
from lm.model import abstract
from lm.sampling import PaddedBank
from study.stages.graph import Slot, Stage, value_at

BUILTIN_PROMPTS = tuple(
    f"{a} {b}"
    for a in ("please write", "how do you", "the gold model", "a reward model", "best of n", "the quick brown fox")
    for b in ("a short answer about tea", "the lazy dog", "what we trust", "keeps the response", "scores the text")
)
BUILD_SEEDS = {"policy": 1, "gold": 2}  # a tiny model's weights: fixed per role (backbone i: 10 + i)


@dataclasses.dataclass
class Policy:
    graphdef: object
    state: object
    cfg: object
    tokenizer: object
    path: Path


def roles(cfg) -> list[tuple[str, str, bool, int]]:
    """(label, config path, is a reward model, tiny build seed) of every model reference."""
    out = [("model:policy", "policy", False, BUILD_SEEDS["policy"]), ("model:gold", "gold", True, BUILD_SEEDS["gold"])]
    return out + [(f"model:backbone[{i}]", f"backbones[{i}]", False, 10 + i) for i in range(len(cfg.backbones))]


def check_ref(ref: str, name: str, allowed=("hf",)) -> None:
    """A model reference well formed (and its directory there): UsageError, one line, else."""
    if ref.startswith("tiny:"):
        parts = ref.split(":")
        if len(parts) != 3 or parts[1] not in tiny.FAMILIES or not parts[2].isdigit() or not 8 <= int(parts[2]) <= 512:
            raise UsageError(f"{name} {ref!r}: a tiny model is tiny:FAMILY:WIDTH ({', '.join(tiny.FAMILIES)}; 8..512)")
    else:
        parse_ref(ref, allowed=allowed, what=name)


def check_refs(cfg) -> None:
    """Every model reference well formed before anything is written."""
    check_ref(cfg.policy, "policy")
    check_ref(cfg.gold, "gold", ("hf", "torch"))
    for i, b in enumerate(cfg.backbones):
        check_ref(b, f"backbones[{i}]")


def check_tokenizers(cfg) -> None:
    """Every proxy backbone's vocabulary is the policy's, before anything is written (UsageError, one line,
    else): a proxy scores the policy's token ids inside the compiled PPO program, so id i must be the same
    token for both. (The gold scores text with its own tokenizer: it may differ.) Every `tiny:` model shares
    the tiny tokenizer; an `hf:` one is read from its directory."""
    refs = [cfg.policy, *cfg.backbones]
    if all(r.startswith("tiny:") for r in refs):
        return
    with tempfile.TemporaryDirectory() as tmp:  # the tiny tokenizer, only when compared with a checkpoint's

        def vocab_of(ref: str):
            path = tiny.tokenizer(Path(tmp) / "tok") if ref.startswith("tiny:") else parse_ref(ref, allowed=("hf",))[1]
            tok = load_tokenizer(path)
            return tok.get_vocab(), tok.eos_token_id

        policy = vocab_of(cfg.policy)
        for i, ref in enumerate(cfg.backbones):
            v, eos = vocab_of(ref)
            if v != policy[0] or eos != policy[1]:
                diff = len(set(v.items()) ^ set(policy[0].items()))
                raise UsageError(
                    f"backbones[{i}] {ref}: its tokenizer is not the policy's ({len(v)} vs {len(policy[0])} tokens, "
                    f"{diff} differ; EOS {eos} vs {policy[1]}): a proxy scores the policy's token ids, so every "
                    "backbone must share the policy's tokenizer"
                )


def fingerprint(path: Path) -> str:
    """sha256 over every file of a checkpoint directory (relative name, size, content)."""
    h = hashlib.sha256()
    for f in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path).as_posix()}\0{f.stat().st_size}\0".encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def expand_models(cfg) -> list[Slot]:
    out = []
    for label, path, _, seed in roles(cfg):
        ref = value_at(cfg, path)
        params = {"role": label.split(":", 1)[1]}
        if ref.startswith("tiny:"):
            params["build_seed"] = seed
        else:
            params["fingerprint"] = fingerprint(Path(ref.partition(":")[2]))
        out.append(
            Slot(label, f"text-model-{params['role'].replace('[', '').replace(']', '')}", {"ref": path}, {}, params)
        )
    return out


def compute_model(ctx, run, inst) -> None:
    ref = ctx.value(inst.reads["ref"])
    reward = inst.params["role"] == "gold"
    if ref.startswith("tiny:"):
        _, family, width = ref.split(":")
        w = int(width)
        tiny.model(
            run.path / "model", family, reward=reward, seed=inst.params["build_seed"], width=w, heads=max(1, w // 8)
        )
        scheme = "torch" if reward else "hf"
        info = {"scheme": scheme, "path": "model", "built": True}
    else:
        scheme, path = parse_ref(ref, allowed=("hf", "torch") if reward else ("hf",))
        if fingerprint(path) != inst.params["fingerprint"]:
            raise UsageError(f"{ref}: the checkpoint changed while the study ran; run again")
        info = {"scheme": scheme, "path": str(path.absolute()), "built": False}
    atomic_write_json(run.path / "model.json", info)
    run.mark_done(info)


def load_model(ctx, run, inst) -> tuple[str, Path]:
    """(scheme, checkpoint directory)."""
    info = safe_read.read_json(run.path / "model.json")
    path = run.path / info["path"] if info["built"] else Path(info["path"])
    return info["scheme"], path


MODEL = Stage(
    "text_model",
    reads=("policy", "gold", "backbones[i]"),
    consumes=(),
    writes=("model.json", "model/"),
    expand=expand_models,
    compute=compute_model,
    load=load_model,
    doc="the models: tiny ones built with save_pretrained, checkpoints fingerprinted",
)


def load_policy(path: Path, compute_dtype: str = "float32") -> Policy:
    """The policy checkpoint imported into JAX, with its tokenizer's EOS and PAD, nothing forbidden."""
    imp = load(path, role="policy", compute_dtype=compute_dtype)
    tok = load_tokenizer(path)
    eos, pad = special_ids(tok, imp.hf_config)
    cfg = dataclasses.replace(imp.cfg, eos_id=eos, pad_id=pad, forbidden=())
    graphdef, _ = abstract(cfg)
    return Policy(graphdef, imp.state, cfg, tok, path)


def prompt_texts(cfg) -> list[str]:
    from gold_rm.text_world import read_prompts  # noqa: PLC0415 - only with a prompts file

    return read_prompts(cfg.prompts, cfg.prompt_column or None) if cfg.prompts else list(BUILTIN_PROMPTS)


def prompt_bank(cfg, policy: Policy, texts) -> tuple[PaddedBank, list[str], int]:
    """(the bank: ids int32[M, W] left-padded with the policy's PAD, W <= K = prompt_tokens, and offsets, their
    texts, how many prompts lost tokens on the left to fit K) (see the module docstring)."""
    k = cfg.prompt_tokens
    if k + cfg.max_new > policy.cfg.n_ctx:
        raise UsageError(f"prompt_tokens {k} + max_new {cfg.max_new} exceed the policy's context {policy.cfg.n_ctx}")
    p = left_padded(encode(policy.tokenizer, texts), policy.cfg.pad_id, k, where=f"prompts ({policy.path})")
    if p.truncated:
        log(f"{p.truncated} of {len(texts)} prompts have more than {k} tokens: they keep their last {k}")
    return PaddedBank(p.ids, p.offsets), list(texts), p.truncated


def expand_prompts(cfg) -> list[Slot]:
    params = {"sha256": hashlib.sha256(Path(cfg.prompts).read_bytes()).hexdigest()} if cfg.prompts else {}
    params["layout"] = "left-padded"  # (before: fixed-length prompts, short ones left out)
    reads = {"prompts": "prompts", "column": "prompt_column", "tokens": "prompt_tokens", "max_new": "max_new"}
    return [Slot("prompts", "text-prompts", reads, {"policy": "model:policy"}, params)]


def compute_prompts(ctx, run, inst) -> None:
    path = ctx.output(inst.inputs["policy"])[1]  # its tokenizer and context only: no weights loaded here
    tok = load_tokenizer(path)
    cfg = model_config(hf := read_config(path), str(path))[1]
    cfg = dataclasses.replace(cfg, pad_id=special_ids(tok, hf)[1])  # the tokenizer's PAD, as `load_policy`'s
    bank, texts, truncated = prompt_bank(ctx.cfg, Policy(None, None, cfg, tok, path), prompt_texts(ctx.cfg))
    buf = io.BytesIO()
    np.savez(buf, bank=bank.ids, offsets=bank.offsets)
    atomic_write_bytes(run.path / "bank.npz", buf.getvalue())
    atomic_write_json(run.path / "texts.json", {"texts": texts, "truncated": truncated})
    run.mark_done({"prompts": len(texts), "truncated": truncated, "width": int(bank.shape[1])})


def load_prompts(ctx, run, inst) -> tuple[PaddedBank, list[str], int]:
    """(bank: ids int32[M, W] and offsets int32[M], texts, how many were truncated)."""
    with np.load(run.path / "bank.npz") as z:
        bank = PaddedBank(z["bank"], z["offsets"])
    info = safe_read.read_json(run.path / "texts.json")
    return bank, list(info["texts"]), int(info["truncated"])


PROMPTS = Stage(
    "text_prompts",
    reads=("prompts", "prompt_column", "prompt_tokens", "max_new"),
    consumes=("text_model",),
    writes=("bank.npz", "texts.json"),
    expand=expand_prompts,
    compute=compute_prompts,
    load=load_prompts,
    doc="the prompt bank: the policy's tokens, at most prompt_tokens each, left-padded",
)
