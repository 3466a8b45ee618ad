"""The 95% intervals of a group's fit, resampling the group's unit (`Group.interval`, chosen in
`scaling.groups`):

- "prompts" / "clusters" / "points": percentile bootstrap of whole clusters (`boot_draws`): every resample is
  a multiset of clusters, each row of a drawn cluster counted with its multiplicity, refitted at once;
  widened by `bootstrap.small_sample_factor`. With `Group.reweight` each resample re-estimates the weights
  1/gold_se^2 from its own prompts (`bootstrap.se2_ratio`): the weights are part of the estimator, and
  holding them fixed under-covers where the law misfits (tests/test_coverage.py measures both);
- "seeds": the pooled estimate +- t_{0.975, k-1} SE, SE the cluster-robust (CR1) standard error with each
  seed a cluster (`seed_ci`). When the seeds share their d grid and weights this is exactly sd(the law
  fitted to each seed alone, ddof=1) / sqrt(k); when their grids differ, that per-seed spread misses the
  seed effects the pooled fit projects onto beta (tests/test_fitting.py: beta covered 19-46% of the time),
  and CR1 does not. With 2-4 seeds a percentile bootstrap has a handful of distinct resamples, hence t.
The joint fit (alpha shared by several groups) resamples within each group (`joint_boot_draws`), or takes
CR1 over the seeds the groups share (`joint_seed_ci`). `draws_for_counts` and `joint_draws_for_counts` refit
under given cluster counts (`scaling.slope_intervals` applies one draw of prompts to several groups).
"""

from __future__ import annotations

import numpy as np

from scaling.bootstrap import (
    boot_chunks,
    boot_factor,
    boot_joint,
    boot_linear_clusters,
    boot_power,
    cluster_counts,
    percentile_ci,
    se2_ratio,
    t_quantile,
)
from scaling.groups import Group
from scaling.laws import LAWS, power_jacobian


def _weights(g: Group, cc: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """(ratio [m, L] or None, per-row weights of every resample [m, n]) for cluster counts cc."""
    if not g.reweight:
        return None, np.broadcast_to(g.w, (len(cc), len(g.w)))
    ratio = se2_ratio(g.y, g.clusters, g.levels, cc)
    return ratio, g.w * ratio[:, g.levels]


def draws_for_counts(g: Group, cc: np.ndarray) -> np.ndarray:
    """The group's fit under given cluster counts cc [m, n_clusters] (one resample a row; `Group.reweight`:
    the weights re-estimated from each resample's clusters, `bootstrap.se2_ratio`): [m, p] (NaN: no fit).
    Batched by `boot_chunks`, so any m is fine."""
    basis = LAWS[g.law].basis
    X = basis(g.d) if basis is not None else None
    parts, start = [], 0
    for m in boot_chunks(len(cc), len(g.d)):
        part, start = cc[start : start + m], start + m
        if X is not None:
            ratio = se2_ratio(g.y, g.clusters, g.levels, part) if g.reweight else None
            parts.append(boot_linear_clusters(X, g.y, g.w, g.clusters, part, g.levels, ratio))
        else:
            _, w = _weights(g, part)
            theta = boot_power(g.d, g.y, np.nan_to_num(w, nan=1.0), part[:, g.clusters])
            theta[~np.isfinite(w).all(axis=1)] = np.nan
            parts.append(theta)
    return np.concatenate(parts) if parts else np.zeros((0, len(LAWS[g.law].params)))


def boot_draws(g: Group, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """The group's fit under n_boot resamples of its clusters, drawn batch by batch: [n_boot, p] (NaN rows:
    no fit)."""
    parts = [draws_for_counts(g, cluster_counts(rng, g.n_clusters, m)) for m in boot_chunks(n_boot, len(g.d))]
    return np.concatenate(parts)


def boot_ci(g: Group, center: np.ndarray, n_boot: int, rng: np.random.Generator) -> list:
    """95% percentile intervals of the group's parameters about `center` (the fit on all rows)."""
    return percentile_ci(boot_draws(g, n_boot, rng), center, boot_factor([g], len(center)))


def t_ci(center: np.ndarray, se: np.ndarray, k: int) -> list:
    """center +- t_{0.975, k-1} se, one interval a parameter; None for one whose se is not finite or k < 2."""
    if k < 2:
        return [None] * len(center)
    t = t_quantile(k - 1)
    return [[float(c - t * s), float(c + t * s)] if np.isfinite(s) else None for c, s in zip(center, se, strict=True)]


def cluster_robust_se(J: np.ndarray, w: np.ndarray, resid: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """Standard errors of a weighted least-squares fit with clustered errors (CR1, clusters = seeds):
    sqrt(diag(k/(k-1) B M B)), B = (J' W J)^-1, M = sum_s U_s U_s', U_s = sum over seed s's rows of
    J_r w_r resid_r. On a d grid shared by the seeds with the same weights this is sd(per-seed estimates,
    ddof=1) / sqrt(k) exactly. Arguments: J [n, p] (d f / d theta at the fit), w, resid [n], clusters codes.
    Returns se [p] (NaN when singular)."""
    k, p = int(clusters.max()) + 1, J.shape[1]
    A = (J * w[:, None]).T @ J
    try:
        bread = np.linalg.inv(A)
    except np.linalg.LinAlgError:
        return np.full(p, np.nan)
    U = np.stack([np.bincount(clusters, weights=J[:, j] * w * resid, minlength=k) for j in range(p)], axis=1)
    V = k / (k - 1) * bread @ (U.T @ U) @ bread
    return np.sqrt(np.clip(np.diag(V), 0.0, None))


def law_jacobian(law: str, d: np.ndarray, params: np.ndarray) -> np.ndarray:
    """d f / d theta of a law at params, [n, p] (the basis for the forms linear in their parameters)."""
    basis = LAWS[law].basis
    return basis(d) if basis is not None else power_jacobian(d, *params)


def seed_ci(g: Group, center: np.ndarray) -> list:
    """The t interval over seeds: center +- t_{k-1} CR1 standard error (`cluster_robust_se`)."""
    resid = g.y - LAWS[g.law].fn(g.d, *center)
    se = cluster_robust_se(law_jacobian(g.law, g.d, center), g.w, resid, g.seeds)
    return t_ci(center, se, len(g.seed_ids))


def joint_design(groups: list[Group], rows: list[np.ndarray] | None = None):
    """Design of the joint fit y ~ alpha x0 + beta_g x1 (one beta a group) over the chosen rows of each
    group (all when rows is None). Returns X [n, 1 + G], y, w, member (group index of each row)."""
    law = LAWS[groups[0].law]
    rows = rows or [np.ones(len(g.d), bool) for g in groups]
    G = len(groups)
    sizes = [int(r.sum()) for r in rows]
    X = np.zeros((sum(sizes), 1 + G))
    start = 0
    for j, (g, r) in enumerate(zip(groups, rows, strict=True)):
        B = law.basis(g.d[r])
        X[start : start + sizes[j], 0] = B[:, 0]
        X[start : start + sizes[j], 1 + j] = B[:, 1]
        start += sizes[j]
    y = np.concatenate([g.y[r] for g, r in zip(groups, rows, strict=True)])
    w = np.concatenate([g.w[r] for g, r in zip(groups, rows, strict=True)])
    return X, y, w, np.repeat(np.arange(G), sizes)


def joint_boot_draws(groups: list[Group], X, y, member, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """The joint fit under n_boot stratified resamples: each group's clusters drawn within the group, so
    that every group keeps its rows in every resample. Returns [n_boot, 1 + G]."""
    parts = []
    for m in boot_chunks(n_boot, len(y)):
        ccs = [cluster_counts(rng, g.n_clusters, m) for g in groups]
        parts.append(joint_draws_for_counts(groups, X, y, member, ccs))
    return np.concatenate(parts)


def joint_draws_for_counts(groups: list[Group], X, y, member, ccs: list[np.ndarray]) -> np.ndarray:
    """The joint fit (`joint_design`'s X, y, member) under given cluster counts, one [m, C_g] array a group
    (weights re-estimated as in `draws_for_counts`). Returns [m, 1 + G] (NaN rows: no fit)."""
    x1 = X[np.arange(len(y)), 1 + member]
    parts, start = [], 0
    for m in boot_chunks(len(ccs[0]), len(y)):
        part = [cc[start : start + m] for cc in ccs]
        start += m
        counts = [cc[:, g.clusters] for g, cc in zip(groups, part, strict=True)]
        weights = [_weights(g, cc)[1] for g, cc in zip(groups, part, strict=True)]
        cw = np.concatenate(counts, axis=1) * np.concatenate(weights, axis=1)
        bad = ~np.isfinite(cw).all(axis=1)
        draws = boot_joint(X[:, 0], x1, member, y, np.ones(len(y)), np.nan_to_num(cw, nan=0.0))
        draws[bad] = np.nan
        parts.append(draws)
    return np.concatenate(parts) if parts else np.zeros((0, 1 + len(groups)))


def shared_seed_ids(groups: list[Group]) -> bool:
    """Every group's interval is "seeds" and the groups have the same seed ids."""
    return all(g.interval == "seeds" for g in groups) and len({g.seed_ids for g in groups}) == 1


def joint_seed_ci(groups: list[Group], X: np.ndarray, w: np.ndarray, resid: np.ndarray, center) -> list:
    """The joint fit's t interval over the seeds the groups share: CR1 with a seed's rows of every group
    one cluster (on a shared d grid: the spread of the per-seed joint fits)."""
    seeds = np.concatenate([g.seeds for g in groups])
    return t_ci(center, cluster_robust_se(X, w, resid, seeds), len(groups[0].seed_ids))
