"""Ensemble objectives over the scores of k proxy RMs (Coste et al. 2023): mean, min, median, uwo.

Member scores come stacked on axis 0, shape [k, ...]; every objective reduces that axis. NumPy input
gives NumPy output (float64 stays float64, for best-of-n pools); JAX input gives JAX output and the
functions are jittable (for PPO rewards), with `lam` traceable so a grid can vmap over it.

- mean: the ensemble average.
- min: worst-case optimization (WCO), the most pessimistic member.
- median: robust to one wild member.
- uwo: uncertainty-weighted optimization, mean - lam * var over members. The variance is the
  population variance (ddof=0): the spread of these k members themselves, defined for k = 1, and what
  the authors' best-of-n code computes (np.var). Their PPO reward code uses torch.var, the sample
  variance (ddof=1), i.e. lam scaled by k/(k-1): pass ddof=1 to reproduce it.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from core.errors import UsageError

OBJECTIVES = ("mean", "min", "median", "uwo")


def _members(scores):
    """(array module, scores) with the member axis 0 checked."""
    xp = jnp if isinstance(scores, jax.Array) else np
    scores = xp.asarray(scores)
    if scores.ndim < 1 or scores.shape[0] < 1:
        raise UsageError(f"ensemble scores need a member axis 0 of size >= 1, got shape {scores.shape}")
    return xp, scores


def mean(scores):
    """Arguments: scores [k, ...]. Returns: the mean over members, shape [...]."""
    xp, s = _members(scores)
    return xp.mean(s, axis=0)


def minimum(scores):
    """Worst-case objective. Arguments: scores [k, ...]. Returns: the min over members, shape [...]."""
    xp, s = _members(scores)
    return xp.min(s, axis=0)


def median(scores):
    """Arguments: scores [k, ...]. Returns: the median over members (mean of the middle two for even k)."""
    xp, s = _members(scores)
    return xp.median(s, axis=0)


def uwo(scores, lam=1.0, ddof=0):
    """Uncertainty-weighted objective mean - lam * var over members.

    Arguments: scores [k, ...]; lam >= 0 penalises disagreement (a float or a traced scalar);
    ddof 0 (population variance, the default) or 1 (sample variance, needs k >= 2).
    Returns: shape [...].
    """
    xp, s = _members(scores)
    if ddof not in (0, 1) or ddof >= s.shape[0]:
        raise UsageError(f"uwo needs ddof 0 or 1 below the ensemble size {s.shape[0]}, got {ddof}")
    if isinstance(lam, (int, float)) and not math.isfinite(lam):
        raise UsageError(f"uwo lam must be finite, got {lam}")
    return xp.mean(s, axis=0) - lam * xp.var(s, axis=0, ddof=ddof)


def objective(name: str, scores, lam=1.0, ddof=0):
    """Apply the ensemble objective `name` (one of OBJECTIVES) to member scores [k, ...].

    Arguments: name; scores [k, ...]; lam and ddof are used by "uwo" only.
    Returns: shape [...], NumPy or JAX like the input.
    """
    if name == "mean":
        return mean(scores)
    if name == "min":
        return minimum(scores)
    if name == "median":
        return median(scores)
    if name == "uwo":
        return uwo(scores, lam=lam, ddof=ddof)
    raise UsageError(f"unknown ensemble objective {name!r}; choose one of {', '.join(OBJECTIVES)}")
