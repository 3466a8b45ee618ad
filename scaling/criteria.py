"""Gao et al.'s qualitative results, checked on a points table and its fits.

`gao_checks(points, fits)` measures, on the proxy ladder (the full-data, single-objective proxies; the
largest policy when several), the criteria a study should meet to reproduce Gao, Schulman & Hilton
(2022) qualitatively:

- `bon_r2`, `rl_r2`: every proxy's BoN law fits with R² >= 0.9, its RL law with R² >= 0.8;
- `bon_overopt`, `rl_overopt`: for the smaller half of the proxies (ceil(n/2) smallest), the observed
  gold curve peaks before its last point and the last point lies more than 2 standard errors below the
  peak. BoN: the last point's `gold_se` (over prompts). RL: mean over seeds, SE = seed std / sqrt(seeds)
  of the last evaluation; with one seed, the last evaluation's `gold_eval_se` (over its evaluation batch:
  sampling noise only, not seed-to-seed spread); without either the check cannot be judged (None);
- `best_gold_spearman`: Spearman correlation of the best observed BoN gold with `rm_params` >= 0.8;
- `peak_later`: Spearman correlation of the fitted BoN peak d* with `rm_params` >= 0.8;
- `alpha_bon_slope`, `beta_bon_slope`: the slope signs against log10(`rm_params`) (+ and -) from the
  fits' coefficient scaling; `..._ci` rows: the slope's 95% interval excludes 0;
- `rl_reaches_bon_kl`: every proxy's RL run reaches the largest BoN KL.

RL checks use the smallest KL coefficient (Gao's main RL runs have none). Every check returns a row
{check, target, measured, passed}; passed is None when the data cannot decide it (say, no RL runs).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from scaling.fmt import fmt_params
from scaling.points import is_single_objective, single_objective

R2_BON, R2_RL = 0.9, 0.8
N_SE = 2.0
RHO_MIN = 0.8


def _fmt(x, p=3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.{p}f}"


def ladder(points: pd.DataFrame) -> pd.DataFrame:
    """The ladder's rows: objective single, the largest data size of each method, the largest policy."""
    p = single_objective(points)
    if "rm_params" not in p.columns:
        return p.iloc[0:0]
    p = p[p["rm_params"].notna()]
    parts = []
    for _, sub in p.groupby("method", sort=True):
        for col in ("data_size", "policy_params"):
            if col in sub.columns and sub[col].notna().any():
                sub = sub[sub[col] == sub[col].max()]
        parts.append(sub)
    return pd.concat(parts) if parts else p.iloc[0:0]


def _fit_rows(fits: list[dict], method: str, lad: pd.DataFrame, kl_coef=None) -> dict:
    """{rm_params: fit row} for the ladder's groups of `method` (at `kl_coef` when given)."""
    sub = lad[lad["method"] == method]
    want = {}
    for col in ("data_size", "policy_params"):
        if col in sub.columns and sub[col].notna().any():
            want[col] = float(sub[col].iloc[0])
    out = {}
    for r in fits:
        if r.get("method") != method or r.get("rm_params") is None:
            continue
        if not is_single_objective(r.get("objective")):
            continue
        if any(r.get(c) is None or float(r[c]) != v for c, v in want.items()):
            continue
        if kl_coef is not None and r.get("kl_coef") is not None and float(r["kl_coef"]) != kl_coef:
            continue
        out[float(r["rm_params"])] = r
    return out


def curve_drop(gold: np.ndarray, se_last: float | None) -> dict:
    """Peak, last point, drop and drop/SE of one observed curve (points in KL order)."""
    i = int(np.argmax(gold))
    peak, last = float(gold[i]), float(gold[-1])
    drop = peak - last
    z = drop / se_last if se_last is not None and se_last > 0 else None
    return {"i_peak": i, "peak": peak, "last": last, "drop": drop, "z": z, "inside": i < len(gold) - 1}


def bon_curves(lad: pd.DataFrame) -> dict:
    """{rm_params: (kl, gold, gold_se)} of the ladder's BoN points (mean over duplicate KLs)."""
    out = {}
    bon = lad[lad["method"] == "bon"]
    for size, sub in bon.groupby("rm_params", sort=True):
        agg = {"gold": ("gold", "mean")}
        if "gold_se" in sub.columns:
            agg["gold_se"] = ("gold_se", "mean")
        g = sub.groupby("kl", sort=True).agg(**agg).reset_index()
        se = g["gold_se"].to_numpy(float) if "gold_se" in g.columns else np.full(len(g), np.nan)
        out[float(size)] = (g["kl"].to_numpy(float), g["gold"].to_numpy(float), se)
    return out


def rl_curves(lad: pd.DataFrame, kl_coef: float) -> dict:
    """{rm_params: (kl, gold, SE, max KL)} of the ladder's RL points at kl_coef, by step.

    SE of a step's mean gold: over seeds (std / sqrt(seeds)) when there are several; with one seed, the
    point's `gold_eval_se` (over its evaluation batch: sampling noise only) when the table has it, else NaN.
    """
    out = {}
    rl = lad[lad["method"] == "rl"]
    if "kl_coef" in rl.columns:
        rl = rl[rl["kl_coef"].fillna(0.0) == kl_coef]
    key = "step" if "step" in rl.columns else "kl"
    if "gold_eval_se" not in rl.columns:
        rl = rl.assign(gold_eval_se=np.nan)
    for size, sub in rl.groupby("rm_params", sort=True):
        g = (
            sub.groupby(key, sort=True)
            .agg(
                kl=("kl", "mean"),
                gold=("gold", "mean"),
                sd=("gold", lambda x: float(np.std(x, ddof=1)) if len(x) > 1 else np.nan),
                k=("gold", "size"),
                eval_se=("gold_eval_se", "mean"),
            )
            .reset_index()
        )
        se = np.where(g["k"] > 1, g["sd"] / np.sqrt(g["k"]), g["eval_se"]).astype(float)
        out[float(size)] = (g["kl"].to_numpy(float), g["gold"].to_numpy(float), se, float(sub["kl"].max()))
    return out


def _last_se(se: np.ndarray) -> float | None:
    return float(se[-1]) if np.isfinite(se[-1]) else None


def _row(check, target, measured, passed):
    return {"check": check, "target": target, "measured": measured, "passed": passed}


def _r2_check(name, fits_by_size, sizes, r2_min):
    if not fits_by_size or not sizes:
        return _row(name, f"R² >= {r2_min} for every proxy", "no fits", None)
    r2 = [fits_by_size.get(s, {}).get("r2") for s in sizes]
    ok = all(v is not None and v >= r2_min for v in r2)
    bad = [fmt_params(s) for s, v in zip(sizes, r2, strict=True) if v is None or v < r2_min]
    text = " / ".join(_fmt(v, 2) for v in r2) + (f" (below: {', '.join(bad)})" if bad else "")
    return _row(name, f"R² >= {r2_min} for every proxy", text, ok)


def _overopt_check(name, drops: dict, half: list, what: str):
    target = f"{what} gold peaks inside the range and the last point is > {N_SE:g} SE below it, smaller half"
    if not drops:
        return _row(name, target, "no curves", None)
    parts, verdicts = [], []
    for s in half:
        d = drops.get(s)
        if d is None:
            parts.append(f"{fmt_params(s)}: no curve")
            verdicts.append(None)
            continue
        z = "no SE" if d["z"] is None else f"{d['z']:.1f} SE"
        parts.append(f"{fmt_params(s)}: {_fmt(d['peak'], 2)} -> {_fmt(d['last'], 2)} ({z})")
        if not d["inside"] or d["drop"] <= 0:
            verdicts.append(False)
        else:
            verdicts.append(None if d["z"] is None else d["z"] > N_SE)
    passed = False if False in verdicts else (None if None in verdicts else True)
    return _row(name, target, "; ".join(parts), passed)


def _spearman(name, target, x, y):
    ok = [i for i in range(len(x)) if y[i] is not None and math.isfinite(y[i])]
    if len(ok) < 3:
        return _row(name, target, "fewer than 3 proxies", None)
    rho = float(stats.spearmanr([x[i] for i in ok], [y[i] for i in ok]).statistic)
    vals = " / ".join(_fmt(v, 2) for v in y)
    return _row(name, target, f"{_fmt(rho, 2)} ({vals})", bool(rho >= RHO_MIN - 1e-9))  # rho = 0.8 exactly: 0.7999...


def _slope_checks(scaling: list[dict], coef: str, sign: int, ci_required: bool = True):
    rows = [
        r
        for r in scaling
        if r.get("method") == "bon"
        and r.get("coef") == coef
        and r.get("x") == "rm_params"
        and is_single_objective(r.get("objective"))
    ]
    want = "rises" if sign > 0 else "falls"
    t1, t2 = f"{coef}_bon {want} with log10(rm_params)", f"{coef}_bon slope's 95% interval excludes 0"
    if not rows:
        return [
            _row(f"{coef}_bon_slope", t1, "no coefficient scaling", None),
            _row(f"{coef}_bon_slope_ci", t2, "no coefficient scaling", None),
        ]
    r = rows[0]
    slope, ci = r.get("slope"), r.get("slope_ci")
    ci_text = "no interval" if not ci else f"[{_fmt(ci[0])}, {_fmt(ci[1])}]"
    text = f"{slope:+.3f} per decade {ci_text}" if slope is not None else "-"
    right = None if slope is None else bool(sign * slope > 0)
    excl = None if not ci or slope is None else bool(sign * ci[0] > 0 and sign * ci[1] > 0)
    text2 = text
    if not ci_required:  # measured and shown, not judged (the issue asks it of `small` and larger)
        t2 += " (judged on small and larger presets only)"
        text2 += {True: " (excludes 0)", False: " (includes 0)", None: ""}[excl]
        excl = None
    return [_row(f"{coef}_bon_slope", t1, text, right), _row(f"{coef}_bon_slope_ci", t2, text2, excl)]


def gao_checks(points: pd.DataFrame, fits: dict, ci_required: bool = True) -> list[dict]:
    """The checks listed in the module docstring, on `points` and its `fit_table` output `fits`.

    ci_required: False reports the slopes' intervals without judging them (passed None): the `tiny`
    preset's four proxies over two decades are only asked for the slopes' signs.
    """
    lad = ladder(points)
    sizes = sorted({float(s) for s in lad["rm_params"].unique()}) if len(lad) else []
    if len(sizes) < 2:
        return [_row("proxy ladder", "at least 2 proxy sizes", f"{len(sizes)} size(s)", None)]
    half = sizes[: math.ceil(len(sizes) / 2)]
    out = []
    fit_rows = fits.get("fits", [])
    bon_fits = _fit_rows(fit_rows, "bon", lad)
    kl_coefs = (
        sorted(lad.loc[lad["method"] == "rl", "kl_coef"].fillna(0.0).unique()) if "kl_coef" in lad.columns else [0.0]
    )
    kc = float(kl_coefs[0]) if len(kl_coefs) else 0.0
    rl_fits = _fit_rows(fit_rows, "rl", lad, kl_coef=kc)
    out.append(_r2_check("bon_r2", bon_fits, sizes, R2_BON))
    rl = rl_curves(lad, kc)
    rl_sizes = sorted(rl)  # RL may run against some proxies only (rl.proxies): judge those
    rl_r2 = _r2_check("rl_r2", rl_fits, rl_sizes, R2_RL)
    rl_r2["target"] += f" (kl_coef {kc:g})"
    out.append(rl_r2)

    bon = bon_curves(lad)
    bon_drops = {s: curve_drop(c[1], _last_se(c[2])) for s, c in bon.items()}
    out.append(_overopt_check("bon_overopt", bon_drops, half, "BoN"))
    rl_drops = {s: curve_drop(c[1], _last_se(c[2])) for s, c in rl.items()}
    row = _overopt_check("rl_overopt", rl_drops, rl_sizes[: math.ceil(len(rl_sizes) / 2)], "RL")
    row["target"] += f" (kl_coef {kc:g})"
    out.append(row)

    best = [float(np.max(bon[s][1])) if s in bon else None for s in sizes]
    out.append(_spearman("best_gold_spearman", f"Spearman(best BoN gold, rm_params) >= {RHO_MIN}", sizes, best))
    dstar = [bon_fits.get(s, {}).get("d_peak") for s in sizes]
    dstar = [None if v is None else float(v) for v in dstar]
    out.append(_spearman("peak_later", f"Spearman(fitted BoN d*, rm_params) >= {RHO_MIN}", sizes, dstar))
    out += _slope_checks(fits.get("scaling", []), "alpha", +1, ci_required)
    out += _slope_checks(fits.get("scaling", []), "beta", -1, ci_required)

    target = "every proxy's RL run reaches the largest BoN KL"
    if not bon or not rl:
        out.append(_row("rl_reaches_bon_kl", target, "needs BoN and RL", None))
    else:
        bon_max = max(float(np.max(k)) for k, _, _ in bon.values())
        kmax = [rl[s][3] if s in rl else None for s in sizes]
        ok = all(v >= bon_max for v in kmax if v is not None)
        text = f"BoN {bon_max:.2f} nats; RL " + " / ".join(_fmt(v, 1) for v in kmax)
        out.append(_row("rl_reaches_bon_kl", target + f" (kl_coef {kc:g})", text, ok))
    return out


def check_lines(checks: list[dict]) -> list[str]:
    """One printed line a check: PASS/FAIL/n/a, name, measured."""
    mark = {True: "PASS", False: "FAIL", None: "n/a "}
    return [f"{mark[c['passed']]} {c['check']:<20} {c['measured']}" for c in checks]
