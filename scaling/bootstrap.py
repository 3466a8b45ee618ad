"""Bootstrap and Jacobian intervals of the law fits.

- Bootstrap: clusters (prompts, other columns, or points) drawn with replacement, every resample refitted
  at once (normal equations summed per cluster for the linear forms, `boot_linear_clusters`; the batched
  gamma profile for `power`), in batches of at most BOOT_CELLS (resample, point) cells; optionally with the
  weights 1/se^2 re-estimated from each resample's clusters (`se2_ratio`); 95% percentile intervals
  widened by sqrt(n/(n-k)) t/z as in CR1/HC1 small-sample corrections (`small_sample_factor`).
- Jacobian: theta +- t_{dof} sqrt(diag cov) (Student t on the residual variance).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import stats

from scaling.least_squares import Fit, profile_power, solve_batched

LEVEL = 0.95
BOOT_CELLS = 2_000_000  # bootstrap batches of at most this many (resample, point) cells: bounded memory
Z95 = 1.959963984540054  # normal quantile 0.975


def cluster_counts(rng: np.random.Generator, n_clusters: int, n_boot: int) -> np.ndarray:
    """Multiplicity of each cluster in each resample, [n_boot, n_clusters]: n_clusters draws with replacement."""
    draws = rng.integers(0, n_clusters, size=(n_boot, n_clusters))
    flat = (draws + n_clusters * np.arange(n_boot)[:, None]).ravel()  # one bincount for all resamples
    return np.bincount(flat, minlength=n_boot * n_clusters).reshape(n_boot, n_clusters).astype(float)


def boot_counts(rng: np.random.Generator, clusters: np.ndarray, n_boot: int) -> np.ndarray:
    """Multiplicity of each point in each resample, [n_boot, n]: clusters are drawn with replacement."""
    return cluster_counts(rng, int(clusters.max()) + 1, n_boot)[:, clusters]


def _cell_sums(values: np.ndarray, cell: np.ndarray, n_cells: int) -> np.ndarray:
    """Sum of each column of values [n, k] over the rows of each cell: [n_cells, k]."""
    return np.stack([np.bincount(cell, weights=v, minlength=n_cells) for v in values.T], axis=1)


def se2_ratio(y: np.ndarray, clusters: np.ndarray, levels: np.ndarray, cc: np.ndarray) -> np.ndarray:
    """How each resample's squared standard error of the mean at each level compares with the sample's:
    se2(sample) / se2(resample), [n_boot, n_levels], with se2 = var(y at the level, ddof=1) / rows there.

    Weights 1/se^2 re-estimated in a resample are the sample's weights times this ratio. A level whose
    sample variance is 0 keeps its weight (ratio 1); a resample with variance 0 where the sample has some
    gets NaN (that resample is dropped). Arguments: y [n]; clusters, levels: int codes [n]; cc: cluster
    counts [n_boot, C].
    """
    C, L = cc.shape[1], int(levels.max()) + 1
    m0 = np.bincount(levels, minlength=L).astype(float)
    yc = y - (np.bincount(levels, weights=y, minlength=L) / m0)[levels]  # centred: no cancellation below
    cell = clusters * L + levels
    sums = _cell_sums(np.stack([np.ones_like(y), yc, yc * yc], axis=1), cell, C * L).reshape(C, L, 3)
    m, s1, s2 = (cc @ sums[:, :, k] for k in range(3))
    with np.errstate(divide="ignore", invalid="ignore"):
        se2_b = (s2 - s1 * s1 / m) / (m - 1) / m
        se2_0 = sums[:, :, 2].sum(axis=0) / (m0 - 1) / m0
        ratio = se2_0 / se2_b
    ratio[:, ~(se2_0 > 0)] = 1.0
    ratio[~np.isfinite(ratio)] = np.nan
    return ratio


def boot_linear_clusters(
    X: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    clusters: np.ndarray,
    cc: np.ndarray,
    levels: np.ndarray | None = None,
    ratio: np.ndarray | None = None,
) -> np.ndarray:
    """Weighted LS refitted under every resample of whole clusters, from per-cluster sums (O(n_boot C)).

    Arguments: X [n, p], y [n], w [n]; clusters: int codes [n]; cc: cluster counts [n_boot, C]; levels and
    ratio ([n_boot, L], `se2_ratio`): each resample's weights are w times the ratio at the row's level.
    Returns theta [n_boot, p] (NaN: singular or a NaN ratio). The same numbers as `boot_linear` with
    counts = cc[:, clusters] and w * ratio[:, levels].
    """
    n, p = X.shape
    C = cc.shape[1]
    L = 1 if ratio is None else ratio.shape[1]
    lev = np.zeros(n, np.int64) if ratio is None else levels
    scale = np.linalg.norm(X * np.sqrt(w)[:, None], axis=0)
    scale[scale == 0] = 1.0
    Xs = X / scale
    outer = (Xs[:, :, None] * Xs[:, None, :]).reshape(n, p * p)
    sums = _cell_sums(np.concatenate([outer, Xs * y[:, None]], axis=1) * w[:, None], clusters * L + lev, C * L)
    per = (cc @ sums.reshape(C, L * (p * p + p))).reshape(len(cc), L, p * p + p)
    tot = per.sum(axis=1) if ratio is None else np.einsum("bl,blk->bk", ratio, per)
    bad = ~np.isfinite(tot).all(axis=1)
    tot[bad] = 0.0
    theta = solve_batched(tot[:, : p * p].reshape(-1, p, p), tot[:, p * p :]) / scale
    theta[bad] = np.nan
    return theta


def boot_chunks(n_boot: int, n_points: int) -> list[int]:
    """Resamples per batch, so that a batch's [batch, n_points] arrays stay near BOOT_CELLS cells."""
    size = max(1, BOOT_CELLS // max(n_points, 1))
    return [min(size, n_boot - i) for i in range(0, n_boot, size)]


def boot_linear(X: np.ndarray, y: np.ndarray, w: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Weighted LS refitted under every resample at once. Returns theta [n_boot, p] (NaN: singular)."""
    n, p = X.shape
    scale = np.linalg.norm(X * np.sqrt(w)[:, None], axis=0)
    scale[scale == 0] = 1.0
    Xs = X / scale
    cw = counts * w
    outer = (Xs[:, :, None] * Xs[:, None, :]).reshape(n, p * p)
    A = (cw @ outer).reshape(-1, p, p)
    b = cw @ (Xs * y[:, None])
    return solve_batched(A, b) / scale


def boot_joint(
    x0: np.ndarray, x1: np.ndarray, member: np.ndarray, y: np.ndarray, w: np.ndarray, counts: np.ndarray
) -> np.ndarray:
    """Joint fit y ~ theta_0 x0 + theta_{1+g} x1 (g = member) under every resample: the normal matrix is
    arrow-shaped, so it is solved by its Schur complement in O(n_boot n). Returns [n_boot, 1 + G]."""
    G = int(member.max()) + 1
    M = np.zeros((len(y), G))
    M[np.arange(len(y)), member] = 1.0
    cw = counts * w
    a, r0 = cw @ (x0 * x0), cw @ (x0 * y)
    c, e, r = cw @ (M * (x0 * x1)[:, None]), cw @ (M * (x1 * x1)[:, None]), cw @ (M * (x1 * y)[:, None])
    with np.errstate(divide="ignore", invalid="ignore"):
        schur = a - np.sum(c * c / e, axis=1)
        alpha = (r0 - np.sum(c * r / e, axis=1)) / schur
        beta = (r - c * alpha[:, None]) / e
    out = np.column_stack([alpha, beta])
    bad = (e <= 0).any(axis=1) | ~(schur > 1e-11 * a) | ~np.isfinite(out).all(axis=1)
    out[bad] = np.nan
    return out


def boot_power(d, y, w, counts) -> np.ndarray:
    """Power-law fit under every resample at once (`profile_power`). Returns theta [n_boot, 3]."""
    return profile_power(d, y, counts * w)


def small_sample_factor(n_units: int, k: int) -> float:
    """Widening of bootstrap intervals: sqrt(n/(n-k)) (as HC1/CR1) times t_{n-k}/z (Student, not normal).

    Arguments: n_units (points or clusters resampled); k (parameters for points, strata for clusters).
    Returns: the factor (inf when n_units <= k).
    """
    dof = n_units - k
    if dof <= 0:
        return math.inf
    return math.sqrt(n_units / dof) * t_quantile(dof) / Z95


def percentile_ci(draws: np.ndarray, center: np.ndarray, factor: float = 1.0) -> list:
    """95% percentile interval of each column of draws [B, p], its spread about `center` scaled by `factor`.

    None for a column when under half the draws are finite or the factor is infinite.
    """
    ok = np.isfinite(draws).all(axis=1)
    if ok.sum() < max(2, 0.5 * len(draws)) or not math.isfinite(factor):
        return [None] * draws.shape[1]
    q = np.percentile(draws[ok], [50 * (1 - LEVEL), 50 * (1 + LEVEL)], axis=0)
    q = center + factor * (q - center)
    return [[float(q[0, j]), float(q[1, j])] for j in range(draws.shape[1])]


def boot_factor(groups: list, n_params: int) -> float:
    """`small_sample_factor` of a fit over `groups` (scaling.groups.Group): clusters against strata when
    any group resamples clusters, else points against the fit's parameters."""
    units = sum(int(g.clusters.max()) + 1 for g in groups)
    clustered = any(g.unit != "points" for g in groups)
    return small_sample_factor(units, len(groups) if clustered else n_params)


@functools.lru_cache(maxsize=4096)
def t_quantile(dof: int) -> float:
    """Two-sided 95% Student t quantile (cached: scipy's ppf costs about a millisecond a call)."""
    return float(stats.t.ppf(0.5 * (1 + LEVEL), dof))


def jacobian_ci(fit: Fit, dof: int) -> list:
    """theta +- t_{dof} * sqrt(diag cov); None where there is no covariance (dof = 0 or singular)."""
    p = len(fit.params)
    if fit.cov is None or dof <= 0:
        return [None] * p
    t = t_quantile(dof)
    se = np.sqrt(np.clip(np.diag(fit.cov), 0, None))
    return [[float(th - t * s), float(th + t * s)] for th, s in zip(fit.params, se, strict=True)]
