"""Fit the over-optimization laws to a points table: per group or with alpha shared, with intervals.

`fit_table` is the entry point (the `overopt fit` verb, studies and sweeps); `fittable` picks the groups
with enough points for it. The pieces, bottom to top:
- `groups`: the points split into groups (default grouping: the columns of `GROUP_COLS` present; seeds
  pooled), each with its law (from its `method`, `laws.DEFAULT_LAW`, or forced), weights (1/gold_se^2
  when every point has `gold_se`) and bootstrap unit;
- `least_squares`: one law fitted to one group (exact linear least squares for every form but `power`,
  which is profiled over gamma and polished with `scipy.optimize.least_squares`);
- `bootstrap`: 95% percentile intervals (resampling prompts or seeds when a group has 3 or more, points
  otherwise; all resamples at once), widened by sqrt(n/(n-k)) t/z as in CR1/HC1 small-sample
  corrections; and Jacobian intervals (Student t on the residual variance);
- here: one `fits` row a group (`fit_one`), and Gao's joint fit (alpha shared by the groups that differ
  only in size columns, one beta each: `fit_joint`);
- `coef_scaling`: each coefficient against log10 of the size columns that vary (one linear fit), and
  `predict` for an unseen size; `advance`: fit on d <= d_cut, error on the rest.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from core.errors import UsageError
from scaling.advance import advance_row
from scaling.bootstrap import (
    boot_chunks,
    boot_counts,
    boot_factor,
    boot_joint,
    boot_linear,
    boot_power,
    jacobian_ci,
    percentile_ci,
)
from scaling.coef_scaling import scaling_rows
from scaling.fmt import json_ci, json_num, json_value
from scaling.groups import MIN_POINTS, Group, group_context, make_groups, resolve_by
from scaling.laws import LAWS, peak
from scaling.least_squares import Fit, fit_law, fit_linear, fit_stats
from scaling.points import validate_points


def make_row(g: Group, fit: Fit, boot_ci: list, jac_ci: list, message: str | None = None) -> dict:
    """One `fits` row (schema in docs/ARCHITECTURE.md); `gamma` is added for the power law."""
    names = LAWS[g.law].params
    params = {k: json_num(v) for k, v in zip(names, fit.params, strict=True)}
    st = {"r2": None, "rmse": None, "aic": None}
    if fit.converged:
        st = fit_stats(g.y, fit.resid, g.w, len(names))
    d_peak, gold_peak = (None, None)
    if fit.converged and all(v is not None for v in params.values()):
        d_peak, gold_peak = peak(g.law, params)
    row = dict(g.keys)
    row.update(
        method=g.method,
        law=g.law,
        alpha=params.get("alpha"),
        beta=params.get("beta"),
        alpha_ci=json_ci(boot_ci[0]),
        beta_ci=json_ci(boot_ci[1]) if len(names) > 1 else None,
        alpha_ci_jac=json_ci(jac_ci[0]),
        beta_ci_jac=json_ci(jac_ci[1]) if len(names) > 1 else None,
        r2=json_num(st["r2"]),
        rmse=json_num(st["rmse"]),
        aic=json_num(st["aic"]),
        n_points=len(g.d),
        d_max=json_num(float(np.max(g.d))) if len(g.d) else None,
        d_peak=json_num(d_peak),
        gold_peak=json_num(gold_peak),
        converged=bool(fit.converged),
        message=message or fit.message,
    )
    if g.law == "power":
        row["gamma"] = params["gamma"]
    return row


def fit_one(g: Group, n_boot: int, rng: np.random.Generator) -> dict:
    """Fit one group with bootstrap and Jacobian intervals. Returns its `fits` row."""
    fit = fit_law(g.law, g.d, g.y, g.w)
    p = len(LAWS[g.law].params)
    boot_ci = [None] * p
    if fit.converged and n_boot > 0:
        X = LAWS[g.law].basis(g.d) if LAWS[g.law].basis is not None else None
        parts = []
        for m in boot_chunks(n_boot, len(g.d)):
            counts = boot_counts(rng, g.clusters, m)
            parts.append(boot_linear(X, g.y, g.w, counts) if X is not None else boot_power(g.d, g.y, g.w, counts))
        draws = np.concatenate(parts)
        boot_ci = percentile_ci(draws, fit.params, boot_factor([g], p))
    msg = f"{fit.message}; bootstrap over {g.unit}" if fit.converged and n_boot > 0 else fit.message
    return make_row(g, fit, boot_ci, jacobian_ci(fit, len(g.d) - p), msg)


def fit_joint(groups: list[Group], n_boot: int, rng: np.random.Generator) -> list[dict]:
    """Gao's joint fit: one alpha shared by `groups` (same two-parameter law), one beta per group."""
    law = LAWS[groups[0].law]
    G = len(groups)
    sizes = [len(g.d) for g in groups]
    X = np.zeros((sum(sizes), 1 + G))
    start = 0
    for j, g in enumerate(groups):
        B = law.basis(g.d)
        X[start : start + sizes[j], 0] = B[:, 0]
        X[start : start + sizes[j], 1 + j] = B[:, 1]
        start += sizes[j]
    y = np.concatenate([g.y for g in groups])
    w = np.concatenate([g.w for g in groups])
    fit = fit_linear(X, y, w)
    jac = jacobian_ci(fit, len(y) - (1 + G))
    boot = [None] * (1 + G)
    if fit.converged and n_boot > 0:
        # resample within each group (stratified), so every group keeps its points in every resample
        member = np.repeat(np.arange(G), sizes)
        x1 = X[np.arange(len(y)), 1 + member]
        parts = []
        for m in boot_chunks(n_boot, len(y)):
            counts = np.concatenate([boot_counts(rng, g.clusters, m) for g in groups], axis=1)
            parts.append(boot_joint(X[:, 0], x1, member, y, w, counts))
        draws = np.concatenate(parts)
        boot = percentile_ci(draws, fit.params, boot_factor(groups, 1 + G))
    rows, start = [], 0
    for j, g in enumerate(groups):
        sl = slice(start, start + sizes[j])
        start += sizes[j]
        cov = fit.cov[np.ix_([0, 1 + j], [0, 1 + j])] if fit.cov is not None else None
        sub = Fit(fit.params[[0, 1 + j]], cov, fit.resid[sl], fit.converged, fit.message)
        msg = f"{fit.message}; alpha shared by {G} groups"
        if fit.converged and n_boot > 0:
            msg += f"; bootstrap over {g.unit} within each group"
        rows.append(make_row(g, sub, [boot[0], boot[1 + j]], [jac[0], jac[1 + j]], msg))
    return rows


def fit_table(
    df: pd.DataFrame,
    by=None,
    method: str = "auto",
    shared_alpha: bool = False,
    n_boot: int = 1000,
    seed: int = 0,
    d_cut: float | None = None,
    resample: str = "auto",
) -> dict:
    """Fit the laws to every group of a points table.

    Arguments:
      df: points table (kl, gold, and grouping columns). by: grouping columns (list or "a,b"; None =
        the GROUP_COLS present; [] = one group). method: "auto" (law from each group's method) or a law
        name in LAWS. shared_alpha: Gao's joint fit (alpha shared by groups differing only in size
        columns). n_boot: bootstrap resamples (0: none). seed: bootstrap seed. d_cut: if given, add the
        advance-prediction rows (fit on d <= d_cut, error on d > d_cut). resample: bootstrap unit, "auto"
        (prompts or seeds when a group has >= 3, else points), "points", or a column name.
    Returns: {"fits": [...], "scaling": [...]} (+ "advance": [...] with d_cut), JSON-serialisable.
    """
    if method != "auto" and method not in LAWS:
        raise UsageError(f"unknown method '{method}' (choose from auto, {', '.join(LAWS)})")
    if n_boot < 0:
        raise UsageError(f"n_boot must be >= 0, got {n_boot}")
    if d_cut is not None and not (math.isfinite(d_cut) and d_cut > 0):
        raise UsageError(f"d_cut must be a positive number, got {d_cut}")
    df = validate_points(df)
    by = resolve_by(df, by)
    if resample not in ("auto", "points") and resample not in df.columns:
        raise UsageError(f"unknown --resample column '{resample}' (auto, points, or one of the columns)")
    groups = make_groups(df, by, method, resample)
    if shared_alpha:
        bad = sorted({g.law for g in groups if len(LAWS[g.law].params) != 2})
        if bad:
            raise UsageError(f"--shared-alpha needs a two-parameter law, not {', '.join(bad)}")
    rng = np.random.default_rng(seed)
    rows: dict[int, dict] = {}
    if shared_alpha:
        contexts: dict[tuple, list[int]] = {}
        for i, g in enumerate(groups):
            contexts.setdefault(group_context(g), []).append(i)
        for idx in contexts.values():
            if len(idx) == 1:
                rows[idx[0]] = fit_one(groups[idx[0]], n_boot, rng)
                continue
            for i, row in zip(idx, fit_joint([groups[i] for i in idx], n_boot, rng), strict=True):
                rows[i] = row
    else:
        for i, g in enumerate(groups):
            rows[i] = fit_one(g, n_boot, rng)
    fits = [rows[i] for i in range(len(groups))]
    out = {"fits": fits, "scaling": scaling_rows(groups, fits, shared_alpha)}
    if d_cut is not None:
        out["advance"] = [advance_row(g, row, d_cut) for g, row in zip(groups, fits, strict=True)]
    return out


def fittable(points: pd.DataFrame, by=None) -> tuple[pd.DataFrame, list[dict]]:
    """The rows `fit_table` can fit, and the groups it cannot.

    Arguments: points (a points table with `kl`); by (grouping columns as in `fit_table`; None = the
      GROUP_COLS present).
    Returns: (the rows of the groups with at least MIN_POINTS points at kl > 0, one JSON-safe record
      {group column: value} per group left out).
    """
    by = resolve_by(points, by)
    if by:
        enough = points.groupby(by, dropna=False)["kl"].transform(lambda k: int((k > 0).sum()) >= MIN_POINTS)
        enough = enough.astype(bool)
    else:
        enough = pd.Series(int((points["kl"] > 0).sum()) >= MIN_POINTS, index=points.index, dtype=bool)
    left = points[~enough].drop_duplicates(by)[by].to_dict(orient="records") if by else [{}] * int((~enough).any())
    return points[enough], [{k: json_value(v) for k, v in rec.items()} for rec in left]
