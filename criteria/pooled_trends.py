"""The pooled verdict's trend claims across proxy sizes, replicates as the unit: orderings (Page's L),
coefficient slopes (t interval over replicates), alpha_rl constant (TOST), and the competence floor that
decides which proxies the trends read. Each returns a verdict entry (`entry`); docs/CRITERIA.md defines
them."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from criteria.pooled_stats import ols_slopes, page_l, t_replicates, tost, within_ranks
from criteria.registered import Registered
from scaling.fmt import fmt_params, json_num
from scaling.ladder import bon_curves
from scaling.nested import shared_alpha_f_test
from scaling.points import max_rule, single_objective


def _num(v):
    if v is None:
        return None
    v = float(v)
    return "inf" if v == math.inf else json_num(v)


def entry(claim, test, passed, reason, used, statistic=None, p=None, interval=None, **detail) -> dict:
    """One claim of verdict.json: {claim, test, statistic, p, interval, replicates_used, passed, reason}
    (+ detail keys). passed None: n/a, the reason says why."""
    return {
        "claim": claim,
        "test": test,
        "statistic": _num(statistic),
        "p": _num(p),
        "interval": None if interval is None else [_num(interval[0]), _num(interval[1])],
        "replicates_used": [int(k) for k in used],
        "passed": None if passed is None else bool(passed),
        "reason": reason,
        **detail,
    }


def competence(ladders: dict, reg: Registered) -> tuple[list[float], list[float], dict]:
    """(trend sizes, sizes below the floor, {size: mean val_acc}) over the sizes every ladder has: a size is
    below the floor when its mean validation accuracy (over members and replicates, the ladder's data size)
    is < reg.floor; without val_acc every common size is a trend size."""
    common = sorted(set.intersection(*(set(L.bon) for L in ladders.values()))) if ladders else []
    accs: dict = {}
    for L in ladders.values():
        q = L.proxies
        if q is None or "val_acc" not in q.columns or "rm_params" not in q.columns:
            continue
        if "data_size" in q.columns and "data_size" in L.lad.columns and L.lad["data_size"].notna().any():
            q = q[q["data_size"] == L.lad.loc[L.lad["method"] == "bon", "data_size"].max()]
        for s, v in q.groupby("rm_params")["val_acc"].mean().items():
            accs.setdefault(float(s), []).append(float(v))
    acc = {s: float(np.mean(v)) for s, v in accs.items()}
    low = [s for s in common if s in acc and acc[s] < reg.floor]
    return [s for s in common if s not in low], low, acc


def floor_entry(ladders: dict, reg: Registered) -> dict:
    trend, low, acc = competence(ladders, reg)
    if not acc:
        why = "no proxy validation accuracy: every proxy is in the trend claims"
    else:
        shown = ", ".join(f"{fmt_params(s)} {acc[s]:.3f}" for s in sorted(acc))
        left = ", ".join(fmt_params(s) for s in low) or "none"
        why = f"validation accuracy (mean over members and replicates): {shown}; left out of the trends: {left}"
    return entry(
        "competence_floor", "floor", None, why, sorted(ladders), statistic=reg.floor,
        trend_sizes=trend, below_floor=low,
    )  # fmt: skip


def _page_entry(claim, what, y: np.ndarray, used: list, sizes: list, dropped: list, reg: Registered) -> dict:
    """Page's L on y [replicates, treatments] (treatments in predicted increasing order)."""
    vals = "; ".join(
        f"K{k}: " + " / ".join("inf" if v == math.inf else f"{v:.3g}" for v in row)
        for k, row in zip(used, y, strict=True)
    )
    extra = f" (left out, a value missing: {', '.join(f'K{k}' for k in dropped)})" if dropped else ""
    if len(used) < 1 or y.shape[1] < 3:
        return entry(claim, "page_L", None, f"{what}: needs 3 treatments and 1 replicate ({y.shape[1]}){extra}", used)
    if len(used) == 1 and math.factorial(y.shape[1]) * reg.p_max <= 1:
        return entry(
            claim,
            "page_L",
            None,
            f"{what}: {y.shape[1]} values in one replicate cannot reach p < {reg.p_max:g}{extra}",
            used,
        )
    r = page_l(np.where(np.isposinf(y), np.finfo(float).max, y))
    head = f"{what}: L {float(r['L']):g} over {r['m']} replicates x {r['n']} ({r['method']})"
    why = f"{head}, p {float(r['p']):.3g} ({vals}){extra}"
    return entry(
        claim, "page_L", bool(r["p"] < reg.p_max), why, used, statistic=float(r["L"]), p=float(r["p"]), sizes=sizes
    )


def _matrix(ladders: dict, sizes: list, value) -> tuple[np.ndarray, list, list]:
    rows, used, dropped = [], [], []
    for k, L in sorted(ladders.items()):
        row = [value(L, s) for s in sizes]
        if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in row):
            dropped.append(k)
            continue
        rows.append(row)
        used.append(k)
    return np.array(rows, float).reshape(len(rows), len(sizes)), used, dropped


def best_gold_entry(ladders, reg) -> dict:
    sizes = competence(ladders, reg)[0]
    y, used, dropped = _matrix(ladders, sizes, lambda L, s: float(np.max(L.bon[s][1])))
    return _page_entry(
        "best_gold_order", "best observed best-of-n gold rises with rm_params", y, used, sizes, dropped, reg
    )


def _dstar(L, s):
    f = L.bon_fits.get(s, {})
    if not f.get("converged"):
        return None
    return math.inf if f.get("d_peak") is None else float(f["d_peak"])


def peak_later_entry(ladders, reg) -> dict:
    sizes = competence(ladders, reg)[0]
    y, used, dropped = _matrix(ladders, sizes, _dstar)
    return _page_entry(
        "peak_later", "fitted best-of-n d* rises with rm_params (no peak: inf)", y, used, sizes, dropped, reg
    )


def val_loss_entry(ladders, reg) -> dict:
    """Each replicate's best gold ordered by its own validation loss, highest loss first: Page's L with a
    predicted order per block (under the null the ranks of gold are uniform whatever the order, so L keeps
    Page's null distribution)."""
    sizes = competence(ladders, reg)[0]
    rows, used, dropped = [], [], []
    for k, L in sorted(ladders.items()):
        q = L.proxies
        if q is None or "val_loss" not in q.columns:
            dropped.append(k)
            continue
        loss = q.groupby("rm_params")["val_loss"].mean()
        if not all(s in loss.index for s in sizes):
            dropped.append(k)
            continue
        order = sorted(sizes, key=lambda s: -float(loss[s]))
        rows.append([float(np.max(L.bon[s][1])) for s in order])
        used.append(k)
    y = np.array(rows, float).reshape(len(rows), len(sizes))
    if not used:
        return entry("val_loss", "page_L", None, "no proxy validation losses", [])
    return _page_entry(
        "val_loss",
        "best gold rises as validation loss falls (each replicate's own loss order)",
        y,
        used,
        sizes,
        dropped,
        reg,
    )


def data_size_entry(points_by_rep: dict, reg) -> dict:
    """Blocks = replicates; treatments = the data sizes every swept proxy (>= 4 data sizes) has; each
    block's value for a data size = its mean within-proxy rank of best best-of-n gold over the swept
    proxies (exchangeable under the null, so Page's null holds; ties from averaging make p conservative)."""
    rows, used, sizes_all = [], [], None
    for k, pts in sorted(points_by_rep.items()):
        p = max_rule(single_objective(pts))
        p = p[p["method"] == "bon"] if "method" in p.columns else p.iloc[0:0]
        if "data_size" not in p.columns or "rm_params" not in p.columns or not len(p):
            continue
        if "policy_params" in p.columns and p["policy_params"].notna().any():
            p = p[p["policy_params"] == p["policy_params"].max()]
        counts = p.groupby("rm_params")["data_size"].nunique()
        swept = sorted(float(s) for s in counts.index[counts >= 4])
        if not swept:
            continue
        ds = sorted(set.intersection(*(set(p.loc[p["rm_params"] == s, "data_size"].astype(float)) for s in swept)))
        if sizes_all is None:
            sizes_all = ds
        if ds != sizes_all:
            continue
        ranks = []
        for s in swept:
            sub = p[p["rm_params"] == s]
            best = [float(np.max(bon_curves(sub[sub["data_size"] == v])[s][1])) for v in ds]
            ranks.append(within_ranks(np.array(best)))
        rows.append(np.mean(ranks, axis=0))
        used.append(k)
    if not used:
        return entry("data_size", "page_L", None, "no proxy with >= 4 data sizes", [])
    y = np.array(rows, float)
    return _page_entry(
        "data_size", "best gold rises with data_size (mean rank over swept proxies)", y, used, sizes_all, [], reg
    )


def _coef_matrix(ladders, sizes, method, coef):
    def value(L, s):
        f = (L.bon_fits if method == "bon" else L.rl_fits).get(s, {})
        return None if not f.get("converged") or f.get(coef) is None else float(f[coef])

    return _matrix(ladders, sizes, value)


def slope_entry(ladders, reg, method: str, coef: str, sign: int) -> dict:
    """The mean over replicates of each replicate's OLS slope of the coefficient on log10(rm_params) (trend
    sizes), with its t interval over replicates at reg.slope_ci: passes when it excludes 0 on the side of
    `sign`. Prompts and seeds are nested in replicates: a replicate's slope carries their noise."""
    claim = f"{coef}_{method}_slope"
    sizes = competence(ladders, reg)[0]
    if method == "rl":
        sizes = [s for s in sizes if all(s in L.rl_fits and s in L.rl for L in ladders.values())]
    y, used, dropped = _coef_matrix(ladders, sizes, method, coef)
    if len(sizes) < 3 or len(used) < 2:
        why = f"needs >= 3 trend sizes and >= 2 replicates with fits ({len(sizes)} sizes, {len(used)} replicates)"
        return entry(claim, "t_interval", None, why, used)
    slopes = ols_slopes(np.log10(sizes), y)
    r = t_replicates(slopes, "greater" if sign > 0 else "less", reg.slope_ci)
    lo, hi = float(r["interval"][0]), float(r["interval"][1])
    ok = lo > 0 if sign > 0 else hi < 0
    why = (
        f"{coef}_{method} per decade: mean {float(r['mean']):.4g}, {reg.slope_ci:.0%} t interval [{lo:.4g}, {hi:.4g}]"
        f" over {len(used)} replicates (slopes "
        + " / ".join(f"{v:.3g}" for v in slopes)
        + f"), want {'> 0' if sign > 0 else '< 0'}"
    )
    return entry(claim, "t_interval", ok, why, used, statistic=float(r["mean"]), p=float(r["p"]), interval=(lo, hi))


def tost_margin(y, reg: Registered):
    """tost_rel x a one-sided (1 - p_max) lower bound of |mean alpha_rl| over y [..., K, n]: the mean of the
    replicates' means minus t_{K-1} x their SE (0 at worst). The margin is estimated; taking its lower
    bound keeps TOST at its level (with the plain mean it rejected 5.2-5.6% at the margin)."""
    y = np.asarray(y, float)
    means = np.abs(y.mean(axis=-1))
    K = means.shape[-1]
    se = means.std(axis=-1, ddof=1) / np.sqrt(K)
    lower = means.mean(axis=-1) - stats.t.ppf(1 - reg.p_max, K - 1) * se
    return reg.margins["tost_rel"] * np.maximum(lower, 0.0)


def alpha_rl_entry(ladders, reg) -> dict:
    """alpha_rl constant in size: TOST of the mean per-replicate slope of alpha_rl on log10(rm_params)
    within +-tost_rel x |mean alpha_rl| per decade; the shared-alpha fit of each replicate reported."""
    sizes = [s for s in competence(ladders, reg)[0] if all(s in L.rl_fits and s in L.rl for L in ladders.values())]
    y, used, dropped = _coef_matrix(ladders, sizes, "rl", "alpha")
    shared = {}
    for k in used:
        L = ladders[k]
        law = next((f.get("law") for f in L.rl_fits.values() if f.get("law")), "rl")
        curves = [(np.sqrt(L.rl[s]["kl"]), L.rl[s]["gold"]) for s in sizes]
        res = shared_alpha_f_test([(d[d > 0], g[d > 0]) for d, g in curves], law)
        shared[str(k)] = {"alpha_shared": _num(res.get("alpha_shared")), "F_p": _num(res.get("p"))}
    if len(sizes) < 3 or len(used) < 2:
        why = f"needs >= 3 trend sizes and >= 2 replicates with RL fits ({len(sizes)} sizes, {len(used)} replicates)"
        return entry("alpha_rl_constant", "tost", None, why, used, shared_alpha=shared)
    slopes = ols_slopes(np.log10(sizes), y)
    margin = tost_margin(y, reg)
    r = tost(slopes, margin, reg.p_max)
    lo, hi = float(r["interval"][0]), float(r["interval"][1])
    why = (
        f"slope of alpha_rl per decade: mean {float(r['mean']):.4g}, {1 - 2 * reg.p_max:.0%} interval [{lo:.4g},"
        f" {hi:.4g}] within +-{float(margin):.4g} ({reg.margins['tost_rel']:.0%} of mean alpha {float(np.mean(y)):.4g},"
        f" its lower bound)?"
        f" TOST p {float(r['p']):.3g} over {len(used)} replicates"
    )
    return entry(
        "alpha_rl_constant", "tost", bool(r["p"] < reg.p_max), why, used, statistic=float(r["mean"]),
        p=float(r["p"]), interval=(lo, hi), margin=_num(margin), shared_alpha=shared,
    )  # fmt: skip


def frame_by_rep(table: pd.DataFrame | None, k: int):
    if table is None or "replicate" not in table.columns:
        return table
    return table[table["replicate"] == k]
