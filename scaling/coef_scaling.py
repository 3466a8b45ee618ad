"""Coefficient scaling: each fitted coefficient against log10 of the size columns that vary (one linear
fit per context, `scaling_rows`; the slope's interval over the unit the groups share, prompts or seeds,
else across sizes: `scaling.slope_intervals`), and `predict` for an unseen size.
"""

from __future__ import annotations

import math

import numpy as np

from core.errors import UsageError
from scaling.bootstrap import t_quantile
from scaling.fmt import json_ci, json_num
from scaling.groups import Group, group_context
from scaling.laws import LAWS, peak
from scaling.points import SIZE_COLS
from scaling.slope_intervals import prompt_draws, prompt_slope_ci, seed_fits, seed_slope_ci, slope_unit

# the keys of a `scaling` row that are not its context's (every other key is a grouping column)
SCALING_FIELDS = {
    "method",
    "coef",
    "x",
    "slope",
    "intercept",
    "slope_ci",
    "slope_interval",
    "slope_ci_sizes",
    "intercept_ci",
    "r2",
    "n",
}


def ols(X: np.ndarray, y: np.ndarray) -> dict:
    """y ~ intercept + X @ slopes. Returns theta [1+k], cov (None without dof), r2, dof."""
    n, k = X.shape
    A = np.column_stack([np.ones(n), X])
    theta, _, rank, _ = np.linalg.lstsq(A, y, rcond=None)
    dof = n - (k + 1)
    if rank < k + 1:
        return {"theta": np.full(k + 1, np.nan), "cov": None, "r2": None, "dof": dof}
    resid = y - A @ theta
    tss = float(np.sum((y - y.mean()) ** 2))
    cov = float(resid @ resid) / dof * np.linalg.inv(A.T @ A) if dof > 0 else None
    r2 = 1.0 - float(resid @ resid) / tss if tss > 0 and dof > 0 else None
    return {"theta": theta, "cov": cov, "r2": r2, "dof": dof}


def _tci(value, var, dof):
    if var is None or dof <= 0:
        return None
    t = t_quantile(dof)
    return json_ci([value - t * math.sqrt(max(var, 0.0)), value + t * math.sqrt(max(var, 0.0))])


def _size_ok(v) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v) and v > 0


def scaling_rows(
    groups: list[Group],
    fits: list[dict],
    shared_alpha: bool = False,
    n_boot: int = 0,
    rng: np.random.Generator | None = None,
) -> list[dict]:
    """Coefficients against log10 of the size columns that vary within each context (one linear fit).

    Arguments: groups and their fits rows (`fitting.fit_table`); shared_alpha (the fits are joint ones, alpha
      shared within a context); n_boot, rng: the prompt resamples of the slope intervals (0: none; rng
      default: seed 0). Returns the scaling rows: `slope_ci` over `slope_interval` ("prompts", "seeds",
      "sizes": `scaling.slope_intervals`), `slope_ci_sizes` the OLS t interval across sizes, `intercept_ci`
      the OLS t one.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    contexts: dict[tuple, list[int]] = {}
    for i, g in enumerate(groups):
        contexts.setdefault(group_context(g), []).append(i)
    out = []
    for _ctx, idx in contexts.items():
        g0 = groups[idx[0]]
        extra = {k: v for k, v in g0.keys.items() if k not in SIZE_COLS and k != "method"}
        used = [i for i in idx if fits[i]["converged"]]
        xs = [c for c in SIZE_COLS if c in g0.keys and len({fits[i][c] for i in used if _size_ok(fits[i].get(c))}) >= 2]
        used = [i for i in used if all(_size_ok(fits[i].get(c)) for c in xs)]
        rows = [fits[i] for i in used]
        if not xs or len(rows) < len(xs) + 1:
            continue
        X = np.log10(np.array([[float(r[c]) for c in xs] for r in rows]))
        joint = shared_alpha and len(idx) > 1
        unit = slope_unit([groups[i] for i in idx], n_boot)
        if joint and len(used) < len(idx):
            unit = "sizes"  # the joint refits need every group of the context
        resampled = _resampled(unit, [groups[i] for i in used], n_boot, rng, joint)
        params = LAWS[g0.law].params
        coefs = [c for c in params if c in ("alpha", "beta")]
        for coef in coefs:
            if coef == "alpha" and joint:
                continue  # constant by construction
            yv = np.array([r[coef] for r in rows], dtype=float)
            res = ols(X, yv)
            ci = _slope_ci(unit, resampled, [groups[i] for i in used], X, res, params.index(coef))
            for j, x in enumerate(xs):
                cov = res["cov"]
                var_s = None if cov is None else cov[1 + j, 1 + j]
                var_i = None if cov is None else cov[0, 0]
                sizes_ci = _tci(res["theta"][1 + j], var_s, res["dof"])
                row = dict(extra)
                row.update(
                    method=g0.method,
                    coef=coef,
                    x=x,
                    slope=json_num(res["theta"][1 + j]),
                    intercept=json_num(res["theta"][0]),
                    slope_ci=sizes_ci if ci is None else json_ci(ci[j]),
                    slope_interval=unit,
                    slope_ci_sizes=sizes_ci,
                    intercept_ci=_tci(res["theta"][0], var_i, res["dof"]),
                    r2=json_num(res["r2"]),
                    n=len(rows),
                )
                out.append(row)
    return out


def _resampled(unit: str, groups: list[Group], n_boot: int, rng, joint: bool):
    """The coefficients the slope interval of `unit` is made of: prompt draws [B, G, p], per-seed fits
    [k, G, p], or None for "sizes"."""
    if unit == "prompts":
        return prompt_draws(groups, n_boot, rng, joint)
    if unit == "seeds":
        return seed_fits(groups, joint)
    return None


def _slope_ci(unit: str, resampled, groups: list[Group], X: np.ndarray, res: dict, j: int) -> list | None:
    """The slope intervals (one a size column) of coefficient j over `unit`; None for "sizes"."""
    if resampled is None:
        return None
    center = res["theta"][1:]
    if unit == "prompts":
        return prompt_slope_ci(groups, X, resampled[:, :, j], center)
    return seed_slope_ci(X, resampled[:, :, j], center)


def predict(result: dict, method: str, sizes: dict, where: dict | None = None) -> dict:
    """Coefficients and peak at an unseen size, from a linear fit of the fitted coefficients in log10 size.

    Arguments:
      result: fit_table output. method: the fits' `method` value. sizes: e.g. {"rm_params": 3e7} (the
        regressors). where: other keys a fit row must match (e.g. {"data_size": 1e4}).
    Returns: {law, n, <param>, <param>_ci (95% CI of the fitted mean), d_peak, gold_peak}.
    """
    where = where or {}
    rows = [
        r
        for r in result["fits"]
        if r["method"] == method and r["converged"] and all(r.get(k) == v for k, v in where.items())
    ]
    rows = [r for r in rows if all(_size_ok(r.get(c)) for c in sizes)]
    laws = {r["law"] for r in rows}
    if len(laws) != 1:
        raise UsageError(f"predict: need converged fits of one law for '{method}', found {sorted(laws)}")
    if not all(_size_ok(v) for v in sizes.values()):
        raise UsageError(f"predict: sizes must be positive numbers, got {sizes}")
    law = laws.pop()
    X = np.log10(np.array([[float(r[c]) for c in sizes] for r in rows]))
    x0 = np.concatenate([[1.0], np.log10([float(v) for v in sizes.values()])])
    out: dict = {"law": law, "n": len(rows)}
    params = {}
    for name in LAWS[law].params:
        res = ols(X, np.array([r[name] for r in rows], dtype=float))
        value = float(x0 @ res["theta"])
        var = None if res["cov"] is None else float(x0 @ res["cov"] @ x0)
        params[name] = value
        out[name] = json_num(value)
        out[f"{name}_ci"] = _tci(value, var, res["dof"])
    d_peak, gold_peak = peak(law, params)
    out.update(d_peak=json_num(d_peak), gold_peak=json_num(gold_peak))
    return out
