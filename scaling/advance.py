"""Advance prediction: a law fitted on the rows at d <= d_cut only, its error on the held-out curve at d > d_cut.

The errors (and n_fit, n_test) are on the group's curve (the mean over units at each x, as the fit
statistics), so unit-level rows (one a prompt and n) are judged as the mean curve they make up. The cut is
absolute (`d_cut`) or a fraction of each group's range (`d_cut_frac`: d_cut = frac * the curve's largest d,
set by `fitting.fit_table`); `nrmse_test` = rmse_test / curve_range (max - min of the whole curve's gold)
compares groups whose gold spans differ.
"""

from __future__ import annotations

import numpy as np

from scaling.fmt import json_num
from scaling.groups import MIN_POINTS, Group
from scaling.laws import LAWS, peak
from scaling.least_squares import fit_law


def advance_row(g: Group, full_row: dict, d_cut: float, d_cut_frac: float | None = None) -> dict:
    """Fit on the rows at d <= d_cut only (same weights as the full fit); report the error on the curve at
    d > d_cut, beside the full fit's. `d_cut_frac`: the fraction of the curve's largest d that d_cut is
    (recorded; None for an absolute cut)."""
    names = LAWS[g.law].params
    fit_rows = g.d <= d_cut
    fit_mask, test_mask = g.curve_d <= d_cut, g.curve_d > d_cut
    cd, cy = g.curve_d, g.curve_y
    row = dict(g.keys)
    row.update(
        method=g.method,
        law=g.law,
        d_cut=float(d_cut),
        d_cut_frac=json_num(d_cut_frac),
        n_fit=int(fit_mask.sum()),
        n_test=int(test_mask.sum()),
        alpha=None,
        beta=None,
        rmse_test=None,
        nrmse_test=None,
        curve_range=json_num(float(np.max(cy) - np.min(cy))) if len(cy) else None,
        max_abs_err_test=None,
        rmse_test_full=None,
        d_peak=None,
        d_peak_full=full_row["d_peak"],
    )
    if int((cd[fit_mask] > 0).sum()) < max(MIN_POINTS, len(names)) or not test_mask.any():
        row["message"] = "too few points on one side of d_cut"
        return row
    fit = fit_law(g.law, g.d[fit_rows], g.y[fit_rows], g.w[fit_rows])
    row["message"] = fit.message
    if not fit.converged:
        return row
    params = dict(zip(names, (float(v) for v in fit.params), strict=True))
    err = cy[test_mask] - LAWS[g.law].fn(cd[test_mask], *fit.params)
    rmse = json_num(np.sqrt(np.mean(err**2)))
    span = row["curve_range"]
    row.update(
        alpha=json_num(params.get("alpha")),
        beta=json_num(params.get("beta")),
        rmse_test=rmse,
        nrmse_test=json_num(rmse / span) if rmse is not None and span else None,
        max_abs_err_test=json_num(np.max(np.abs(err))),
        d_peak=json_num(peak(g.law, params)[0]),
    )
    if full_row["converged"]:
        full = [full_row[k] for k in names]
        err_full = cy[test_mask] - LAWS[g.law].fn(cd[test_mask], *full)
        row["rmse_test_full"] = json_num(np.sqrt(np.mean(err_full**2)))
    return row
