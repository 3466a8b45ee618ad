"""Checks across the ladder: ordering with size, coefficient slopes, a shared alpha_rl, data size and
validation loss."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from criteria.common import (
    MIN_DATA_SIZES,
    MIN_SLOPE_SIZES,
    MIN_VAL_PROXIES,
    P_MAX,
    RHO_VAL,
    combine,
    fmt,
    row,
)
from scaling.fmt import fmt_params
from scaling.ladder import Ladder, bon_curves
from scaling.nested import shared_alpha_f_test
from scaling.permutation import spearman_perm_test
from scaling.points import is_max_rule, is_ppo_algo, is_single_objective, max_rule, single_objective


def order_check(name: str, target: str, x: list, y: list, alternative: str = "greater") -> dict:
    """One-sided exact permutation test of Spearman's rho between x and y, p < P_MAX (None with < 3 values)."""
    target = f"{target}: one-sided exact permutation test of Spearman's rho, p < {P_MAX:g}"
    ok = [i for i in range(len(x)) if y[i] is not None and not (isinstance(y[i], float) and math.isnan(y[i]))]
    vals = " / ".join("inf" if v is not None and v == math.inf else fmt(v, 2) for v in y)
    if len(ok) < 3:
        return row(name, target, f"fewer than 3 values ({vals})", None)
    if math.factorial(len(ok)) * P_MAX <= 1:  # even the perfect order has p = 1/n! >= P_MAX
        return row(name, target, f"{len(ok)} values cannot reach p < {P_MAX:g} ({vals})", None)
    ys = np.array([y[i] for i in ok], float)
    finite = ys[np.isfinite(ys)]
    ys[np.isposinf(ys)] = (finite.max() + 1.0) if len(finite) else 1.0  # ranks only: inf ranks last
    res = spearman_perm_test([x[i] for i in ok], ys, alternative=alternative)
    if res["p"] is None:
        return row(name, target, f"rho undefined (constant values: {vals})", None)
    text = f"rho {res['rho']:+.2f}, p {res['p']:.3g} over {res['n']} ({vals})"
    return row(name, target, text, bool(res["p"] < P_MAX), res["p"])


def best_gold_check(L: Ladder) -> dict:
    sizes = sorted(L.bon)
    best = [float(np.max(L.bon[s][1])) for s in sizes]
    return order_check("best_gold_order", "best observed best-of-n gold rises with rm_params", sizes, best)


def peak_later_check(L: Ladder) -> dict:
    """Fitted best-of-n d* rises with size; a converged fit without a peak (beta <= 0) ranks as d* = inf."""
    sizes = sorted(L.bon)
    dstar = []
    for s in sizes:
        f = L.bon_fits.get(s, {})
        if not f.get("converged"):
            dstar.append(None)
        else:
            dstar.append(math.inf if f.get("d_peak") is None else float(f["d_peak"]))
    return order_check("peak_later", "fitted best-of-n peak d* rises with rm_params", sizes, dstar)


def slope_check(L: Ladder, method: str, coef: str, sign: int) -> dict:
    """The coefficient's slope in log10(rm_params) has the sign and its 95% interval (`slope_ci`, over the
    unit named by `slope_interval`) excludes 0; not judged with fewer than MIN_SLOPE_SIZES sizes."""
    want = "> 0" if sign > 0 else "< 0"
    name = f"{coef}_{method}_slope"
    where = "" if method == "bon" else f" (kl_coef {L.kc:g})"
    target = (
        f"{coef}_{method} slope in log10(rm_params) {want}{where}: its 95% interval excludes 0"
        f" (judged with >= {MIN_SLOPE_SIZES} sizes)"
    )
    rows = [
        r
        for r in L.fits.get("scaling", [])
        if r.get("method") == method
        and r.get("coef") == coef
        and r.get("x") == "rm_params"
        and is_single_objective(r.get("objective"))
        and is_max_rule(r.get("rule"))
        and is_ppo_algo(r.get("algo"))
        and (method != "rl" or r.get("kl_coef") is None or float(r["kl_coef"]) == L.kc)
    ]
    want_ds = L.lad.loc[L.lad["method"] == method, "data_size"] if "data_size" in L.lad.columns else None
    if want_ds is not None and want_ds.notna().any():
        rows = [r for r in rows if r.get("data_size") is None or float(r["data_size"]) == float(want_ds.max())]
    if not rows:
        return row(name, target, "no coefficient scaling", None)
    r = rows[0]
    slope, ci = r.get("slope"), r.get("slope_ci")
    n = len(L.rl_sizes) if method == "rl" else len(L.bon)  # the ladder's proxy sizes
    unit = r.get("slope_interval") or "sizes"
    ci_text = "no interval" if not ci else f"[{fmt(ci[0])}, {fmt(ci[1])}] over {unit}"
    text = f"{fmt(slope)} per decade {ci_text}, {n} sizes"
    # the scaling fit regresses on every size column that varies in its context (a data-size sweep adds
    # data_size as a second regressor, and its groups as points): say so
    others = {
        s.get("x")
        for s in L.fits.get("scaling", [])
        if s.get("method") == method
        and s.get("coef") == coef
        and s.get("x") != "rm_params"
        and is_single_objective(s.get("objective"))
        and is_max_rule(s.get("rule"))
        and is_ppo_algo(s.get("algo"))
        and s.get("n") == r.get("n")
    }
    if others:
        text += f" ({r.get('n')} groups; also regressed on {', '.join(sorted(others))})"
    if slope is None or not ci:
        return row(name, target, text, None if n < MIN_SLOPE_SIZES else False, slope)
    excl = bool(sign * ci[0] > 0 and sign * ci[1] > 0)
    if n < MIN_SLOPE_SIZES:
        return row(name, target, text + f" ({'excludes' if excl else 'includes'} 0; not judged)", None, slope)
    return row(name, target, text, excl, slope)


def shared_alpha_check(L: Ladder) -> dict:
    """alpha_rl shared across sizes: the nested F-test (`scaling.nested`) on the RL curves does not reject."""
    target = f"alpha_rl shared across sizes: nested F-test against free alphas does not reject at {P_MAX:g}"
    law = next((f.get("law") for f in L.rl_fits.values() if f.get("law")), "rl")
    curves = []
    for s in L.rl_sizes:
        d, y = np.sqrt(L.rl[s]["kl"]), L.rl[s]["gold"]
        curves.append((d[d > 0], y[d > 0]))
    if len(curves) < 2:
        return row("alpha_rl_shared", target + f" (kl_coef {L.kc:g})", "fewer than 2 RL proxies", None)
    res = shared_alpha_f_test(curves, law)
    if res.get("p") is None:
        return row("alpha_rl_shared", target, res.get("reason", "cannot be computed"), None)
    text = (
        f"F {res['F']:.2f} on ({res['df1']}, {res['df2']}) df, p {res['p']:.3g}; shared alpha"
        f" {fmt(res['alpha_shared'])}, free " + " / ".join(fmt(a) for a in res["alphas"])
    )
    return row("alpha_rl_shared", target + f" (kl_coef {L.kc:g})", text, bool(res["p"] >= P_MAX), res["p"])


def data_size_check(points: pd.DataFrame) -> dict:
    """Best best-of-n gold rises with data_size, for every proxy trained at >= MIN_DATA_SIZES data sizes."""
    name, target = "data_size", "best observed best-of-n gold rises with data_size, every swept proxy"
    p = max_rule(single_objective(points))
    p = p[p["method"] == "bon"] if "method" in p.columns else p.iloc[0:0]
    if "data_size" not in p.columns or "rm_params" not in p.columns or not len(p):
        return row(name, target, "no data-size sweep", None)
    if "policy_params" in p.columns and p["policy_params"].notna().any():
        p = p[p["policy_params"] == p["policy_params"].max()]
    counts = p.groupby("rm_params")["data_size"].nunique()
    swept = sorted(float(s) for s in counts.index[counts >= MIN_DATA_SIZES])
    if not swept:
        most = int(counts.max()) if len(counts) else 0
        return row(name, target, f"at most {most} data sizes per proxy (judged with >= {MIN_DATA_SIZES})", None)
    parts, verdicts, ps = [], [], []
    for s in swept:
        sub = p[p["rm_params"] == s]
        ds = sorted(float(v) for v in sub["data_size"].unique())
        best = [float(np.max(bon_curves(sub[sub["data_size"] == v])[s][1])) for v in ds]
        r = order_check(name, target, ds, best)
        parts.append(f"{fmt_params(s)}: {r['measured']}")
        verdicts.append(r["passed"])
        ps.append(r["statistic"])
    stat = max(ps) if None not in ps else None
    return row(name, target + f" (permutation test, p < {P_MAX:g})", "; ".join(parts), combine(verdicts), stat)


def val_loss_check(L: Ladder) -> dict:
    """Rank correlation of proxy validation loss (mean over ensemble members) with best best-of-n gold."""
    name = "val_loss"
    target = (
        f"proxy validation loss predicts gold: Spearman(val_loss, best best-of-n gold) <= {RHO_VAL:g}"
        f" (reported); judged with >= {MIN_VAL_PROXIES} proxies: one-sided exact permutation p < {P_MAX:g}"
    )
    q = L.proxies
    if q is None or "val_loss" not in q.columns or "rm_params" not in q.columns or not L.bon:
        return row(name, target, "no proxy validation losses", None)
    if "data_size" in q.columns and "data_size" in L.lad.columns:
        bon_ds = L.lad.loc[L.lad["method"] == "bon", "data_size"]
        if bon_ds.notna().any():
            q = q[q["data_size"] == bon_ds.max()]
    loss = q.groupby("rm_params")["val_loss"].mean()
    sizes = [s for s in sorted(L.bon) if s in loss.index]
    if len(sizes) < 3:
        return row(name, target, f"{len(sizes)} proxies with a validation loss", None)
    x = [float(loss[s]) for s in sizes]
    best = [float(np.max(L.bon[s][1])) for s in sizes]
    r = order_check(name, target, x, best, alternative="less")
    vals = " / ".join(f"{a:.3f}" for a in x)
    text = r["measured"].replace("(", f"(val_loss {vals}; gold ", 1)
    passed = r["passed"] if len(sizes) >= MIN_VAL_PROXIES else None
    return row(name, target, text, passed, r["statistic"])
