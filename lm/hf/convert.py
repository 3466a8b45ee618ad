"""Import a Hugging Face checkpoint directory into `lm.model.GPT`, and export one back.

Roles: `policy` (the LM head; a tied model uses its embeddings), `reward` (a scalar head: a
one-label `*ForSequenceClassification` checkpoint's bias-free `score` head, or a new scalar head on
the trunk of any checkpoint), and `policy` with `value_head=True` (both heads, for PPO).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from core.errors import UsageError
from lm.arch import ModelConfig
from lm.hf import families
from lm.hf.files import read_config, read_weights, write_safetensors
from lm.model import abstract

ROLES = ("policy", "reward")
# tokenizer and generation files copied next to an export when `copy_from` names the source checkpoint
SIDE_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "generation_config.json",
)


@dataclasses.dataclass(frozen=True)
class Imported:
    """A checkpoint as the project's model: graphdef and state of `lm.model.GPT`, its `ModelConfig`,
    the family, the source's config.json, and the source's pad_token_id (None: none; sequence
    classification then reads the last position, as transformers does)."""

    graphdef: object
    state: object
    cfg: ModelConfig
    family: str
    hf_config: dict
    hf_pad_id: int | None
    score_from_checkpoint: bool  # the scalar head is the checkpoint's `score` head (not a new one)


def flat_state(state) -> dict:
    """{"blocks/0/attn/qkv/kernel": array, ...} of a model state."""
    out = {}
    for p, x in jax.tree_util.tree_flatten_with_path(state)[0]:
        name = jax.tree_util.keystr(p, simple=True, separator="/")
        out[name.removesuffix("/value")] = x
    return out


def _fill(template, flat: dict, where: str, dtype):
    """A state shaped as `template` from flat arrays (every leaf present, shapes equal)."""
    paths, treedef = jax.tree_util.tree_flatten_with_path(template)
    leaves = []
    for p, x in paths:
        name = jax.tree_util.keystr(p, simple=True, separator="/").removesuffix("/value")
        if name not in flat:
            raise UsageError(f"{where}: no weight for {name!r}")
        a = np.asarray(flat[name])
        if a.shape != tuple(x.shape):
            raise UsageError(f"{where}: weight for {name!r} has shape {a.shape}, expected {tuple(x.shape)}")
        leaves.append(jnp.asarray(a.astype(np.float32), dtype=dtype))
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _prefix(family: str, w: dict) -> str:
    embed = families.EMBED.get(family, "embed_tokens.weight")
    for p in (families.PREFIX[family], ""):
        if p + embed in w:
            return p
    raise UsageError(f"checkpoint of model_type {family!r} has no {embed!r} tensor: not a {family} checkpoint")


def load(
    path, *, role: str = "policy", value_head: bool = False, seed: int = 0, dtype=jnp.float32, compute_dtype="float32"
) -> Imported:
    """Import the Hugging Face checkpoint directory `path` (config.json and weights) as `lm.model.GPT`.

    Arguments: role "policy" (LM head) or "reward" (scalar head: the checkpoint's one-label `score`
    head if it has one, else a new head initialised from `seed`); value_head: a policy with a new
    scalar head too; dtype of the state (float32; bfloat16 halves the memory); compute_dtype "bfloat16": the
    dense layers' matmuls in bfloat16 with the weights kept in `dtype` (`ModelConfig.compute_dtype`). Bad or unsupported
    input is a UsageError naming it.
    """
    if role not in ROLES:
        raise UsageError(f"role {role!r}; choose from {', '.join(ROLES)}")
    where = str(path)
    hf = read_config(path)
    family, cfg = families.model_config(hf, where)
    cfg = dataclasses.replace(cfg, compute_dtype=compute_dtype)
    w = read_weights(path)
    prefix = _prefix(family, w)
    try:
        flat = families.to_ours(family, cfg, w, prefix)
    except KeyError as e:
        raise UsageError(f"{where}: the weights have no tensor {e.args[0]!r} ({family} layout)") from None
    lm_head = role == "policy"
    scalar_head = role == "reward" or value_head
    from_ckpt = False
    if lm_head and not cfg.tie_embeddings:
        names = families.LM_HEAD.get(family, ("lm_head.weight",))
        found = [n for n in names if n in w]
        if not found:
            raise UsageError(f"{where}: no LM head {names[0]!r} (untied embeddings): not a causal-LM checkpoint")
        flat["lm_head/kernel"] = np.asarray(w[found[0]]).T
    if role == "reward" and "score.weight" in w:
        score = np.asarray(w["score.weight"])
        if score.shape[0] != 1:
            raise UsageError(f"{where}: the score head has {score.shape[0]} labels; a reward model needs 1")
        cfg = dataclasses.replace(cfg, scalar_bias="score.bias" in w)
        flat["scalar_head/kernel"] = score.T
        if "score.bias" in w:
            flat["scalar_head/bias"] = np.asarray(w["score.bias"])
        from_ckpt = True
    graphdef, template = abstract(cfg, lm_head=lm_head, scalar_head=scalar_head)
    if scalar_head and not from_ckpt:
        head = jax.random.normal(jax.random.key(seed), (cfg.d_model, 1)) * 0.02
        flat["scalar_head/kernel"], flat["scalar_head/bias"] = np.asarray(head), np.zeros(1, np.float32)
    state = _fill(template, flat, where, dtype)
    pad = hf.get("pad_token_id")
    return Imported(graphdef, state, cfg, family, hf, None if pad is None else int(pad), from_ckpt)


def export(
    out_dir, graphdef, state, *, family: str | None = None, copy_from=None, extra=None, drop_score_bias=False
) -> Path:
    """Write a model as a Hugging Face checkpoint: config.json and model.safetensors (float32).

    A model with an LM head is exported as a causal LM (a value head is left out); a scalar-head-only
    model as a one-label `*ForSequenceClassification` (transformers' `score` has no bias: a nonzero
    scalar-head bias is a UsageError unless drop_score_bias, which shifts every score by -bias).
    family: the architecture (default: the one that represents the config exactly); copy_from: a
    checkpoint directory whose tokenizer and generation files are copied alongside, and whose
    config.json's bos_token_id is kept; extra: more config.json keys. Returns out_dir.
    """
    model = nnx.merge(graphdef, state)
    cfg = model.cfg
    family = family or families.export_family(cfg)
    if family not in families.FAMILIES:
        raise UsageError(f"export family {family!r}; choose from {', '.join(families.FAMILIES)}")
    s = {k: np.asarray(v, np.float32) for k, v in flat_state(state).items()}
    tensors = families.to_hf(family, cfg, s)
    scalar = not model.has_lm_head
    if model.has_lm_head and not cfg.tie_embeddings:
        tensors[families.LM_HEAD.get(family, ("lm_head.weight",))[0]] = s["lm_head/kernel"].T
    if scalar:
        bias = float(s.get("scalar_head/bias", np.zeros(1))[0])
        if bias != 0.0 and not drop_score_bias:
            raise UsageError(
                f"the scalar head has bias {bias:.6g}, which transformers' score head cannot hold "
                "(export with drop_score_bias=True: every score shifts by that constant)"
            )
        tensors["score.weight"] = s["scalar_head/kernel"].T
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = families.hf_config(cfg, family, scalar)
    if copy_from is not None and "bos_token_id" in (source := read_config(copy_from)):
        config["bos_token_id"] = source["bos_token_id"]
    config.update(extra or {})
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    write_safetensors(out / "model.safetensors", tensors)
    if copy_from is not None:
        for name in SIDE_FILES:
            if (Path(copy_from) / name).exists():
                shutil.copyfile(Path(copy_from) / name, out / name)
    return out


def _last_token_scores(graphdef, state, tokens, pad_id):
    model = nnx.merge(graphdef, state)
    h, _ = model.trunk(tokens)
    values = model.scalar(h)
    if pad_id is None:
        return values[:, -1]
    idx = jnp.arange(tokens.shape[1])
    last = jnp.argmax(idx * (tokens != pad_id), axis=1)
    return jnp.take_along_axis(values, last[:, None], axis=1)[:, 0]


_last_token_scores_jit = jax.jit(_last_token_scores, static_argnames=("pad_id",))


def sequence_scores(imported: Imported, tokens) -> jax.Array:
    """Scores f32[B] of whole sequences int[B, S] as transformers' `*ForSequenceClassification` reads
    them: the scalar head at the rightmost token that is not the config's pad token (the last
    position when the config has none)."""
    tokens = jnp.asarray(tokens, jnp.int32)
    return _last_token_scores_jit(imported.graphdef, imported.state, tokens, pad_id=imported.hf_pad_id)
