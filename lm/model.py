"""The transformer family: a GPT-2-style decoder with an LM head and/or a scalar (reward/value) head.

Architecture (GPT-2): token + learned position embeddings, `n_layer` pre-LayerNorm blocks of causal
multi-head self-attention and a GELU MLP with `d_ff = 4 * d_model`, a final LayerNorm. The LM head
is *tied* to the token embedding by default (logits = h @ wte^T, no bias); `tie_embeddings=False`
gives a separate bias-free `Linear(d_model, vocab)`. The scalar head is `Linear(d_model, 1)` on the
final normed hidden state. Everything is float32.

Parameter count (what `param_count` returns, and what the initialised state holds):
    V*d + n_ctx*d                     token and position embeddings
  + n_layer * (12*d^2 + 13*d)         per block: 2 LayerNorms (4d), qkv (3d^2+3d), attn out (d^2+d),
                                      MLP in (4d^2+4d), MLP out (4d^2+d)
  + 2*d                               final LayerNorm
  + V*d   if lm_head and not tied     separate LM head
  + d + 1 if scalar_head              scalar head

Modules are split into `(graphdef, state)` with `nnx.split`; the module-level functions below are
plain `jax.jit` functions of those, so callers never pay `nnx.jit` overhead.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from core.errors import UsageError
from core.tokens import BOS, N_SPECIAL, PAD, SEP

# Tokens a response may never contain: masked to -inf when sampling and when scoring responses.
FORBIDDEN = (PAD, BOS, SEP)
# The parts of a state that are not the trunk (what `transfer_trunk` leaves alone).
HEADS = ("lm_head", "scalar_head")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Sizes of one member of the family."""

    vocab_size: int  # tokens, specials included
    n_ctx: int  # longest sequence (learned positions)
    n_layer: int  # transformer blocks
    d_model: int  # residual width; the MLP is 4x wider
    n_head: int  # attention heads; must divide d_model
    tie_embeddings: bool = True  # LM head shares the token embedding matrix

    def __post_init__(self):
        for name in ("vocab_size", "n_ctx", "n_layer", "d_model", "n_head"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise UsageError(f"ModelConfig.{name} must be a positive integer, got {v!r}")
        if self.vocab_size <= N_SPECIAL:
            raise UsageError(f"ModelConfig.vocab_size must exceed the {N_SPECIAL} special tokens")
        if self.d_model % self.n_head:
            raise UsageError(f"ModelConfig.d_model={self.d_model} is not divisible by n_head={self.n_head}")


def param_count(cfg: ModelConfig, lm_head: bool = True, scalar_head: bool = False) -> int:
    """Exact number of parameters of `GPT(cfg, lm_head=..., scalar_head=...)` (formula in the module doc)."""
    d, v = cfg.d_model, cfg.vocab_size
    n = v * d + cfg.n_ctx * d + cfg.n_layer * (12 * d * d + 13 * d) + 2 * d
    if lm_head and not cfg.tie_embeddings:
        n += v * d
    if scalar_head:
        n += d + 1
    return n


def _normal(std: float):
    return nnx.initializers.normal(stddev=std)


class Attention(nnx.Module):
    """Causal multi-head self-attention, optionally reading/writing a preallocated KV cache."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        d = cfg.d_model
        self.n_head = cfg.n_head
        self.qkv = nnx.Linear(d, 3 * d, kernel_init=_normal(0.02), rngs=rngs)
        # GPT-2 scales residual-branch outputs by 1/sqrt(2 * n_layer) at init.
        self.proj = nnx.Linear(d, d, kernel_init=_normal(0.02 / math.sqrt(2 * cfg.n_layer)), rngs=rngs)

    def __call__(self, x, cache=None, pos=0):
        """x: f32[B, S, d] at positions pos..pos+S-1. cache: (k, v) f32[B, H, C, dh] or None.

        Returns (out f32[B, S, d], (k, v)): the new cache, or this call's keys/values without one.
        """
        b, s, d = x.shape
        h = self.n_head
        q, k, v = jnp.split(self.qkv(x), 3, axis=-1)
        q, k, v = (t.reshape(b, s, h, d // h).transpose(0, 2, 1, 3) for t in (q, k, v))
        if cache is None:
            keys, values = k, v
            allowed = jnp.tril(jnp.ones((s, s), bool))
        else:
            keys = jax.lax.dynamic_update_slice(cache[0], k, (0, 0, pos, 0))
            values = jax.lax.dynamic_update_slice(cache[1], v, (0, 0, pos, 0))
            allowed = jnp.arange(keys.shape[2])[None, :] <= (pos + jnp.arange(s))[:, None]
        scores = jnp.einsum("bhqd,bhkd->bhqk", q, keys) / math.sqrt(d // h)
        scores = jnp.where(allowed, scores, jnp.finfo(scores.dtype).min)
        out = jnp.einsum("bhqk,bhkd->bhqd", jax.nn.softmax(scores, axis=-1), values)
        return self.proj(out.transpose(0, 2, 1, 3).reshape(b, s, d)), (keys, values)


class Block(nnx.Module):
    """Pre-norm transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        d = cfg.d_model
        self.ln_1 = nnx.LayerNorm(d, epsilon=1e-5, rngs=rngs)
        self.attn = Attention(cfg, rngs=rngs)
        self.ln_2 = nnx.LayerNorm(d, epsilon=1e-5, rngs=rngs)
        self.fc = nnx.Linear(d, 4 * d, kernel_init=_normal(0.02), rngs=rngs)
        self.out = nnx.Linear(4 * d, d, kernel_init=_normal(0.02 / math.sqrt(2 * cfg.n_layer)), rngs=rngs)

    def __call__(self, x, cache=None, pos=0):
        a, cache = self.attn(self.ln_1(x), cache, pos)
        x = x + a
        x = x + self.out(jax.nn.gelu(self.fc(self.ln_2(x)), approximate=True))
        return x, cache


class GPT(nnx.Module):
    """GPT-2-style decoder. `lm_head`: next-token logits; `scalar_head`: one scalar per position.

    Reward model: `lm_head=False, scalar_head=True`; PPO policy with a value head: both.
    """

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs, lm_head: bool = True, scalar_head: bool = False):
        if not (lm_head or scalar_head):
            raise ValueError("GPT needs at least one head (lm_head or scalar_head)")
        d = cfg.d_model
        self.cfg = cfg
        self.has_lm_head = lm_head
        self.has_scalar_head = scalar_head
        self.wte = nnx.Embed(cfg.vocab_size, d, embedding_init=_normal(0.02), rngs=rngs)
        self.wpe = nnx.Embed(cfg.n_ctx, d, embedding_init=_normal(0.01), rngs=rngs)
        self.blocks = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.n_layer)])
        self.ln_f = nnx.LayerNorm(d, epsilon=1e-5, rngs=rngs)
        if lm_head and not cfg.tie_embeddings:
            self.lm_head = nnx.Linear(d, cfg.vocab_size, use_bias=False, kernel_init=_normal(0.02), rngs=rngs)
        if scalar_head:
            self.scalar_head = nnx.Linear(d, 1, kernel_init=_normal(0.02), rngs=rngs)

    def init_cache(self, batch: int, length: int):
        """Zeroed KV cache for `batch` rows of up to `length` positions: per block (k, v) f32[B, H, C, dh]."""
        cfg = self.cfg
        shape = (batch, cfg.n_head, length, cfg.d_model // cfg.n_head)
        return tuple((jnp.zeros(shape, jnp.float32), jnp.zeros(shape, jnp.float32)) for _ in self.blocks)

    def trunk(self, tokens, cache=None, pos=0):
        """Final normed hidden states f32[B, S, d] of `tokens` placed at positions pos..pos+S-1.

        With a cache (from `init_cache`) the new keys/values are written at `pos` and attention reads
        every cached position <= the query's; returns (hidden, new cache or None).
        """
        x = self.wte(tokens) + self.wpe(pos + jnp.arange(tokens.shape[1]))
        new_cache = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, None if cache is None else cache[i], pos)
            new_cache.append(kv)
        return self.ln_f(x), (None if cache is None else tuple(new_cache))

    def logits(self, h):
        """Next-token logits f32[..., V] from final hidden states."""
        if not self.has_lm_head:
            raise ValueError("this model has no LM head (it was built with lm_head=False)")
        return self.wte.attend(h) if self.cfg.tie_embeddings else self.lm_head(h)

    def scalar(self, h):
        """Scalar head f32[...] from final hidden states."""
        if not self.has_scalar_head:
            raise ValueError("this model has no scalar head (it was built with scalar_head=False)")
        return self.scalar_head(h)[..., 0]

    def __call__(self, tokens):
        """tokens int32[B, S] -> (logits f32[B, S, V] or None, scalar f32[B, S] or None)."""
        h, _ = self.trunk(tokens)
        logits = self.logits(h) if self.has_lm_head else None
        return logits, (self.scalar(h) if self.has_scalar_head else None)


def _init_state(cfg, key, lm_head, scalar_head):
    return nnx.split(GPT(cfg, rngs=nnx.Rngs(params=key), lm_head=lm_head, scalar_head=scalar_head))[1]


# One compiled program per config (cached) instead of dozens of eagerly compiled initialiser ops.
_init_state_jit = jax.jit(_init_state, static_argnums=(0, 2, 3))


def init(cfg: ModelConfig, key, *, lm_head: bool = True, scalar_head: bool = False):
    """Build and split a fresh model. Returns (graphdef, state); `key` is a PRNG key or an int seed."""
    key = jax.random.key(key) if isinstance(key, int) else key
    graphdef, _ = abstract(cfg, lm_head=lm_head, scalar_head=scalar_head)
    return graphdef, _init_state_jit(cfg, key, bool(lm_head), bool(scalar_head))


def abstract(cfg: ModelConfig, *, lm_head: bool = True, scalar_head: bool = False):
    """(graphdef, state of jax.ShapeDtypeStruct) without allocating: the template `load_state` needs."""
    model = nnx.eval_shape(lambda: GPT(cfg, rngs=nnx.Rngs(0), lm_head=lm_head, scalar_head=scalar_head))
    return nnx.split(model)


def mask_forbidden(logits):
    """Set the logits of PAD, BOS and SEP to -inf: a response never contains them."""
    return logits.at[..., jnp.array(FORBIDDEN)].set(-jnp.inf)


@jax.jit
def forward(graphdef, state, tokens):
    """tokens int32[B, S] -> (logits f32[B, S, V] | None, scalar f32[B, S] | None); one causal pass."""
    return nnx.merge(graphdef, state)(tokens)


def response_forward(model: GPT, tokens, prompt_len, temperature=1.0):
    """One teacher-forced causal pass over prompt ++ response, read at the response positions.

    Arguments: model a merged GPT with an LM head; tokens int32[B, P+T]; prompt_len P; temperature
    (a float or a traced scalar: logits / temperature, PAD/BOS/SEP masked to -inf as the sampler does).
    Returns (logp f32[B, T] of each response token, not masked; log_probs f32[B, T, V] the whole
    next-token log-softmax at each response position; h f32[B, T, d] the final hidden states there).
    Traceable (use inside jit, grad, vmap); position P-1+t predicts response token t.
    """
    h, _ = model.trunk(tokens[:, :-1])
    h = h[:, prompt_len - 1 :]
    log_probs = jax.nn.log_softmax(mask_forbidden(model.logits(h)) / temperature, axis=-1)
    logp = jnp.take_along_axis(log_probs, tokens[:, prompt_len:, None], axis=-1)[..., 0]
    return logp, log_probs, h


def response_logprobs_traced(graphdef, state, tokens, prompt_len, temperature=1.0):
    """`response_logprobs` without its checks and jit: traceable, temperature may be traced. f32[B, T]."""
    logp, _, _ = response_forward(nnx.merge(graphdef, state), tokens, prompt_len, temperature)
    return jnp.where(tokens[:, prompt_len:] == PAD, 0.0, logp)


_response_logprobs_jit = jax.jit(response_logprobs_traced, static_argnames=("prompt_len", "temperature"))


def response_logprobs(graphdef, state, tokens, prompt_len: int, temperature: float = 1.0):
    """Teacher-forced log p(token_t | prefix) of each response position, one causal forward.

    Arguments: tokens int32[B, P+T] (prompt ++ response), prompt_len P, temperature (logits / T;
    PAD/BOS/SEP are masked exactly as the sampler masks them, so the two agree).
    Returns f32[B, T]; 0 where the token is PAD (callers mask with the response mask anyway).
    Differentiable in `state`; callable inside jit, grad and vmap (prompt_len and temperature are static).
    """
    if tokens.ndim != 2 or not 1 <= prompt_len < tokens.shape[1]:
        raise ValueError(
            f"response_logprobs: need tokens [B, P+T] with 1 <= P < P+T, got {tokens.shape} and P={prompt_len}"
        )
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return _response_logprobs_jit(graphdef, state, tokens, prompt_len=int(prompt_len), temperature=float(temperature))


def _scalar_at_end(graphdef, state, tokens, response_mask, prompt_len):
    _, values = nnx.merge(graphdef, state)(tokens)
    # Last response token: EOS, or the last token of a truncated response.
    last = prompt_len + jnp.sum(response_mask, axis=1).astype(jnp.int32) - 1
    return jnp.take_along_axis(values, jnp.maximum(last, prompt_len - 1)[:, None], axis=1)[:, 0]


_scalar_at_end_jit = jax.jit(_scalar_at_end, static_argnames=("prompt_len",))


def scalar_at_end(graphdef, state, tokens, response_mask, prompt_len: int):
    """The scalar head read at the last response token. Returns f32[B].

    Arguments: tokens int32[B, P+T], response_mask bool[B, T] (True up to and including EOS),
    prompt_len P. An empty response reads the scalar at the prompt's last token (SEP).
    """
    if tokens.ndim != 2 or response_mask.shape != (tokens.shape[0], tokens.shape[1] - prompt_len):
        raise ValueError(
            f"scalar_at_end: tokens {tokens.shape} and response_mask {response_mask.shape} "
            f"do not match prompt_len={prompt_len}"
        )
    return _scalar_at_end_jit(graphdef, state, tokens, response_mask, prompt_len=int(prompt_len))


def _flat(state) -> dict:
    return {
        jax.tree_util.keystr(p, simple=True, separator="/"): x
        for p, x in jax.tree_util.tree_flatten_with_path(state)[0]
    }


def transfer_trunk(dst_state, src_state):
    """Copy embeddings, blocks and final norm of `src_state` into a copy of `dst_state`.

    Use it to start a reward model (or a value-headed policy) from a pretrained LM of the same
    ModelConfig; heads of `dst_state` are kept. Returns the new state (inputs are not modified).
    """
    src = _flat(src_state)
    paths, treedef = jax.tree_util.tree_flatten_with_path(dst_state)
    leaves = []
    for p, x in paths:
        name = jax.tree_util.keystr(p, simple=True, separator="/")
        if name.split("/")[0] in HEADS:
            leaves.append(x)
            continue
        if name not in src or src[name].shape != x.shape:
            raise ValueError(f"transfer_trunk: source has no trunk parameter '{name}' of shape {x.shape}")
        leaves.append(jnp.array(src[name], copy=True))
    return jax.tree_util.tree_unflatten(treedef, leaves)
