"""The transformer's layers: norms, rotary position embeddings, causal attention with a KV cache
(grouped-query when `n_kv_head < n_head`), the MLP and the pre-norm block. Options in `lm.arch`.

Parameter names are fixed by the synthetic GPT-2's checkpoints: per block ln_1, attn/qkv, attn/proj,
ln_2, fc, out. The fused qkv holds [q of every head | k of every kv head | v of every kv head] along
its output axis; a gated MLP's fc holds [gate | up].
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lm.arch import ModelConfig


def normal(std: float):
    return nnx.initializers.normal(stddev=std)


def make_norm(cfg: ModelConfig, rngs: nnx.Rngs):
    if cfg.norm == "rmsnorm":
        return nnx.RMSNorm(cfg.d_model, epsilon=cfg.norm_eps, rngs=rngs)
    return nnx.LayerNorm(cfg.d_model, epsilon=cfg.norm_eps, rngs=rngs)


def activate(x, kind: str):
    if kind == "gelu_new":
        return jax.nn.gelu(x, approximate=True)
    if kind == "gelu":
        return jax.nn.gelu(x, approximate=False)
    if kind == "silu":
        return jax.nn.silu(x)
    return jax.nn.relu(x)


def inv_freq(cfg: ModelConfig) -> np.ndarray:
    """Rotary inverse frequencies f32[rotary_dims / 2], as Hugging Face computes them (with its rope scaling)."""
    dim = cfg.rotary_dims
    freq = 1.0 / (cfg.rope_theta ** (np.arange(0, dim, 2, dtype=np.int64).astype(np.float32) / dim))
    rope = cfg.rope
    kind = rope.get("rope_type", "default")
    if kind == "linear":
        freq = freq / rope["factor"]
    elif kind == "llama3":
        factor, lo, hi = rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"]
        old = rope["original_max_position_embeddings"]
        wavelen = 2 * math.pi / freq
        scaled = np.where(wavelen > old / lo, freq / factor, freq)
        smooth = (old / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < old / hi) & ~(wavelen > old / lo)
        freq = np.where(medium, smoothed, scaled)
    return freq.astype(np.float32)


def rotate(x, positions, cfg: ModelConfig):
    """Rotary embedding (the rotate-half convention of GPT-NeoX and Llama) of the first rotary_dims
    dimensions of x f32[B, H, S, dh] at positions int[S] (or int[B, S]: each row its own, left padding)."""
    dim = cfg.rotary_dims
    angles = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq(cfg))
    angles = jnp.concatenate([angles, angles], axis=-1)
    cos, sin = jnp.cos(angles).astype(x.dtype), jnp.sin(angles).astype(x.dtype)
    if positions.ndim == 2:  # [B, S, dh] -> [B, 1, S, dh], broadcast over heads
        cos, sin = cos[:, None], sin[:, None]
    rot, rest = x[..., :dim], x[..., dim:]
    half = jnp.concatenate([-rot[..., dim // 2 :], rot[..., : dim // 2]], axis=-1)
    rot = rot * cos + half * sin
    return rot if dim == x.shape[-1] else jnp.concatenate([rot, rest], axis=-1)


def _softmax(scores, dtype):
    """softmax over keys in float32 (a no-op cast for float32 scores), in the values' dtype."""
    return jax.nn.softmax(scores.astype(jnp.float32), axis=-1).astype(dtype)


class Attention(nnx.Module):
    """Causal multi-head self-attention, optionally reading/writing a preallocated KV cache."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        d, dh = cfg.d_model, cfg.dh
        self.cfg = cfg
        self.n_head = cfg.n_head
        out = (cfg.n_head + 2 * cfg.kv_heads) * dh
        dt = cfg.dense_dtype
        self.qkv = nnx.Linear(d, out, use_bias=cfg.qkv_bias, kernel_init=normal(0.02), dtype=dt, rngs=rngs)
        # GPT-2 scales residual-branch outputs by 1/sqrt(2 * n_layer) at init.
        std = 0.02 / math.sqrt(2 * cfg.n_layer)
        self.proj = nnx.Linear(cfg.n_head * dh, d, use_bias=cfg.proj_bias, kernel_init=normal(std), dtype=dt, rngs=rngs)

    def __call__(self, x, cache=None, pos=0, offset=None):
        """x: f32[B, S, d] at positions pos..pos+S-1. cache: (k, v) f32[B, KV, C, dh] or None.
        offset: None, or int[B] left-padding widths: row b's first offset[b] sequence positions are padding,
        never attended to, and its position ids start after them (Hugging Face's left padding).

        Returns (out f32[B, S, d], (k, v)): the new cache, or this call's keys/values without one.
        """
        cfg = self.cfg
        b, s, d = x.shape
        h, kv, dh = self.n_head, cfg.kv_heads, cfg.dh
        if kv == h and dh * h == d:  # the synthetic GPT-2's path, unchanged
            q, k, v = jnp.split(self.qkv(x), 3, axis=-1)
        else:
            q, k, v = jnp.split(self.qkv(x), [h * dh, (h + kv) * dh], axis=-1)
        q = q.reshape(b, s, h, dh).transpose(0, 2, 1, 3)
        k, v = (t.reshape(b, s, kv, dh).transpose(0, 2, 1, 3) for t in (k, v))
        if cfg.positions == "rotary":
            positions = pos + jnp.arange(s)
            if offset is not None:
                positions = jnp.maximum(positions[None, :] - offset[:, None], 0)
            q, k = rotate(q, positions, cfg), rotate(k, positions, cfg)
        if cache is None:
            keys, values = k, v
            allowed = jnp.tril(jnp.ones((s, s), bool))
        else:
            k, v = k.astype(cache[0].dtype), v.astype(cache[1].dtype)  # no-op casts unless the cache is bf16
            keys = jax.lax.dynamic_update_slice(cache[0], k, (0, 0, pos, 0))
            values = jax.lax.dynamic_update_slice(cache[1], v, (0, 0, pos, 0))
            allowed = jnp.arange(keys.shape[2])[None, :] <= (pos + jnp.arange(s))[:, None]
        if offset is not None:  # [B, 1, S, C]: no row attends to its left padding
            allowed = allowed[None] & (jnp.arange(keys.shape[2])[None, None, :] >= offset[:, None, None])
            allowed = allowed[:, None]
        if kv == h:
            scores = jnp.einsum("bhqd,bhkd->bhqk", q, keys) / math.sqrt(dh)
            scores = jnp.where(allowed, scores, jnp.finfo(scores.dtype).min)
            out = jnp.einsum("bhqk,bhkd->bhqd", _softmax(scores, values.dtype), values)
        else:  # grouped-query: query heads g*kv .. g*kv+g-1 share kv head g (HF's repeat_kv order)
            qg = q.reshape(b, kv, h // kv, s, dh)
            scores = jnp.einsum("bkgqd,bkcd->bkgqc", qg, keys) / math.sqrt(dh)
            scores = jnp.where(allowed if offset is None else allowed[:, None], scores, jnp.finfo(scores.dtype).min)
            out = jnp.einsum("bkgqc,bkcd->bkgqd", _softmax(scores, values.dtype), values).reshape(b, h, s, dh)
        return self.proj(out.transpose(0, 2, 1, 3).reshape(b, s, h * dh)), (keys, values)


class Block(nnx.Module):
    """Pre-norm transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x)); with parallel_residual
    x + attn(ln_1(x)) + mlp(ln_2(x))."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        d, f = cfg.d_model, cfg.ff
        self.cfg = cfg
        self.ln_1 = make_norm(cfg, rngs)
        self.attn = Attention(cfg, rngs=rngs)
        self.ln_2 = make_norm(cfg, rngs)
        width = 2 * f if cfg.mlp == "gated" else f
        dt = cfg.dense_dtype
        self.fc = nnx.Linear(d, width, use_bias=cfg.mlp_bias, kernel_init=normal(0.02), dtype=dt, rngs=rngs)
        std = 0.02 / math.sqrt(2 * cfg.n_layer)
        self.out = nnx.Linear(f, d, use_bias=cfg.mlp_bias, kernel_init=normal(std), dtype=dt, rngs=rngs)

    def mlp(self, x):
        if self.cfg.mlp == "gated":
            gate, up = jnp.split(self.fc(x), 2, axis=-1)
            return self.out(activate(gate, self.cfg.activation) * up)
        return self.out(activate(self.fc(x), self.cfg.activation))

    def __call__(self, x, cache=None, pos=0, offset=None):
        a, cache = self.attn(self.ln_1(x), cache, pos, offset)
        if self.cfg.parallel_residual:
            return x + a + self.mlp(self.ln_2(x)), cache
        x = x + a
        x = x + self.mlp(self.ln_2(x))
        return x, cache
