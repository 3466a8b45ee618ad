"""Generalized advantage estimation (Schulman et al. 2016) over response tokens, as a reverse lax.scan.

Per token t of a response: delta_t = r_t + gamma * V_{t+1} - V_t and A_t = delta_t + gamma * lam * A_{t+1},
with V and A taken as 0 after the last valid token (a response ends at EOS or truncation: nothing to
bootstrap from). Returns are A_t + V_t, the value head's regression target. Gao et al. use lam = 0.95
and gamma = 1. Everything is jittable; gamma and lam may be traced (vmapped hyperparameters).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def gae(rewards, values, mask, gamma=1.0, lam=0.95):
    """Advantages and returns for a batch of token sequences.

    Arguments:
      rewards: [B, T] per-token rewards (e.g. the KL penalty, plus the score at the last token).
      values: [B, T] value estimates V_t.
      mask: bool [B, T], True on response tokens: a prefix of each row. A False position ends the
        trajectory (no value is bootstrapped across it).
      gamma: discount; lam: GAE lambda.
    Returns: (advantages [B, T], returns [B, T]), both 0 where mask is False.
    """
    m = jnp.asarray(mask, dtype=bool)
    dtype = jnp.result_type(rewards, values)
    rewards = jnp.where(m, rewards, 0.0).astype(dtype)
    values = jnp.where(m, values, 0.0).astype(dtype)
    next_values = jnp.concatenate([values[:, 1:], jnp.zeros_like(values[:, :1])], axis=1)
    deltas = rewards + gamma * next_values - values

    def step(next_adv, xs):
        delta, valid = xs
        adv = jnp.where(valid, delta + gamma * lam * next_adv, 0.0)
        return adv, adv

    _, adv_t = jax.lax.scan(step, jnp.zeros(values.shape[:1], dtype), (deltas.T, m.T), reverse=True)
    advantages = adv_t.T
    return advantages, jnp.where(m, advantages + values, 0.0)


def whiten(x, mask, shift_mean=True, eps=1e-8):
    """Normalise x to zero mean and unit variance over the masked entries.

    Arguments: x [...]; mask bool [...] selecting the entries that count (and are returned); shift_mean
    False keeps the mean (scale only, as for rewards); eps guards a zero variance.
    Returns: like x, 0 where mask is False. The variance is the population one over the masked entries.
    """
    m = jnp.asarray(mask, dtype=bool)
    count = jnp.maximum(m.sum(), 1)
    mean = jnp.where(m, x, 0.0).sum() / count
    var = jnp.where(m, jnp.square(x - mean), 0.0).sum() / count
    out = (x - mean) * jax.lax.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return jnp.where(m, out, 0.0)
