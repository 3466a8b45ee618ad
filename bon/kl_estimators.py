"""KL of best-of-n three ways: the bound, the exact KL on the pool, and Beirami et al.'s estimator.

  kl_bound(n)   = log n - (n-1)/n: the classic analytic value (Stiennon et al. 2020, Gao et al. 2022).
                  Beirami et al. 2024 (arXiv 2401.01879) show it is an upper bound on
                  KL(best-of-n || base), exact only when the score has no atoms (no ties).
  kl_exact      = sum_i p_i log(p_i N) with p = `bon.selection.max_probs`: best-of-n's KL against the
                  pool's empirical distribution, tie blocks getting F^n - F-^n (equal to
                  `bon.estimator.bon_kl_estimate`, the old `kl_est`). At most log N: a finite pool
                  also saturates it when n nears N.
  kl_beirami    = their estimator from the reference probability eps of the selected response:
                  KL_n(eps) = (1-eps)^n (log n + (n-1) log(1-eps) - (n-1)/n)
                              + (1 - (1-eps)^n) log((1 - (1-eps)^n) / eps),
                  the exact KL of best-of-n for a score distribution that is continuous except for
                  one atom of mass eps at the top (the atom is kept with probability 1 - (1-eps)^n;
                  below it best-of-n has density n u^(n-1) on u in [0, 1-eps]). It is 0 at eps = 1,
                  tends to the bound as eps -> 0, and lies in [0, kl_bound(n)]. Per prompt we report
                  its expectation over the selected response, sum_i p_i KL_n(eps_i), with eps_i =
                  exp(ref_logprob_i) where the reference log-probs are known, else the response's
                  share of the pool (identical responses via `sample_ids`, or its tie block).

`bound_gap` is the per-prompt diagnostic: where bound - kl_exact exceeds a threshold the bound is
loose. It splits the gap into the part a tie-free pool of the same size would have (pool
saturation, n comparable to N) and the part due to ties (low-entropy prompts, repeated responses).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from bon.estimator import as_pool, bon_kl_analytic
from bon.selection import kl_exact, max_probs, tie_blocks
from core.errors import UsageError


def kl_bound(n):
    """log n - (n-1)/n for n >= 1 (real n allowed); float, or a float64 array of n's shape."""
    return bon_kl_analytic(n)


def kl_bound_inverse(kl) -> float:
    """The real n >= 1 with kl_bound(n) = kl (kl >= 0; monotone): x = log n solves x - 1 + e^-x = kl."""
    kl = float(kl)
    if not np.isfinite(kl) or kl < 0:
        raise UsageError(f"kl must be finite and >= 0, got {kl!r}")
    if kl == 0:
        return 1.0
    f = lambda x: x + np.expm1(-x) - kl  # increasing in x >= 0, f(0) = -kl < 0 <= f(kl + 1)
    return float(np.exp(brentq(f, 0.0, kl + 1.0, xtol=1e-14, rtol=1e-15)))


def kl_beirami(n, eps):
    """Beirami et al.'s KL_n(eps) (module docstring), broadcast over n >= 1 and eps in [0, 1]."""
    n = np.asarray(n, dtype=np.float64)
    eps = np.asarray(eps, dtype=np.float64)
    if np.any(~np.isfinite(n)) or np.any(n < 1):
        raise UsageError("n must be finite and >= 1")
    if np.any(~(eps >= 0)) or np.any(eps > 1):
        raise UsageError("eps (a probability) must lie in [0, 1]")
    with np.errstate(divide="ignore", invalid="ignore"):
        l1 = np.log1p(-eps)  # -inf at eps = 1
        a = np.exp(n * l1)  # (1-eps)^n
        one_minus_a = -np.expm1(n * l1)
        first = np.where(a > 0, a * (np.log(n) + np.where(a > 0, (n - 1) * l1, 0.0) - (n - 1) / n), 0.0)
        ratio = np.where(eps > 0, one_minus_a / np.where(eps > 0, eps, 1.0), n)  # -> n as eps -> 0
        second = np.where(one_minus_a > 0, one_minus_a * np.log(ratio), 0.0)
    out = np.clip(first + second, 0.0, bon_kl_analytic(np.maximum(n, 1.0)))  # rounding only
    return float(out) if out.ndim == 0 else out


def _eps(scores: np.ndarray, ref_logprob, sample_ids) -> np.ndarray:
    """The reference probability of each pool entry [P, N] (see the module docstring)."""
    if ref_logprob is not None:
        lp = as_pool("ref_logprob", ref_logprob, scores.shape)
        if np.any(lp > 0):
            raise UsageError("ref_logprob must be <= 0 (a log-probability)")
        return np.exp(lp)
    pool_size = scores.shape[1]
    if sample_ids is not None:
        ids = np.asarray(sample_ids)
        ids = ids[None, :] if ids.ndim == 1 else ids
        if ids.shape != scores.shape:
            raise UsageError(f"sample_ids has shape {ids.shape}, expected {scores.shape}")
        share = np.empty(scores.shape)
        for k, row in enumerate(ids):
            _, inv, counts = np.unique(row, return_inverse=True, return_counts=True)
            share[k] = counts[inv.ravel()] / pool_size
        return share
    return tie_blocks(scores)[2] / pool_size


def kl_beirami_pool(proxy, ns, *, ref_logprob=None, sample_ids=None) -> np.ndarray:
    """Per prompt, E[KL_n(eps of the best-of-n response)] for each n in `ns`: float64 [P, len(ns)].

    Arguments: `proxy` (P, N) ranking scores; `ns` reals >= 1; `ref_logprob` (P, N) optional
    reference log-probabilities (eps = exp); else `sample_ids` (P, N) optional response ids (eps =
    the response's share of the pool); else eps = the share of its tie block. Each value lies in
    [0, kl_bound(n)].
    """
    s = as_pool("proxy", proxy)
    eps = _eps(s, ref_logprob, sample_ids)
    ns = np.atleast_1d(np.asarray(ns, dtype=np.float64))
    blocks = tie_blocks(s)
    return np.stack([np.einsum("pi,pi->p", max_probs(s, n, blocks=blocks), kl_beirami(n, eps)) for n in ns], axis=1)


@dataclass(frozen=True)
class BoundGap:
    """Per-prompt looseness of the analytic bound.

    Fields: `ns` float[M]; `kl_bound` float[M]; `kl_exact`, `gap` (= bound - exact), `tie_gap` (the
    part of the gap a tie-free pool of the same size does not have), `loose` (gap > threshold):
    [P, M]; `any_loose` bool[P]; `tie_fraction` (share of entries whose score is shared) float[P];
    `entropy` (nats, of the pool's distribution of score values; log N without ties) float[P];
    `threshold`.
    """

    ns: np.ndarray
    kl_bound: np.ndarray
    kl_exact: np.ndarray
    gap: np.ndarray
    tie_gap: np.ndarray
    loose: np.ndarray
    any_loose: np.ndarray
    tie_fraction: np.ndarray
    entropy: np.ndarray
    threshold: float


def bound_gap(proxy, ns, *, threshold: float = 0.1) -> BoundGap:
    """Flag the prompts where log n - (n-1)/n overstates best-of-n's exact KL by more than `threshold`."""
    s = as_pool("proxy", proxy)
    n_prompts, pool_size = s.shape
    ns = np.atleast_1d(np.asarray(ns, dtype=np.float64))
    exact = np.stack([kl_exact(max_probs(s, n)) for n in ns], axis=1)
    distinct = np.array([kl_exact(max_probs(np.arange(pool_size, dtype=np.float64), n))[0] for n in ns])
    bound = kl_bound(ns)
    gap = bound[None, :] - exact
    size = tie_blocks(s)[2]
    share = size / pool_size
    return BoundGap(
        ns=ns,
        kl_bound=bound,
        kl_exact=exact,
        gap=gap,
        tie_gap=distinct[None, :] - exact,
        loose=gap > threshold,
        any_loose=(gap > threshold).any(axis=1),
        tie_fraction=(size > 1).mean(axis=1),
        entropy=-(np.log(share)).mean(axis=1),  # sum over blocks of -(|G|/N) log(|G|/N)
        threshold=float(threshold),
    )
