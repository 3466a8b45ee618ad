"""Per-token estimators of KL(pi || ref) from the log-probs of tokens sampled from pi.

From Schulman's note "Approximating KL divergence" (2020). With x ~ pi, logp = log pi(x),
logq = log ref(x) and r = ref(x) / pi(x):
  k1 = logp - logq              unbiased; high variance; negative for some samples.
  k2 = 0.5 (logp - logq)^2      biased, low variance, >= 0. Its mean is an f-divergence that agrees
                                with KL to second order: with u = log r, E[u] = -KL and E[e^u] = 1, so
                                E[k2] - KL = -E_pi[e^u - 1 - u - u^2/2] = -(E[u^3]/6 + E[u^4]/24 + ...),
                                third order in the log-ratio; either sign, and large once pi and ref
                                are far apart.
  k3 = (r - 1) - log r          unbiased (E_pi[r] = 1), >= 0 (log r <= r - 1), lower variance than k1
                                when ref is close to pi.
Summed over the response tokens of a sequence, the k1 and k3 sums are unbiased for the sequence KL:
each token's conditional mean is the KL of that step's next-token distributions, and those add up
to the sequence KL by the chain rule. k3 of the summed log-ratio would be a different estimator.

NumPy input gives NumPy output; JAX input gives JAX output and everything is jittable.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from core.errors import UsageError

ESTIMATORS = ("k1", "k2", "k3")


def _xp(*arrays):
    return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def k1(logp, logq):
    """Arguments: log-probs under pi and ref of tokens sampled from pi. Returns: logp - logq."""
    xp = _xp(logp, logq)
    return xp.asarray(logp) - xp.asarray(logq)


def k2(logp, logq):
    """Arguments: as k1. Returns: 0.5 (logp - logq)^2 (biased; see the module docstring)."""
    xp = _xp(logp, logq)
    return 0.5 * xp.square(xp.asarray(logp) - xp.asarray(logq))


def k3(logp, logq):
    """Arguments: as k1. Returns: (r - 1) - log r with r = exp(logq - logp); expm1 keeps small r - 1 exact."""
    xp = _xp(logp, logq)
    log_r = xp.asarray(logq) - xp.asarray(logp)
    return xp.expm1(log_r) - log_r


def kl_penalty(logp, logq, estimator: str = "k1"):
    """Per-token KL estimate by name.

    Arguments: logp, logq [...] log-probs of tokens sampled from pi under pi and ref;
    estimator one of "k1", "k2", "k3".
    Returns: [...] per-token estimates (the per-token penalty of PPO's reward is kl_coef times this).
    """
    if estimator == "k1":
        return k1(logp, logq)
    if estimator == "k2":
        return k2(logp, logq)
    if estimator == "k3":
        return k3(logp, logq)
    raise UsageError(f"unknown KL estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}")


def sequence_kl(logp, logq, mask, estimator: str = "k1"):
    """Sequence KL estimate: the per-token estimator summed over response tokens.

    Arguments: logp, logq [B, T]; mask bool [B, T] (True on response tokens; masked positions may hold
    anything, even -inf or NaN); estimator as in `kl_penalty`.
    Returns: [B] in nats.
    """
    xp = _xp(logp, logq, mask)
    mask = xp.asarray(mask, dtype=bool)
    # zero both log-probs off the response first, so padding (even -inf) leaves no NaN in values or grads
    logp, logq = xp.where(mask, logp, 0.0), xp.where(mask, logq, 0.0)
    return xp.sum(kl_penalty(logp, logq, estimator), axis=-1)
