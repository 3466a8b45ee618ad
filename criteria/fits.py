"""Checks on the fitted laws: unweighted R² on each curve, an RL peak inside the data, advance prediction."""

from __future__ import annotations

import math

import numpy as np

from criteria.common import ADVANCE_FRAC, NRMSE_MAX, combine, fmt, row
from scaling.fmt import fmt_params
from scaling.ladder import Ladder, fit_rows


def r2_check(name: str, fits_by_size: dict, sizes: list, r2_min: float, what: str) -> dict:
    """Every proxy's law has unweighted R² >= r2_min on its curve (fits rows' `r2_unweighted`)."""
    target = f"{what} law: unweighted R² on its curve >= {r2_min} for every proxy"
    if not fits_by_size or not sizes:
        return row(name, target, "no fits", None)
    r2 = [fits_by_size.get(s, {}).get("r2_unweighted") for s in sizes]
    if any(v is None for v in r2):
        missing = [fmt_params(s) for s, v in zip(sizes, r2, strict=True) if v is None]
        return row(name, target, f"no unweighted R² (no fit or flat curve): {', '.join(missing)}", False)
    bad = [fmt_params(s) for s, v in zip(sizes, r2, strict=True) if v < r2_min]
    text = " / ".join(fmt(v, 2) for v in r2) + (f" (below: {', '.join(bad)})" if bad else "")
    return row(name, target, text, not bad, min(r2))


def rl_peak_check(L: Ladder) -> dict:
    """Smaller half: the RL law has a peak inside the data, beta > 0 and d* < d_max (the curve's largest d)."""
    target = f"RL law peaks inside the data (beta > 0, d* < d_max), smaller half (kl_coef {L.kc:g})"
    if not L.rl_fits:
        return row("rl_peak_inside", target, "no RL fits", None)
    parts, verdicts, ratios = [], [], []
    for s in Ladder.half(L.rl_sizes):
        f = L.rl_fits.get(s)
        if f is None or not f.get("converged"):
            parts.append(f"{fmt_params(s)}: no fit")
            verdicts.append(False)
            continue
        d_max = float(np.sqrt(np.max(L.rl[s]["kl"])))
        beta, d_peak = f.get("beta"), f.get("d_peak")
        ok = beta is not None and beta > 0 and d_peak is not None and d_peak < d_max
        ratios.append(d_peak / d_max if d_peak is not None and beta is not None and beta > 0 else math.inf)
        parts.append(f"{fmt_params(s)}: beta {fmt(beta)}, d* {fmt(d_peak, 2)} vs d_max {fmt(d_max, 2)}")
        verdicts.append(bool(ok))
    stat = max(ratios) if ratios and all(math.isfinite(r) for r in ratios) else None
    return row("rl_peak_inside", target, "; ".join(parts), combine(verdicts), stat)


def advance_check(name: str, L: Ladder, method: str, kl_coef=None) -> dict:
    """Each proxy's law fitted on d <= ADVANCE_FRAC d_max predicts the rest of its curve with RMSE / (max -
    min of the whole curve) <= NRMSE_MAX (fits.json's `advance` rows with d_cut_frac ADVANCE_FRAC)."""
    what = "best-of-n" if method == "bon" else f"RL (kl_coef {L.kc:g})"
    target = (
        f"{what} law fitted on d <= {ADVANCE_FRAC:g} d_max predicts the rest: RMSE / (max - min of the whole"
        f" curve) <= {NRMSE_MAX:g}, every proxy"
    )
    rows = [r for r in L.fits.get("advance", []) if r.get("d_cut_frac") == ADVANCE_FRAC]
    by_size = fit_rows(rows, method, L.lad, kl_coef)
    sizes = L.rl_sizes if method == "rl" else sorted(L.bon)
    if not by_size or not sizes:
        return row(name, target, f"no advance fits at d_cut_frac {ADVANCE_FRAC:g}", None)
    parts, verdicts, vals = [], [], []
    for s in sizes:
        r = by_size.get(s)
        v = None if r is None else r.get("nrmse_test")
        if v is None:
            msg = "no fit" if r is None else (r.get("message") or "no prediction")
            parts.append(f"{fmt_params(s)}: {msg}")
            verdicts.append(None if r is not None and msg.startswith("too few") else False)
            continue
        vals.append(float(v))
        parts.append(f"{fmt_params(s)}: {fmt(v, 2)}")
        verdicts.append(bool(v <= NRMSE_MAX))
    return row(name, target, "; ".join(parts), combine(verdicts), max(vals) if len(vals) == len(sizes) else None)
