"""The pooled verdict's tests, on arrays with replicates as the unit (docs/CRITERIA.md defines each):

- `page_l`: Page's L trend test, replicates as blocks, treatments in their predicted order; one-sided
  p exact (the null distribution of L enumerated and convolved over blocks) for n <= PAGE_EXACT_N, normal
  beyond; one block (K = 1) is the exact Spearman permutation test.
- `t_replicates`: the one-sample t-test (and t interval) of per-replicate values, K - 1 dof.
- `tost`: two one-sided t-tests of a mean slope against +-margin (equivalence at level p_max).
- `ols_slopes`: each replicate's OLS slope of y on x (rows of a matrix).
- `split_drops`: each replicate's fall from its peak region, the peak placed on other evaluations than
  those that measure the fall (no replicate's measured noise can choose its peak).

Every function is vectorised over leading axes, so the null simulations (tests/test_pooled_nulls.py) and
the power script (`criteria.power`) call the very code the verdict calls.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
from scipy import stats

PAGE_EXACT_N = 8  # n! <= 40320 orderings enumerated for the exact null of one block


@functools.lru_cache(maxsize=32)
def _page_pmf(m: int, n: int) -> np.ndarray:
    """pmf of L = sum_k sum_j j r_kj over m independent uniform permutations r_k of 1..n, indexed by L."""
    perms = np.array(list(itertools.permutations(range(1, n + 1))))
    one = np.bincount(perms @ np.arange(1, n + 1)).astype(float) / len(perms)
    pmf = np.array([1.0])
    for _ in range(m):
        pmf = np.convolve(pmf, one)
    return pmf


def page_p(L, m: int, n: int) -> np.ndarray:
    """One-sided p = P(L' >= L) under the null (no trend), for an array of L; exact for n <= PAGE_EXACT_N
    (a non-integer L from tied ranks rounds up), else the normal approximation with Page's moments."""
    L = np.asarray(L, float)
    if n <= PAGE_EXACT_N:
        sf = np.cumsum(_page_pmf(m, n)[::-1])[::-1]  # sf[v] = P(L' >= v)
        idx = np.ceil(L - 1e-9).astype(int)
        return np.where(idx >= len(sf), 0.0, sf[np.clip(idx, 0, len(sf) - 1)])
    mean = m * n * (n + 1) ** 2 / 4
    var = m * n**2 * (n + 1) * (n**2 - 1) / 144
    return stats.norm.sf((L - mean) / np.sqrt(var))


def within_ranks(y: np.ndarray) -> np.ndarray:
    """Ranks 1..n along the last axis, ties given their average rank (inf ranks last)."""
    return stats.rankdata(y, axis=-1, method="average")


def page_l(y) -> dict:
    """Page's L of y [..., m, n] (rows: blocks = replicates; columns: treatments in their predicted
    increasing order): L = sum_k sum_j j rank_kj. Returns {L, p, m, n, method}."""
    y = np.asarray(y, float)
    m, n = y.shape[-2:]
    L = np.sum(within_ranks(y) * np.arange(1, n + 1), axis=(-2, -1))
    method = "exact" if n <= PAGE_EXACT_N else "normal"
    return {"L": L, "p": page_p(L, m, n), "m": m, "n": n, "method": method}


def t_replicates(x, alternative: str = "greater", level: float = 0.95) -> dict:
    """One-sample t-test of mean(x) against 0 over the last axis (K replicates, K - 1 dof): {mean, se, t, p,
    k, interval} (interval: two-sided at `level`). p is one-sided ("greater" or "less"); with K < 2 or zero
    spread the t is undefined: p NaN (the caller says n/a)."""
    x = np.asarray(x, float)
    k = x.shape[-1]
    mean = x.mean(axis=-1)
    if k < 2:
        nan = np.full(np.shape(mean), np.nan)
        return {"mean": mean, "se": nan, "t": nan, "p": nan, "k": k, "interval": (nan, nan)}
    se = x.std(axis=-1, ddof=1) / np.sqrt(k)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 0, mean / se, np.nan)
    p = stats.t.sf(t, k - 1) if alternative == "greater" else stats.t.cdf(t, k - 1)
    q = stats.t.ppf(0.5 + level / 2, k - 1)
    return {"mean": mean, "se": se, "t": t, "p": p, "k": k, "interval": (mean - q * se, mean + q * se)}


def tost(x, margin, p_max: float = 0.05) -> dict:
    """Equivalence of mean(x) to 0 within +-margin: two one-sided t-tests over the last axis (K - 1 dof),
    H0- mean <= -margin and H0+ mean >= +margin; p = the larger of the two p-values (equivalence shown
    when p < p_max, i.e. the (1 - 2 p_max) t interval lies inside (-margin, margin))."""
    x = np.asarray(x, float)
    margin = np.asarray(margin, float)
    k = x.shape[-1]
    mean = x.mean(axis=-1)
    if k < 2:
        nan = np.full(np.shape(mean), np.nan)
        return {"mean": mean, "se": nan, "p": nan, "k": k, "interval": (nan, nan), "margin": margin}
    se = x.std(axis=-1, ddof=1) / np.sqrt(k)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_lo = stats.t.sf((mean + margin) / se, k - 1)  # against mean <= -margin
        p_hi = stats.t.cdf((mean - margin) / se, k - 1)  # against mean >= +margin
    q = stats.t.ppf(1 - p_max, k - 1)
    return {
        "mean": mean,
        "se": se,
        "p": np.maximum(p_lo, p_hi),
        "k": k,
        "interval": (mean - q * se, mean + q * se),
        "margin": margin,
    }


def ols_slopes(x, y) -> np.ndarray:
    """OLS slope of each row of y [..., n] on x [n] (a NaN row where x is constant)."""
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    xc = x - x.mean()
    den = float(xc @ xc)
    if den <= 0:
        return np.full(y.shape[:-1], np.nan)
    return ((y - y.mean(axis=-1, keepdims=True)) @ xc) / den


def smoothed(gold: np.ndarray) -> np.ndarray:
    """Centred 3-point moving average along the last axis; the two ends average 2 points."""
    total = gold.copy()
    count = np.ones(gold.shape[-1])
    total[..., 1:] += gold[..., :-1]
    total[..., :-1] += gold[..., 1:]
    count[1:] += 1
    count[:-1] += 1
    return total / count


def split_drops(curves) -> np.ndarray:
    """Each replicate's fall of curves [..., K, T] (the same T >= 3 evaluations), with the peak placed and
    measured on disjoint evaluations: the *selection* evaluations (parity other than the last's) of every
    replicate give the pooled mean curve, whose smoothed argmax i places the peak; each replicate's fall is
    the mean of its *measurement* evaluations next to i (i - 1 and i + 1 inside the curve) minus its last
    evaluation. The measurement noise is independent of where the peak was placed, so a flat curve falls
    by 0 on average and the replicates' falls stay independent (a peak placed by the other replicates'
    whole curves, as `criteria.overopt.seed_drops` does for seeds, leaves them correlated: the one-sided
    t-test then rejected 5.5-6% of flat nulls at 5%)."""
    c = np.asarray(curves, float)
    T = c.shape[-1]
    sel = np.arange(T)[np.arange(T) % 2 != (T - 1) % 2]
    i = sel[np.argmax(smoothed(c[..., sel].mean(axis=-2)), axis=-1)]  # [...]
    lo, hi = i - 1, i + 1  # measurement evaluations (parity of T - 1); lo < 0 when i = 0
    c_lo = np.take_along_axis(c, np.clip(lo, 0, T - 1)[..., None, None] * np.ones(c.shape[:-1] + (1,), int), -1)
    c_hi = np.take_along_axis(c, np.clip(hi, 0, T - 1)[..., None, None] * np.ones(c.shape[:-1] + (1,), int), -1)
    both = (lo >= 0)[..., None, None]
    peak = np.where(both, (c_lo + c_hi) / 2, c_hi)[..., 0]
    return peak - c[..., -1]
