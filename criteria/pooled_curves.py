"""The pooled verdict's claims on curves, replicates as the unit: fit quality and advance prediction (a
share of the (proxy, replicate) curves), RL resolved before its peak, over-optimization (the smaller
half's fall, t over replicates), best-of-n against RL at matched KL and at the peak (kl_exact), a KL
penalty ~ early stopping. docs/CRITERIA.md defines each."""

from __future__ import annotations

import numpy as np

from criteria.kl import _interp, band_quantile, matched_kl_gap
from criteria.pooled_stats import smoothed, split_drops, t_replicates
from criteria.pooled_trends import entry
from criteria.registered import Registered
from scaling.fmt import fmt_params
from scaling.ladder import Ladder, rl_curve, rl_rows
from scaling.laws import LAWS
from scaling.least_squares import fit_law


def common_sizes(ladders: dict, attr: str = "bon") -> list[float]:
    return sorted(set.intersection(*(set(getattr(L, attr)) for L in ladders.values()))) if ladders else []


def _share_entry(claim, test_what, results: list, frac: float, used: list) -> dict:
    """results: [(label, value text, passed | None)]; passes when >= frac of the judged ones pass."""
    judged = [r for r in results if r[2] is not None]
    if not judged:
        return entry(claim, "share", None, f"{test_what}: no curve can be judged", used)
    share = sum(r[2] for r in judged) / len(judged)
    bad = [f"{a} {b}" for a, b, ok in judged if not ok]
    why = f"{test_what}: {sum(r[2] for r in judged)} of {len(judged)} curves ({share:.0%}, need {frac:.0%})"
    why += f"; failing: {', '.join(bad)}" if bad else ""
    na = len(results) - len(judged)
    why += f"; {na} not judged" if na else ""
    return entry(claim, "share", bool(share >= frac - 1e-12), why, used, statistic=share)


def r2_entry(ladders: dict, reg: Registered, method: str) -> dict:
    r2_min = reg.margins["r2_bon" if method == "bon" else "r2_rl"]
    res = []
    for k, L in sorted(ladders.items()):
        fits = L.bon_fits if method == "bon" else L.rl_fits
        for s in sorted(L.bon) if method == "bon" else L.rl_sizes:
            v = fits.get(s, {}).get("r2_unweighted")
            res.append((f"K{k} {fmt_params(s)}", "-" if v is None else f"{v:.2f}", v is not None and v >= r2_min))
    what = f"{'best-of-n' if method == 'bon' else 'RL'} unweighted R² >= {r2_min:g}"
    return _share_entry(f"{method}_r2", what, res, reg.margins["fit_frac"], sorted(ladders))


def _curve(L: Ladder, s: float, method: str) -> tuple[np.ndarray, np.ndarray]:
    if method == "bon":
        kl, gold, _ = L.bon[s]
    else:
        kl, gold = L.rl[s]["kl"], L.rl[s]["gold"]
    return np.sqrt(np.asarray(kl, float)), np.asarray(gold, float)


def advance_one(d: np.ndarray, y: np.ndarray, law: str, reg: Registered) -> tuple[float | None, str]:
    """(nRMSE beyond the cut, text) of one curve: the law fitted on d <= max(advance_frac d_max,
    advance_peak x the observed peak's d), its RMSE on d > cut over (max - min of the curve); None when the
    observed peak is the last point or nothing lies beyond the cut, or fewer than 3 points before it."""
    i = int(np.argmax(y))
    if i == len(y) - 1:
        return None, "peak not inside the data"
    cut = max(reg.margins["advance_frac"] * float(d.max()), reg.margins["advance_peak"] * float(d[i]))
    keep = d > 0 if LAWS[law].drop_zero else np.ones(len(d), bool)
    fit_m, test_m = keep & (d <= cut), d > cut
    if test_m.sum() < 1 or fit_m.sum() < 3:
        return None, f"cut {cut:.2f}: {int(fit_m.sum())} points to fit, {int(test_m.sum())} beyond"
    f = fit_law(law, d[fit_m], y[fit_m])
    if not f.converged:
        return np.inf, "no fit"
    pred = LAWS[law].fn(d[test_m], *f.params)
    rng = float(y.max() - y.min())
    nrmse = float(np.sqrt(np.mean((pred - y[test_m]) ** 2)) / rng) if rng > 0 else np.inf
    return nrmse, f"{nrmse:.2f} (cut {cut:.2f})"


def advance_entry(ladders: dict, reg: Registered, method: str) -> dict:
    res = []
    for k, L in sorted(ladders.items()):
        fits = L.bon_fits if method == "bon" else L.rl_fits
        for s in sorted(L.bon) if method == "bon" else L.rl_sizes:
            d, y = _curve(L, s, method)
            law = fits.get(s, {}).get("law") or method
            v, text = advance_one(d, y, law, reg)
            res.append((f"K{k} {fmt_params(s)}", text, None if v is None else bool(v <= reg.margins["nrmse_max"])))
    what = (
        f"{'best-of-n' if method == 'bon' else 'RL'} law fitted on d <= max({reg.margins['advance_frac']:g} d_max,"
        f" {reg.margins['advance_peak']:g} x observed peak d) predicts the rest with nRMSE"
        f" <= {reg.margins['nrmse_max']:g}"
    )
    return _share_entry(f"{method}_advance", what, res, reg.margins["fit_frac"], sorted(ladders))


def resolved_entry(ladders: dict, reg: Registered) -> dict:
    """Smaller half: RL's mean curve (smoothed) peaks after >= rl_rise_evals evaluations."""
    need = int(reg.margins["rl_rise_evals"])
    res = []
    for k, L in sorted(ladders.items()):
        for s in Ladder.half(L.rl_sizes):
            i = int(np.argmax(smoothed(np.asarray(L.rl[s]["gold"], float))))
            res.append((f"K{k} {fmt_params(s)}", f"{i} evaluations", i >= need))
    what = f"RL rises over >= {need} evaluations before its (smoothed) peak, smaller half"
    return _share_entry("rl_resolved", what, res, reg.margins["fit_frac"], sorted(ladders))


def _t_entry(claim, what, per_rep: dict, reg: Registered, extra: str = "", **detail) -> dict:
    used = sorted(per_rep)
    vals = np.array([per_rep[k] for k in used], float)
    shown = " / ".join(f"K{k} {v:+.3g}" for k, v in zip(used, vals, strict=True))
    if len(used) < 2:
        return entry(claim, "t_replicates", None, f"{what}: needs >= 2 replicates ({shown}){extra}", used, **detail)
    r = t_replicates(vals, "greater")
    p = float(r["p"])
    if not np.isfinite(p):  # every replicate alike
        p = 0.0 if float(r["mean"]) > 0 else 1.0
    why = f"{what}: mean {float(r['mean']):+.4g}, t {float(r['t']):.2f}, p {p:.3g} over {len(used)} ({shown}){extra}"
    lo, hi = float(r["interval"][0]), float(r["interval"][1])
    return entry(
        claim, "t_replicates", p < reg.p_max, why, used, statistic=float(r["mean"]), p=p, interval=(lo, hi), **detail
    )


def _fall(ladders: dict, method: str) -> tuple[dict, str]:
    """{k: mean over the smaller half of the replicate's fall (`split_drops`)} (the curves of a size cut to
    the evaluations every replicate has)."""
    attr = "bon" if method == "bon" else "rl"
    sizes = Ladder.half(common_sizes(ladders, attr))
    ks = sorted(ladders)
    if len(ks) < 2 or not sizes:
        return {}, "needs >= 2 replicates with curves"
    per = []
    for s in sizes:
        curves = [_curve(ladders[k], s, method)[1] for k in ks]
        T = min(len(c) for c in curves)
        if T < 3:
            return {}, f"fewer than 3 evaluations at {fmt_params(s)}"
        per.append(split_drops(np.stack([c[:T] for c in curves])))
    drops = np.mean(per, axis=0)
    return {k: float(v) for k, v in zip(ks, drops, strict=True)}, f" (sizes {', '.join(fmt_params(s) for s in sizes)})"


def overopt_entry(ladders: dict, reg: Registered, method: str) -> dict:
    drops, sizes = _fall(ladders, method)
    what = (
        f"{'best-of-n' if method == 'bon' else 'RL (mean over seeds)'}: peak region (placed on the other"
        f" evaluations of every replicate) minus last point > 0, smaller half"
    )
    if not drops:
        return entry(f"{method}_overopt", "t_replicates", None, f"{what}: {sizes}", sorted(ladders))
    return _t_entry(f"{method}_overopt", what, drops, reg, sizes)


def kl_efficiency_entry(ladders: dict, reg: Registered) -> dict:
    gaps = {}
    for k, L in sorted(ladders.items()):
        both = [s for s in sorted(L.bon) if s in L.rl]
        if both:
            gaps[k] = float(np.mean([matched_kl_gap(L.bon[s], L.rl[s])["gap"] for s in both]))
    return _t_entry("kl_efficiency", "best-of-n minus RL gold at matched KL (mean over proxies)", gaps, reg)


def _bon_exact_peak_kl(L: Ladder, s: float) -> float | None:
    kl, gold, _ = L.bon[s]
    sub = L.lad[(L.lad["method"] == "bon") & (L.lad["rm_params"] == s)]
    if "kl_exact" not in sub.columns or sub["kl_exact"].isna().all():
        return None
    at = sub[np.isclose(sub["kl"].to_numpy(float), float(kl[int(np.argmax(gold))]))]["kl_exact"]
    return float(at.mean()) if len(at) and np.isfinite(at.mean()) else None


def rl_peak_kl_entry(ladders: dict, reg: Registered) -> dict:
    """Smaller half: log(RL's observed peak KL / best-of-n's kl_exact at its observed peak), mean over the
    half per replicate, t over replicates > 0; RL's fitted d*^2 reported beside it."""
    ratios, fitted, missing = {}, {}, []
    for k, L in sorted(ladders.items()):
        logs = []
        for s in Ladder.half([s for s in sorted(L.bon) if s in L.rl]):
            kb = _bon_exact_peak_kl(L, s)
            kr = float(L.rl[s]["kl"][int(np.argmax(L.rl[s]["gold"]))])
            f = L.rl_fits.get(s, {})
            fitted[f"K{k} {fmt_params(s)}"] = {
                "rl_peak_kl_observed": kr,
                "rl_peak_kl_fitted": None if f.get("d_peak") is None else float(f["d_peak"]) ** 2,
                "bon_peak_kl_exact": kb,
            }
            if kb is None or kb <= 0 or kr <= 0:
                missing.append(f"K{k} {fmt_params(s)}")
                continue
            logs.append(np.log(kr / kb))
        if logs:
            ratios[k] = float(np.mean(logs))
    extra = f"; no kl_exact or zero KL: {', '.join(missing)}" if missing else ""
    what = "log(RL's observed peak KL / best-of-n's kl_exact peak KL), smaller half"
    return _t_entry("rl_peak_kl_later", what, ratios, reg, extra, peaks=fitted)


def penalty_entry(ladders: dict, reg: Registered) -> dict:
    """Penalised RL evaluations (each replicate, each proxy, each kl_coef above the smallest) within
    max(penalty_se x combined SE (t-corrected), penalty_range x the unpenalised curve's gold range) of the
    unpenalised curve at the same KL: passes when >= penalty_frac of them, pooled over replicates."""
    inside = total = 0
    per = []
    for k, L in sorted(ladders.items()):
        n_in = n_all = 0
        for c in [c for c in L.kl_coefs if c != L.kc]:
            for s, sub in rl_rows(L.lad, c).groupby("rm_params", sort=True):
                base = L.rl.get(float(s))
                if base is None:
                    continue
                cur = rl_curve(sub)
                keep = (cur["kl"] > 0) & (cur["kl"] >= np.min(base["kl"])) & (cur["kl"] <= np.max(base["kl"]))
                g0 = _interp(base["kl"], base["gold"], cur["kl"][keep])
                se0 = _interp(base["kl"], base["se"], cur["kl"][keep])
                se1 = cur["se"][keep]
                se = np.sqrt(se1**2 + se0**2)
                q = band_quantile(se1, cur["k"], se0, base["k"])
                floor = reg.margins["penalty_range"] * float(np.ptp(base["gold"]))
                band = np.maximum(np.where(np.isfinite(se), q * se, 0.0), floor)
                n_in += int((np.abs(cur["gold"][keep] - g0) <= band).sum())
                n_all += int(keep.sum())
        if n_all:
            per.append(f"K{k} {n_in} of {n_all}")
        inside, total = inside + n_in, total + n_all
    used = sorted(ladders)
    if total == 0:
        return entry(
            "penalty_early_stopping", "share", None, "no penalised evaluation inside the unpenalised KL range", used
        )
    frac = inside / total
    why = (
        f"within max({reg.margins['penalty_se']:g} SE, {reg.margins['penalty_range']:.0%} of the curve's gold range):"
        f" {inside} of {total} ({frac:.0%}, need {reg.margins['penalty_frac']:.0%}; {'; '.join(per)})"
    )
    return entry("penalty_early_stopping", "share", frac >= reg.margins["penalty_frac"], why, used, statistic=frac)
