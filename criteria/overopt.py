"""Over-optimization: gold falls past its peak, for best-of-n (over prompts) and RL (over seeds)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from criteria.common import N_SE, P_MAX, combine, fmt, row
from scaling.fmt import fmt_params
from scaling.ladder import Ladder


def curve_drop(gold: np.ndarray, se_last: float | None) -> dict:
    """Peak, last point, drop and drop/SE of one observed curve (points in KL order)."""
    i = int(np.argmax(gold))
    peak, last = float(gold[i]), float(gold[-1])
    drop = peak - last
    z = drop / se_last if se_last is not None and se_last > 0 else None
    return {"i_peak": i, "peak": peak, "last": last, "drop": drop, "z": z, "inside": i < len(gold) - 1}


def paired_drop_se(prompts: pd.DataFrame, kl_peak: float, kl_last: float) -> float | None:
    """SE over prompts of (gold at the peak's KL - gold at the last KL), each prompt paired with itself:
    sd(per-prompt differences, ddof 1) / sqrt(P). None without two prompts at both KLs."""
    at = lambda k: prompts[np.isclose(prompts["kl"].to_numpy(float), k)].groupby("prompt")["gold"].mean()
    diff = (at(kl_peak) - at(kl_last)).dropna()
    if len(diff) < 2:
        return None
    return float(diff.std(ddof=1) / math.sqrt(len(diff)))


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


def rl_overopt_check(L: Ladder, rl: pd.DataFrame) -> dict:
    """Smaller half of the proxies with RL runs: each seed's drop (`seed_drops`) > 0 over seeds, one-sided
    t-test p < P_MAX (`drop_test`); one seed cannot be judged. `rl`: the ladder's RL rows at L.kc."""
    seed_drops_ = rl_seed_drops(rl)
    tests = {s: drop_test(v["drops"]) for s, v in seed_drops_.items()}
    eval_se = {s: v["eval_se"] for s, v in seed_drops_.items()}
    half, kc = Ladder.half(L.rl_sizes), L.kc
    target = (
        f"RL: each seed's gold peak region (3 evaluations around the other seeds' smoothed peak) minus its last"
        f" evaluation"
        f" > 0 over seeds, one-sided t-test p < {P_MAX:g}, smaller half (kl_coef {kc:g})"
    )
    if not tests:
        return row("rl_overopt", target, "no curves", None)
    parts, verdicts = [], []
    for s in half:
        r = tests[s]
        head = f"{fmt_params(s)}: {fmt(r['peak'], 2)} -> {fmt(r['last'], 2)} (drop {fmt(r['drop'], 3)}"
        if r["p"] is None:
            se = "" if eval_se.get(s) is None else f"; evaluation-batch SE {fmt(eval_se[s], 3)}, not the judge"
            parts.append(f"{head}, k 1: one seed, cannot be judged{se})")
            verdicts.append(None)
            continue
        parts.append(f"{head}, t {fmt(r['t'], 2)}, p {r['p']:.3g}, k {r['k']})")
        verdicts.append(bool(r["p"] < P_MAX))
    ps = [tests[s]["p"] for s in half]
    stat = max(ps) if ps and None not in ps else None
    return row("rl_overopt", target, "; ".join(parts), combine(verdicts), stat)


def bon_overopt_check(L: Ladder) -> dict:
    """Smaller half: the best-of-n mean curve peaks before its largest n and the gold there is more than
    N_SE standard errors over prompts below the peak. The SE is of the paired per-prompt difference (peak
    n minus largest n) when the per-prompt rows are given, else the last point's gold_se (its SE over
    prompts; the peak's own noise ignored)."""
    target = f"best-of-n gold at its largest n is > {N_SE:g} SE (over prompts) below its peak, smaller half"
    if not L.bon:
        return row("bon_overopt", target, "no curves", None)
    parts, verdicts, zs = [], [], []
    for s in Ladder.half(sorted(L.bon)):
        kl, gold, se = L.bon[s]
        d = curve_drop(gold, float(se[-1]) if np.isfinite(se[-1]) else None)
        how = "last point's SE"
        if L.prompts is not None and d["inside"]:
            mine = L.prompts[L.prompts["rm_params"] == s]
            paired = paired_drop_se(mine, float(kl[d["i_peak"]]), float(kl[-1]))
            if paired is not None and paired > 0:
                d["z"], how = d["drop"] / paired, "paired SE over prompts"
        z = "no SE" if d["z"] is None else f"{d['z']:.1f} SE, {how}"
        parts.append(f"{fmt_params(s)}: {fmt(d['peak'], 2)} -> {fmt(d['last'], 2)} ({z})")
        if not d["inside"] or d["drop"] <= 0:
            verdicts.append(False)
            zs.append(0.0)
        else:
            verdicts.append(None if d["z"] is None else bool(d["z"] > N_SE))
            zs.append(d["z"])
    stat = min(zs) if zs and None not in zs else None
    return row("bon_overopt", target, "; ".join(parts), combine(verdicts), stat)
