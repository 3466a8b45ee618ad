"""Gao et al.'s qualitative results, checked on a points table and its fits.

`gao_checks(points, fits)` measures, on the proxy ladder (the full-data, single-objective proxies; the
largest policy when several), the criteria a study should meet to reproduce Gao, Schulman & Hilton
(2022) qualitatively:

- `bon_r2`, `rl_r2`: every proxy's BoN law fits with R² >= 0.9, its RL law with R² >= 0.8;
- `bon_overopt`: for the smaller half of the proxies (ceil(n/2) smallest), the observed mean gold curve
  peaks before its last point and the last point lies more than 2 standard errors (its `gold_se`, over
  prompts) below the peak;
- `rl_overopt`: judged over seeds, for the smaller half of the proxies that have RL runs. Each seed's
  curve (its evaluations in step order) has a peak region: the mean raw gold of the 3 evaluations around
  the argmax of the other seeds' mean curve, smoothed by a centred 3-point moving average (2 points at
  the ends; no luckiest single evaluation, and the seed's own noise does not place its peak); its drop
  is the peak region minus its last evaluation. A proxy passes when a one-sided one-sample t-test (k - 1
  degrees of freedom) finds the mean drop over its k seeds > 0 at p < 0.05; the check passes when every
  such proxy does. With one seed it cannot be judged (None): the evaluation batch's SE (`gold_eval_se`)
  measures the sampling noise of one policy, not whether the result replicates, so it is reported, never
  the judge;
- `best_gold_spearman`: Spearman correlation of the best observed BoN gold with `rm_params` >= 0.8;
- `peak_later`: Spearman correlation of the fitted BoN peak d* with `rm_params` >= 0.8;
- `alpha_bon_slope`, `beta_bon_slope`: the slope signs against log10(`rm_params`) (+ and -) from the
  fits' coefficient scaling; `..._ci` rows: the slope's 95% interval excludes 0;
- `rl_reaches_bon_kl`: every proxy's RL run reaches the largest BoN KL.

RL checks use the smallest KL coefficient (Gao's main RL runs have none). Every check returns a row
{check, target, measured, passed}; passed is None when the data cannot decide it (say, no RL runs).
The checks judge one replicate: a table with several values of `replicate` gets one undecided row.
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
P_MAX = 0.05  # rl_overopt: one-sided p-value of the mean drop over seeds
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


def rl_rows(lad: pd.DataFrame, kl_coef: float) -> pd.DataFrame:
    """The ladder's RL rows at kl_coef (a missing kl_coef counts as 0)."""
    rl = lad[lad["method"] == "rl"]
    if "kl_coef" in rl.columns:
        rl = rl[rl["kl_coef"].fillna(0.0) == kl_coef]
    return rl


def smoothed(gold: np.ndarray) -> np.ndarray:
    """Centred 3-point moving average; the two ends average 2 points (one point: itself)."""
    total = gold.copy()
    count = np.ones(len(gold))
    total[1:] += gold[:-1]
    total[:-1] += gold[1:]
    count[1:] += 1
    count[:-1] += 1
    return total / count


def seed_drop(gold: np.ndarray, peak_from: np.ndarray | None = None) -> dict:
    """Peak region (mean raw gold of the 3 evaluations around the argmax of the smoothed `peak_from`, by
    default the curve itself; clipped to the curve), last evaluation and their difference, for one seed's
    curve in step order."""
    i = int(np.argmax(smoothed(gold if peak_from is None else peak_from)))
    peak = float(np.mean(gold[max(i - 1, 0) : i + 2]))
    last = float(gold[-1])
    return {"i_peak": i, "peak": peak, "last": last, "drop": peak - last}


def seed_drops(curves: list[np.ndarray]) -> list[dict]:
    """`seed_drop` of each seed's curve (all on the same evaluations), its peak placed by the mean curve of
    the *other* seeds: a seed's own noise then cannot choose its peak region, so a flat curve drops by
    0 on average (choosing it from the seed's own curve made flat curves "drop" by about 0.9 noise SDs
    and pass the t-test 20-45% of the time). One seed: its own curve."""
    if len(curves) == 1:
        return [seed_drop(curves[0])]
    stack = np.stack(curves)
    total = stack.sum(axis=0)
    return [seed_drop(c, (total - c) / (len(curves) - 1)) for c in stack]


def rl_seed_drops(rl: pd.DataFrame) -> dict:
    """{rm_params: {"drops": [seed_drop per seed (`seed_drops`)], "eval_se": last evaluation's
    gold_eval_se (mean over seeds; None without the column)}} of RL rows, each seed's curve ordered by
    step (else by kl) and restricted to the steps every seed evaluated."""
    key = "step" if "step" in rl.columns else "kl"
    out = {}
    for size, sub in rl.groupby("rm_params", sort=True):
        seeds = list(sub.groupby("seed", sort=True, dropna=False)) if "seed" in sub.columns else [(None, sub)]
        if key == "step" and len(seeds) > 1:
            common = set.intersection(*(set(c["step"]) for _, c in seeds))
            seeds = [(s, c[c["step"].isin(common)]) for s, c in seeds]
        curves, se = [], []
        for _, curve in seeds:
            curve = curve.sort_values(key, kind="stable")
            curves.append(curve["gold"].to_numpy(float))
            if "gold_eval_se" in curve.columns and np.isfinite(curve["gold_eval_se"].iloc[-1]):
                se.append(float(curve["gold_eval_se"].iloc[-1]))
        if len({len(c) for c in curves}) > 1:  # evaluated at different kl and no common steps: own peaks
            drops = [seed_drop(c) for c in curves]
        else:
            drops = seed_drops(curves)
        out[float(size)] = {"drops": drops, "eval_se": float(np.mean(se)) if se else None}
    return out


def drop_test(drops: list[dict]) -> dict:
    """Mean peak region, last and drop over seeds; one-sided one-sample t-test of mean drop > 0 (k - 1
    degrees of freedom): t, p (None with one seed; seeds that all drop alike give t = +-inf, p 0 or 1)."""
    x = np.array([d["drop"] for d in drops])
    out = {
        "k": len(x),
        "peak": float(np.mean([d["peak"] for d in drops])),
        "last": float(np.mean([d["last"] for d in drops])),
        "drop": float(x.mean()),
        "t": None,
        "p": None,
    }
    if len(x) < 2:
        return out
    if np.std(x, ddof=1) <= 1e-12 * np.max(np.abs(x)):  # every seed dropped alike (deterministic runs)
        mean = float(x.mean())
        out["t"], out["p"] = math.copysign(math.inf, mean) if mean else math.nan, 0.0 if mean > 0 else 1.0
        return out
    res = stats.ttest_1samp(x, 0.0, alternative="greater")
    out["t"], out["p"] = float(res.statistic), float(res.pvalue)
    return out


def _rl_overopt_check(tests: dict, half: list, eval_se: dict, kc: float) -> dict:
    target = (
        f"RL: each seed's gold peak region (3 evaluations around the other seeds' smoothed peak) minus its last"
        f" evaluation"
        f" > 0 over seeds, one-sided t-test p < {P_MAX:g}, smaller half (kl_coef {kc:g})"
    )
    if not tests:
        return _row("rl_overopt", target, "no curves", None)
    parts, verdicts = [], []
    for s in half:
        r = tests[s]
        head = f"{fmt_params(s)}: {_fmt(r['peak'], 2)} -> {_fmt(r['last'], 2)} (drop {_fmt(r['drop'], 3)}"
        if r["p"] is None:
            se = "" if eval_se.get(s) is None else f"; evaluation-batch SE {_fmt(eval_se[s], 3)}, not the judge"
            parts.append(f"{head}, k 1: one seed, cannot be judged{se})")
            verdicts.append(None)
            continue
        parts.append(f"{head}, t {_fmt(r['t'], 2)}, p {r['p']:.3g}, k {r['k']})")
        verdicts.append(bool(r["p"] < P_MAX))
    passed = False if False in verdicts else (None if None in verdicts else True)
    return _row("rl_overopt", target, "; ".join(parts), passed)


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
    if "replicate" in lad.columns and lad["replicate"].nunique() > 1:
        reps = ", ".join(str(v) for v in sorted(lad["replicate"].dropna().unique()))
        return [_row("one replicate", "the checks judge one replicate", f"replicates {reps}: judge each alone", None)]
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
    rl = rl_rows(lad, kc)
    rl_sizes = sorted({float(s) for s in rl["rm_params"].unique()})  # RL may run against some proxies only
    rl_r2 = _r2_check("rl_r2", rl_fits, rl_sizes, R2_RL)
    rl_r2["target"] += f" (kl_coef {kc:g})"
    out.append(rl_r2)

    bon = bon_curves(lad)
    bon_drops = {s: curve_drop(c[1], _last_se(c[2])) for s, c in bon.items()}
    out.append(_overopt_check("bon_overopt", bon_drops, half, "BoN"))
    seed_drops = rl_seed_drops(rl)
    tests = {s: drop_test(v["drops"]) for s, v in seed_drops.items()}
    eval_se = {s: v["eval_se"] for s, v in seed_drops.items()}
    out.append(_rl_overopt_check(tests, rl_sizes[: math.ceil(len(rl_sizes) / 2)], eval_se, kc))

    best = [float(np.max(bon[s][1])) if s in bon else None for s in sizes]
    out.append(_spearman("best_gold_spearman", f"Spearman(best BoN gold, rm_params) >= {RHO_MIN}", sizes, best))
    dstar = [bon_fits.get(s, {}).get("d_peak") for s in sizes]
    dstar = [None if v is None else float(v) for v in dstar]
    out.append(_spearman("peak_later", f"Spearman(fitted BoN d*, rm_params) >= {RHO_MIN}", sizes, dstar))
    out += _slope_checks(fits.get("scaling", []), "alpha", +1, ci_required)
    out += _slope_checks(fits.get("scaling", []), "beta", -1, ci_required)

    target = "every proxy's RL run reaches the largest BoN KL"
    if not bon or not rl_sizes:
        out.append(_row("rl_reaches_bon_kl", target, "needs BoN and RL", None))
    else:
        bon_max = max(float(np.max(k)) for k, _, _ in bon.values())
        rl_max = rl.groupby("rm_params")["kl"].max()
        kmax = [float(rl_max[s]) if s in rl_max.index else None for s in sizes]
        ok = all(v >= bon_max for v in kmax if v is not None)
        text = f"BoN {bon_max:.2f} nats; RL " + " / ".join(_fmt(v, 1) for v in kmax)
        out.append(_row("rl_reaches_bon_kl", target + f" (kl_coef {kc:g})", text, ok))
    return out


def check_lines(checks: list[dict]) -> list[str]:
    """One printed line a check: PASS/FAIL/n/a, name, measured."""
    mark = {True: "PASS", False: "FAIL", None: "n/a "}
    return [f"{mark[c['passed']]} {c['check']:<20} {c['measured']}" for c in checks]
