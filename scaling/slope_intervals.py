"""95% intervals of the coefficient-scaling slopes (`coef_scaling.scaling_rows`) that resample the unit the
groups of one context share, so that the estimation noise the sizes share (the same prompts, the same
seeds) is carried into the slope. `slope_unit` picks it:

- "prompts": every group resamples prompts (and n_boot > 0). Each resample draws ONE multiset of prompt ids
  (n_clusters draws with replacement) and applies the same counts to every group with the same prompt
  ids (`Group.cluster_ids`; groups with another set of prompts get their own draw), each group's law is
  refitted under them as its own bootstrap does (`intervals.draws_for_counts`, weights re-estimated with
  `Group.reweight`; the joint fit with alpha shared: `intervals.joint_draws_for_counts`), the slope of
  each coefficient against log10 size is the OLS slope of those refits, and the interval is the 95%
  percentile one about the full-data slope, widened by `bootstrap.boot_factor` (clusters against strata,
  one stratum a set of prompts) as the groups' own intervals are;
- "seeds": every group's interval is "seeds" with the same seed ids. Each group's law is fitted to each
  seed's rows alone (the joint fit: each seed's rows of every group), giving one slope a seed; the
  interval is the full-data slope +- t_{0.975, k-1} sd(per-seed slopes, ddof=1) / sqrt(k) (a percentile
  bootstrap over 2-4 seeds has too few distinct resamples);
- "sizes": otherwise, the OLS t interval across sizes (each size's coefficient taken as an independent
  point: blind to noise the sizes share).
"""

from __future__ import annotations

import numpy as np

from scaling.bootstrap import boot_factor, cluster_counts, percentile_ci
from scaling.groups import Group
from scaling.intervals import (
    draws_for_counts,
    joint_design,
    joint_draws_for_counts,
    shared_seed_ids,
    t_ci,
)
from scaling.laws import LAWS
from scaling.least_squares import fit_law, fit_linear


def slope_unit(groups: list[Group], n_boot: int) -> str:
    """What the slope intervals of a context's groups resample: "prompts", "seeds" or "sizes" (rules in
    the module docstring)."""
    if groups and n_boot > 0 and all(g.interval == "prompts" for g in groups):
        return "prompts"
    if groups and shared_seed_ids(groups):
        return "seeds"
    return "sizes"


def prompt_partition(groups: list[Group]) -> list[list[int]]:
    """The groups (indices) that share one set of prompt ids, in order of first appearance (a group
    without `cluster_ids` is a set of its own)."""
    parts: dict[tuple, list[int]] = {}
    for i, g in enumerate(groups):
        parts.setdefault(g.cluster_ids or ("group", i), []).append(i)
    return list(parts.values())


def prompt_draws(groups: list[Group], n_boot: int, rng: np.random.Generator, joint: bool = False) -> np.ndarray:
    """Every group's fit under n_boot joint resamples of prompts: one count vector a resample for all the
    groups with the same prompt ids, drawn set by set (`prompt_partition` order). joint: the groups' fit is
    the joint one (alpha shared, one beta each). Returns [n_boot, G, p] (p: the law's parameters; joint:
    alpha and the group's beta; NaN: no fit)."""
    ccs: list = [None] * len(groups)
    for idx in prompt_partition(groups):
        cc = cluster_counts(rng, groups[idx[0]].n_clusters, n_boot)
        for i in idx:
            ccs[i] = cc
    if joint:
        X, y, _, member = joint_design(groups)
        d = joint_draws_for_counts(groups, X, y, member, ccs)
        return np.stack([d[:, [0, 1 + j]] for j in range(len(groups))], axis=1)
    return np.stack([draws_for_counts(g, cc) for g, cc in zip(groups, ccs, strict=True)], axis=1)


def seed_fits(groups: list[Group], joint: bool = False) -> np.ndarray:
    """Each group's law fitted to each seed's rows alone (joint: the joint fit on each seed's rows of every
    group). The groups share their seed ids. Returns [k, G, p] (NaN: no fit)."""
    k, G = len(groups[0].seed_ids), len(groups)
    p = 2 if joint else len(LAWS[groups[0].law].params)
    out = np.full((k, G, p), np.nan)
    for s in range(k):
        rows = [g.seeds == s for g in groups]
        if joint:
            X, y, w, _ = joint_design(groups, rows)
            theta = fit_linear(X, y, w).params
            out[s] = np.column_stack([np.full(G, theta[0]), theta[1:]])
            continue
        for i, (g, r) in enumerate(zip(groups, rows, strict=True)):
            out[s, i] = fit_law(g.law, g.d[r], g.y[r], g.w[r]).params
    return out


def ols_slopes(X: np.ndarray, coefs: np.ndarray) -> np.ndarray:
    """OLS slopes of coefs ~ intercept + X @ slopes for many coefficient vectors at once.

    Arguments: X [n, k] (log10 sizes), coefs [B, n] (NaN propagates to that row). Returns [B, k]."""
    A = np.column_stack([np.ones(len(X)), X])
    return (coefs @ np.linalg.pinv(A).T)[:, 1:]


def prompt_slope_ci(groups: list[Group], X: np.ndarray, draws: np.ndarray, center: np.ndarray) -> list:
    """95% percentile intervals of the slopes from the coefficient draws [B, n] of `groups` (the groups
    behind the n rows of X), about the full-data slopes `center` [k], widened by `boot_factor`."""
    reps = [groups[idx[0]] for idx in prompt_partition(groups)]
    return percentile_ci(ols_slopes(X, draws), center, boot_factor(reps, X.shape[1]))


def seed_slope_ci(X: np.ndarray, per_seed: np.ndarray, center: np.ndarray) -> list:
    """center +- t_{0.975, k-1} sd(per-seed slopes, ddof=1) / sqrt(k) from the coefficients of each seed
    [k, n]; None where a seed's fit failed or k < 2."""
    slopes = ols_slopes(X, per_seed)
    k = len(slopes)
    se = slopes.std(axis=0, ddof=1) / np.sqrt(k) if k >= 2 else np.full(X.shape[1], np.nan)
    return t_ci(center, se, k)
