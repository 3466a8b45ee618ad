"""Jitted sampling with a preallocated KV cache: prefill the prompts once, then decode token by token.

Layout (core/tokens.py): prompts int32[B, P] of fixed length ending in SEP; a response fills
positions P..P+T-1, ends at its first EOS (included) and is PAD after it. PAD, BOS and SEP are never
sampled (their logits are -inf, as in `lm.model.response_logprobs`, so the two agree). The ids come
from the model's config (`pad_id`, `eos_id`, `forbidden`), so an imported model uses its own.

Randomness: `keys = jax.random.split(key, max_new)`; response token t of every row is drawn with
`jax.random.categorical(keys[t], masked_logits_t / temperature)` over the batch. The same key gives
the same sample; `sample_many` folds the chunk index into the key.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from core import mesh as meshes
from core.errors import UsageError
from lm.model import mask_forbidden


class Sample(NamedTuple):
    """Sampled responses. tokens int32[B, P+T] (prompt ++ response, PAD after EOS); logprobs f32[B, T]
    of each sampled token at the sampling temperature (0 after EOS); mask bool[B, T] (True up to and
    including EOS)."""

    tokens: jax.Array | np.ndarray
    logprobs: jax.Array | np.ndarray
    mask: jax.Array | np.ndarray


PREFILL_TOKENS = 1024


class PaddedBank(NamedTuple):
    """A prompt bank of variable-length prompts, left-padded: ids int32[M, P] (row m's prompt is its last
    P - offsets[m] tokens, after PAD that is never attended to) and offsets int32[M]. The compiled optimizer
    programs take it where they take a plain bank int32[M, P] (every prompt P tokens long, no padding)."""

    ids: jax.Array | np.ndarray
    offsets: jax.Array | np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.ids.shape)


def draw_prompts(bank, idx):
    """(prompts int32[B, P], offsets int32[B] or None) of bank rows `idx`, a plain bank or a `PaddedBank`."""
    if isinstance(bank, PaddedBank):
        return bank.ids[idx], bank.offsets[idx]
    return bank[idx], None


def as_bank(bank, padded_ok: bool = True):
    """A prompt bank on the device as int32 (a plain array [M, P] or, if `padded_ok`, a `PaddedBank`); a
    malformed one is a UsageError, one line."""
    if isinstance(bank, PaddedBank) and not padded_ok:
        raise UsageError("this optimizer takes prompts of one length only (no left-padded PaddedBank)")
    ids = jnp.asarray(bank.ids if isinstance(bank, PaddedBank) else bank)
    if ids.ndim != 2 or not jnp.issubdtype(ids.dtype, jnp.integer) or ids.shape[0] < 1:
        raise UsageError(f"prompt_bank must be an int array [M, P], got {ids.dtype}{list(ids.shape)}")
    if not isinstance(bank, PaddedBank):
        return ids.astype(jnp.int32)
    try:
        offsets = _check_offsets(bank.offsets, ids.shape)
    except ValueError as e:
        raise UsageError(f"prompt_bank: {e}") from None
    return PaddedBank(ids.astype(jnp.int32), offsets)


def _draw(logits, key, temperature, forbidden, greedy=False):
    """Sample one token per row from masked, temperature-scaled logits; return (token, its log-prob).
    greedy: the most likely token instead (its log-prob at the temperature)."""
    z = mask_forbidden(logits.astype(jnp.float32), forbidden) / temperature  # a no-op cast unless bf16
    if greedy:
        tok = jnp.argmax(z, axis=-1).astype(jnp.int32)
    else:
        tok = jax.random.categorical(key, z, axis=-1).astype(jnp.int32)
    lp = jnp.take_along_axis(jax.nn.log_softmax(z, axis=-1), tok[:, None], axis=-1)[:, 0]
    return tok, lp


def sample_traced(
    graphdef,
    state,
    prompts,
    key,
    max_new: int,
    temperature,
    n_per_prompt: int = 1,
    greedy: bool = False,
    offsets=None,
) -> Sample:
    """`sample` without its checks and jit: traceable inside a larger program (temperature may be traced;
    max_new, n_per_prompt and greedy are Python values; offsets None or int[B] left-padding widths).
    Returns a `Sample` of traced arrays."""
    model = nnx.merge(graphdef, state)
    cfg = model.cfg
    pad, eos, forbidden = cfg.pad_id, cfg.eos_id, cfg.forbidden
    p = prompts.shape[1]
    if p + max_new > model.cfg.n_ctx:
        raise ValueError(f"prompt length {p} + max_new {max_new} exceeds the context n_ctx={model.cfg.n_ctx}")
    keys = jax.random.split(key, max_new)

    def prefill(args):
        row, off = args
        # The last sampled token is never fed back, so the cache needs P + max_new - 1 positions.
        off = None if off is None else off[None]
        h, cache = model.trunk(row[None], model.init_cache(1, p + max_new - 1), 0, off)
        return model.logits(h[0, -1]), jax.tree.map(lambda a: a[0], cache)

    # About PREFILL_TOKENS tokens at a time: activations stay in cache (2x faster than one big batch on CPU).
    logits, cache = jax.lax.map(prefill, (prompts, offsets), batch_size=max(1, PREFILL_TOKENS // p))
    if n_per_prompt > 1:  # prefill each distinct prompt once, then copy its cache to its rows
        prompts, logits, cache, offsets = jax.tree.map(
            lambda a: jnp.repeat(a, n_per_prompt, axis=0), (prompts, logits, cache, offsets)
        )
    b = prompts.shape[0]
    tok, lp = _draw(logits, keys[0], temperature, forbidden, greedy)
    out_tok = jnp.full((b, max_new), pad, jnp.int32).at[:, 0].set(tok)
    out_lp = jnp.zeros((b, max_new), jnp.float32).at[:, 0].set(lp)
    out_mask = jnp.zeros((b, max_new), bool).at[:, 0].set(True)

    def cond(carry):
        t, _, _, done, *_ = carry
        return (t < max_new) & ~jnp.all(done)

    def body(carry):
        t, cache, tok, done, out_tok, out_lp, out_mask = carry
        h, cache = model.trunk(tok[:, None], cache, p + t - 1, offsets)
        new, lp = _draw(model.logits(h[:, 0]), keys[t], temperature, forbidden, greedy)
        alive = ~done
        new = jnp.where(alive, new, pad)
        out_tok = out_tok.at[:, t].set(new)
        out_lp = out_lp.at[:, t].set(jnp.where(alive, lp, 0.0))
        out_mask = out_mask.at[:, t].set(alive)
        return t + 1, cache, new, done | (new == eos), out_tok, out_lp, out_mask

    carry = (jnp.int32(1), cache, tok, tok == eos, out_tok, out_lp, out_mask)
    *_, out_tok, out_lp, out_mask = jax.lax.while_loop(cond, body, carry)
    return Sample(jnp.concatenate([prompts, out_tok], axis=1), out_lp, out_mask)


# One compiled program per (graphdef, shapes, max_new, temperature), cached across calls.
sample_jit = jax.jit(sample_traced, static_argnames=("max_new", "temperature", "n_per_prompt", "greedy"))


def _check(prompts, max_new, temperature):
    if prompts.ndim != 2 or prompts.shape[1] < 1 or not jnp.issubdtype(prompts.dtype, jnp.integer):
        raise ValueError(f"prompts must be an int array [B, P], got {prompts.dtype}{list(prompts.shape)}")
    _check_positive("max_new", max_new)
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")


def _check_positive(name, value):
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def sample(
    graphdef,
    state,
    prompts,
    key,
    *,
    max_new: int,
    temperature: float = 1.0,
    n_per_prompt: int = 1,
    greedy: bool = False,
    offsets=None,
) -> Sample:
    """Sample responses with the KV-cache decoder.

    Arguments: graphdef/state of a GPT with an LM head; prompts int32[B, P]; a PRNG key; max_new T
    (P + T <= n_ctx); temperature > 0; n_per_prompt: responses per prompt (same result as passing
    `repeat(prompts, n_per_prompt, axis=0)`, but each prompt is prefilled once); greedy: take the
    most likely token at each step (Hugging Face's `do_sample=False`) instead of sampling; offsets:
    None (every prompt fills its P positions) or int[B] left-padding widths (row b's prompt is its last
    P - offsets[b] tokens, after padding that is never attended to; positions count from its first token).
    Returns a `Sample` of jax arrays with B * n_per_prompt rows (see its doc). Deterministic for a
    key; decoding stops early once every row has emitted EOS.
    """
    prompts = jnp.asarray(prompts)
    _check(prompts, max_new, temperature)
    _check_positive("n_per_prompt", n_per_prompt)
    offsets = _check_offsets(offsets, prompts.shape)
    return sample_jit(
        graphdef,
        state,
        prompts.astype(jnp.int32),
        key,
        max_new=int(max_new),
        temperature=float(temperature),
        n_per_prompt=int(n_per_prompt),
        greedy=bool(greedy),
        offsets=offsets,
    )


def _check_offsets(offsets, shape):
    """None, or int32[B] left-padding widths, each in 0..P-1 (a prompt keeps at least one token)."""
    if offsets is None:
        return None
    offsets = np.asarray(offsets)
    if offsets.shape != shape[:1] or not np.issubdtype(offsets.dtype, np.integer):
        raise ValueError(f"offsets must be an int array [{shape[0]}], got {offsets.dtype}{list(offsets.shape)}")
    if offsets.size and (offsets.min() < 0 or offsets.max() >= shape[1]):
        raise ValueError(f"offsets must be in 0..{shape[1] - 1} (a prompt keeps one token at least)")
    return jnp.asarray(offsets, jnp.int32)


def sample_many(
    graphdef,
    state,
    prompts,
    key,
    n_per_prompt: int,
    *,
    max_new: int,
    temperature: float = 1.0,
    batch_size: int = 1024,
    progress: bool = False,
    offsets=None,
) -> Sample:
    """Draw `n_per_prompt` responses for every prompt, in fixed-size chunks (bounded memory, one compile).

    Arguments: prompts int[N, P]; n_per_prompt; max_new; temperature; batch_size: at most this many
    rows a chunk; progress shows a tqdm bar. Returns a `Sample` of numpy arrays with N * n_per_prompt
    rows, prompt-major: row i * n_per_prompt + j is prompt i's j-th response. Chunk c is sampled with
    key `fold_in(key, c)`; each chunk holds whole groups of one prompt's repeats (prefilled once).
    """
    prompts = np.asarray(prompts)
    _check(jnp.asarray(prompts[:1]), max_new, temperature)
    _check_positive("n_per_prompt", n_per_prompt)
    _check_positive("batch_size", batch_size)
    n, bs = int(n_per_prompt), int(batch_size)
    prompts = prompts.astype(np.int32)
    if offsets is not None:
        offsets = np.asarray(_check_offsets(offsets, prompts.shape))
    # A chunk is (prompt row indices, repeats per row, valid output rows); rows come out prompt-major.
    if n >= bs:
        plan = [(np.array([i]), bs, min(bs, n - j)) for i in range(len(prompts)) for j in range(0, n, bs)]
    else:
        k = min(bs // n, len(prompts))
        plan = []
        for lo in range(0, len(prompts), k):
            group = np.arange(lo, min(lo + k, len(prompts)))
            pad = np.repeat(group[:1], k - len(group))  # keep every chunk the same shape
            plan.append((np.concatenate([group, pad]), n, len(group) * n))
    total = len(prompts) * n
    tokens = np.empty((total, prompts.shape[1] + max_new), np.int32)
    logprobs = np.empty((total, max_new), np.float32)
    mask = np.empty((total, max_new), bool)
    bar = None
    if progress:
        bar = tqdm(total=total, desc="sampling", unit="resp")
    offset, pending = 0, None
    mesh = meshes.job_mesh()  # several devices: a chunk's prompt rows split across them when they divide evenly
    if mesh is not None:
        state = meshes.replicate(state, mesh)

    def store(out, valid):
        nonlocal offset
        for dst, a in zip((tokens, logprobs, mask), out, strict=True):
            dst[offset : offset + valid] = np.asarray(a if mesh is None else meshes.to_host(a))[:valid]
        offset += valid
        if bar is not None:
            bar.update(valid)

    for c, (rows, reps, valid) in enumerate(plan):
        chunk, offs = prompts[rows], None if offsets is None else offsets[rows]
        if mesh is not None and len(rows) % meshes.size(mesh) == 0:  # the chunk's prompts split across devices
            chunk, offs = meshes.shard_leading((chunk, offs), mesh)
        out = sample(
            graphdef,
            state,
            chunk,
            jax.random.fold_in(key, c),
            max_new=max_new,
            temperature=temperature,
            n_per_prompt=reps,
            offsets=offs,
        )
        if pending is not None:  # copy the previous chunk out while this one runs
            store(*pending)
        pending = (out, valid)
    store(*pending)
    if bar is not None:
        bar.close()
    return Sample(tokens, logprobs, mask)
