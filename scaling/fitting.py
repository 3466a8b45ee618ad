"""Fit the over-optimization laws to a points table: per group or with alpha shared, with intervals.

`fit_table` is the entry point (the `overopt fit` verb, studies and sweeps); `fittable` picks the groups
with enough points for it. The pieces, bottom to top:
- `groups`: the points split into groups (default grouping: the columns of `GROUP_COLS` present; seeds
  and prompts pooled), each with its law (from its `method`, `laws.DEFAULT_LAW`, or forced), weights
  (1/gold_se^2 when every row has `gold_se`), its curve (the mean over units at each x) and the unit its
  intervals resample (prompts, seeds or points);
- `least_squares`: one law fitted to one group's rows (exact linear least squares for every form but
  `power`, which is profiled over gamma and polished with `scipy.optimize.least_squares`); for balanced
  unit rows (every prompt at every n) this is the fit of the mean curve;
- `bootstrap`, `intervals`: 95% intervals of the unit: the cluster bootstrap over prompts (percentile,
  widened by sqrt(n/(n-k)) t/z as in CR1/HC1, weights re-estimated in each resample), a t interval over
  per-seed fits, or the bootstrap over points; and Jacobian intervals (Student t on the residual
  variance);
- here: one `fits` row a group (`fit_one`; R^2, RMSE, AIC and n_points describe the curve), and Gao's
  joint fit (alpha shared by the groups that differ only in size columns, one beta each: `fit_joint`);
- `coef_scaling`: each coefficient against log10 of the size columns that vary (one linear fit), its
  slope's interval over the unit the groups share (`slope_intervals`: prompts resampled jointly, seeds, or
  the sizes), and `predict` for an unseen size; `advance`: fit on d <= d_cut (absolute, or a fraction of
  each group's range), error on the rest of the curve.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd

from core.errors import UsageError
from scaling.advance import advance_row
from scaling.bootstrap import boot_factor, jacobian_ci, percentile_ci
from scaling.coef_scaling import scaling_rows
from scaling.fmt import json_ci, json_num, json_value
from scaling.groups import MIN_POINTS, Group, group_context, make_groups, resolve_by
from scaling.intervals import boot_ci, joint_boot_draws, joint_design, joint_seed_ci, seed_ci, shared_seed_ids
from scaling.laws import LAWS, peak
from scaling.least_squares import Fit, fit_law, fit_linear, fit_stats
from scaling.points import is_max_rule, validate_points

# the keys of a `fits` row that are not its group's (every other key is a grouping column)
FIT_FIELDS = {
    "method",
    "law",
    "alpha",
    "beta",
    "alpha_ci",
    "beta_ci",
    "alpha_ci_jac",
    "beta_ci_jac",
    "r2",
    "r2_unweighted",
    "rmse",
    "aic",
    "n_points",
    "d_max",
    "d_peak",
    "gold_peak",
    "converged",
    "message",
    "gamma",
    "interval",
}


def curve_stats(g: Group, params: np.ndarray, converged: bool) -> dict:
    """R^2 (weighted), unweighted R^2, RMSE and AIC of the law with `params` on the group's curve (the mean
    over units at each x, `Group.curve_d`/`curve_y`/`curve_w`): they describe the curve, not the unit rows.
    The unweighted R^2 is 1 - SS_res / SS_tot with SS_tot about the curve's plain mean (None when it is 0)."""
    if not converged:
        return {"r2": None, "r2_unweighted": None, "rmse": None, "aic": None}
    resid = g.curve_y - LAWS[g.law].fn(g.curve_d, *params)
    st = fit_stats(g.curve_y, resid, g.curve_w, len(params))
    tss = float(np.sum((g.curve_y - np.mean(g.curve_y)) ** 2))
    st["r2_unweighted"] = 1.0 - float(np.sum(resid**2)) / tss if tss > 0 else None
    return st


def interval_note(g: Group, kind: str | None, extra: str = "") -> str:
    """The message's words for an interval of `kind` on group g ("" when none was computed)."""
    if kind is None:
        return ""
    if kind == "seeds":
        return f"; t interval over {g.unit} (cluster-robust){extra}"
    what = "points" if kind == "points" else g.unit
    return f"; bootstrap over {what}{extra}" + (" (weights re-estimated in each resample)" if g.reweight else "")


def make_row(g: Group, fit: Fit, ci: list, jac_ci: list, message: str, interval: str | None) -> dict:
    """One `fits` row (schema in docs/ARCHITECTURE.md); `gamma` is added for the power law. `interval` says
    what the intervals `alpha_ci`/`beta_ci` resampled ("prompts", "seeds", "points"; None: none computed)."""
    names = LAWS[g.law].params
    params = {k: json_num(v) for k, v in zip(names, fit.params, strict=True)}
    st = curve_stats(g, fit.params, fit.converged)
    d_peak, gold_peak = (None, None)
    if fit.converged and all(v is not None for v in params.values()):
        d_peak, gold_peak = peak(g.law, params)
    row = dict(g.keys)
    row.update(
        method=g.method,
        law=g.law,
        alpha=params.get("alpha"),
        beta=params.get("beta"),
        alpha_ci=json_ci(ci[0]),
        beta_ci=json_ci(ci[1]) if len(names) > 1 else None,
        alpha_ci_jac=json_ci(jac_ci[0]),
        beta_ci_jac=json_ci(jac_ci[1]) if len(names) > 1 else None,
        interval=interval,
        r2=json_num(st["r2"]),
        r2_unweighted=json_num(st["r2_unweighted"]),
        rmse=json_num(st["rmse"]),
        aic=json_num(st["aic"]),
        n_points=len(g.curve_d),
        d_max=json_num(float(np.max(g.d))) if len(g.d) else None,
        d_peak=json_num(d_peak),
        gold_peak=json_num(gold_peak),
        converged=bool(fit.converged),
        message=message,
    )
    if g.law == "power":
        row["gamma"] = params["gamma"]
    return row


FLAT = "flat curve: no law fitted"
FLAT_RTOL = 1e-9  # a curve whose means differ by less than this (relative to the gold's scale) is flat


def is_flat(curve_y: np.ndarray, y: np.ndarray) -> bool:
    """Whether a curve is flat: its means equal up to rounding (an all-tied proxy picks the pool's mean at
    every n; its per-prompt rows still differ, and a law through rounding noise has R² of -1e29)."""
    if float(np.ptp(y)) == 0.0:
        return True
    scale = max(float(np.max(np.abs(y))), float(np.ptp(y)))
    return len(curve_y) > 1 and float(np.ptp(curve_y)) <= FLAT_RTOL * scale  # one x only: singular, not flat


def fit_one(g: Group, n_boot: int, rng: np.random.Generator) -> dict:
    """Fit one group with its unit's intervals (`scaling.intervals`) and Jacobian ones. Returns its row.
    A flat group (its curve's means equal up to rounding, `is_flat`: R² undefined) gets no law: converged
    False, message FLAT (the
    least-squares solution of a constant is no over-optimization law), and is left out of the scaling."""
    p = len(LAWS[g.law].params)
    if len(g.y) and is_flat(g.curve_y, g.y):
        flat = Fit(np.full(p, np.nan), None, np.zeros(len(g.y)), False, FLAT)
        return make_row(g, flat, [None] * p, [None] * p, FLAT, None)
    fit = fit_law(g.law, g.d, g.y, g.w)
    ci, kind = [None] * p, None
    if fit.converged and n_boot > 0:
        kind = g.interval
        if g.interval == "seeds":
            ci = seed_ci(g, fit.params)
        else:
            ci = boot_ci(g, fit.params, n_boot, rng)
    msg = fit.message + interval_note(g, kind)
    return make_row(g, fit, ci, jacobian_ci(fit, len(g.d) - p), msg, kind)


def fit_joint(groups: list[Group], n_boot: int, rng: np.random.Generator) -> list[dict]:
    """Gao's joint fit: one alpha shared by `groups` (same two-parameter law), one beta per group.

    Intervals: a t interval over per-seed joint fits when every group's unit is seeds and the groups share
    their seed ids; else a bootstrap within each group (stratified) of its prompts or clusters, or of its
    points (seed groups that do not share their ids fall back to points).
    """
    G = len(groups)
    X, y, w, member = joint_design(groups)
    fit = fit_linear(X, y, w)
    jac = jacobian_ci(fit, len(y) - (1 + G))
    ci = [None] * (1 + G)
    by_seeds = shared_seed_ids(groups)
    kinds = [None] * G
    if fit.converged and n_boot > 0:
        if by_seeds:
            ci = joint_seed_ci(groups, X, w, fit.resid, fit.params)
            kinds = ["seeds"] * G
        else:
            boot = [g if g.interval in ("prompts", "clusters") else _as_points(g) for g in groups]
            draws = joint_boot_draws(boot, X, y, member, n_boot, rng)
            ci = percentile_ci(draws, fit.params, boot_factor(boot, 1 + G))
            kinds = [b.interval for b in boot]
            groups = boot
    rows = []
    for j, g in enumerate(groups):
        rows_j = member == j
        cov = fit.cov[np.ix_([0, 1 + j], [0, 1 + j])] if fit.cov is not None else None
        sub = Fit(fit.params[[0, 1 + j]], cov, fit.resid[rows_j], fit.converged, fit.message)
        msg = f"{fit.message}; alpha shared by {G} groups"
        if kinds[j] == "seeds":
            msg += interval_note(g, "seeds", " shared by the groups")
        elif kinds[j] is not None:
            msg += interval_note(g, kinds[j], " within each group")
        rows.append(make_row(g, sub, [ci[0], ci[1 + j]], [jac[0], jac[1 + j]], msg, kinds[j]))
    return rows


def _as_points(g: Group) -> Group:
    """The group with its interval set to the bootstrap over points (the joint fit's fallback)."""
    return replace(g, interval="points", unit="points", clusters=np.arange(len(g.d)), reweight=False)


def fit_table(
    df: pd.DataFrame,
    by=None,
    method: str = "auto",
    shared_alpha: bool = False,
    n_boot: int = 1000,
    seed: int = 0,
    d_cut: float | None = None,
    resample: str = "auto",
    d_cut_frac: float | None = None,
) -> dict:
    """Fit the laws to every group of a points table.

    Arguments:
      df: points table (kl, gold, and grouping columns). by: grouping columns (list or "a,b"; None =
        the GROUP_COLS present; [] = one group). method: "auto" (law from each group's method) or a law
        name in LAWS. shared_alpha: Gao's joint fit (alpha shared by groups differing only in size
        columns). n_boot: bootstrap resamples (0: none; also the coefficient scaling's slope resamples).
        seed: bootstrap seed. d_cut: if given, add the advance-prediction rows (fit on d <= d_cut, error on
        d > d_cut). resample: the intervals' unit, "auto" (prompts, else seeds, else points: rules in
        `scaling.groups`), "points", or a column name (bootstrap clusters). d_cut_frac (0 < f < 1; not with
        d_cut): the advance rows with each group's own cut, f times the largest d of its curve.
    Returns: {"fits": [...], "scaling": [...]} (+ "advance": [...] with d_cut or d_cut_frac),
      JSON-serialisable. The slope intervals are drawn after every fit's, from the same generator; groups of
      best-of-n's other selection rules (`rule` not max) come after all the others, fits and draws alike.
    """
    if method != "auto" and method not in LAWS:
        raise UsageError(f"unknown method '{method}' (choose from auto, {', '.join(LAWS)})")
    if n_boot < 0:
        raise UsageError(f"n_boot must be >= 0, got {n_boot}")
    if d_cut is not None and not (math.isfinite(d_cut) and d_cut > 0):
        raise UsageError(f"d_cut must be a positive number, got {d_cut}")
    if d_cut_frac is not None and not (math.isfinite(d_cut_frac) and 0 < d_cut_frac < 1):
        raise UsageError(f"d_cut_frac must be a number between 0 and 1 (exclusive), got {d_cut_frac}")
    if d_cut is not None and d_cut_frac is not None:
        raise UsageError("give d_cut or d_cut_frac, not both")
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
    # best-of-n's max rule (and every group without a rule) first, the other selection rules after, from
    # the same generator: adding rules to a table changes none of the max rule's intervals
    first = [is_max_rule(g.keys.get("rule")) for g in groups]
    out: dict = {"fits": [], "scaling": []} | ({} if d_cut is None and d_cut_frac is None else {"advance": []})
    for part in ([g for g, f in zip(groups, first) if f], [g for g, f in zip(groups, first) if not f]):
        if part:
            for key, rows in _fit_groups(part, shared_alpha, n_boot, rng, d_cut, d_cut_frac).items():
                out[key] += rows
    return out


def _fit_groups(groups: list[Group], shared_alpha: bool, n_boot: int, rng, d_cut, d_cut_frac) -> dict:
    """`fit_table`'s output for `groups` (fits, scaling, advance), drawing from `rng`."""
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
    out = {"fits": fits, "scaling": scaling_rows(groups, fits, shared_alpha, n_boot=n_boot, rng=rng)}
    if d_cut is not None:
        out["advance"] = [advance_row(g, row, d_cut) for g, row in zip(groups, fits, strict=True)]
    elif d_cut_frac is not None:
        out["advance"] = [
            advance_row(g, row, d_cut_frac * float(np.max(g.curve_d)), d_cut_frac)
            for g, row in zip(groups, fits, strict=True)
        ]
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
