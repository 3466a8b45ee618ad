"""The report's "Direct alignment across policy sizes" (issue 35, item 3): Rafailov et al. 2024 (arXiv 2406.02900)
find that smaller policies degrade sooner under DPO/IPO. Per direct algo, policy size and beta (seeds pooled by
step), `size_table` gives gold's peak over the checkpoints in training order, the KL and epoch there, and whether
gold fell after it; `sooner` judges the claim on each pair of neighbouring sizes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from figures.data import FigureData
from figures.optimizers import DIRECT
from scaling.fmt import fmt_params


def _curve(rows: pd.DataFrame) -> pd.DataFrame:
    """Seeds pooled by step (training order): mean kl, gold, epoch; the pooled gold's SE, sqrt(sum se^2) / seeds
    (the seeds' evaluations are independent samples)."""
    se = rows["gold_eval_se"] if "gold_eval_se" in rows.columns else pd.Series(0.0, index=rows.index)
    g = rows.assign(_var=se.astype(float) ** 2).groupby("step")
    out = pd.DataFrame({"kl": g["kl"].mean(), "gold": g["gold"].mean(), "n": g["gold"].size()})
    out["epoch"] = g["epoch"].mean() if "epoch" in rows.columns else math.nan
    out["se"] = np.sqrt(g["_var"].sum()) / out["n"]
    return out.sort_index()


def size_table(points: pd.DataFrame) -> pd.DataFrame:
    """One row per (algo, policy_params, beta) of the direct methods: seeds, peak gold, its step, epoch and KL,
    gold at the last checkpoint, the largest KL, and `fell`: the peak is not the last checkpoint, and gold at the
    last one is below it by more than twice the difference's SE (sqrt(se_peak^2 + se_last^2)) and by more than a
    tenth of the rise (peak - gold at the first checkpoint)."""
    algo = points["algo"] if "algo" in points.columns else pd.Series(None, index=points.index)
    rows = points[(points["method"] == "rl") & algo.isin(DIRECT)]
    if rows.empty or "policy_params" not in rows.columns or "beta_dpo" not in rows.columns:
        return pd.DataFrame()
    out = []
    for (a, pp, b), g in rows.groupby(["algo", "policy_params", "beta_dpo"]):
        c = _curve(g)
        gold = c["gold"].to_numpy(float)
        i = int(np.argmax(gold))
        drop = gold[i] - gold[-1]
        se = math.hypot(c["se"].iloc[i], c["se"].iloc[-1])
        fell = bool(i < len(c) - 1 and drop > 2.0 * se and drop > 0.1 * (gold[i] - gold[0]))
        out.append(
            {
                "algo": a,
                "policy_params": float(pp),
                "beta": float(b),
                "seeds": int(g["seed"].nunique()) if "seed" in g.columns else 1,
                "peak_gold": float(gold[i]),
                "peak_step": int(c.index[i]),
                "peak_epoch": float(c["epoch"].iloc[i]),
                "kl_peak": float(c["kl"].iloc[i]),
                "last_gold": float(gold[-1]),
                "kl_max": float(c["kl"].max()),
                "fell": fell,
            }
        )
    return pd.DataFrame(out)


def pair_verdict(small: dict, large: dict) -> str:
    """Does the smaller policy degrade sooner (at less KL) than the larger? "yes", "no" or "undecided":
    both fell: yes iff the smaller's peak KL is below the larger's; only the smaller fell: yes when the larger went
    past that KL without falling, else undecided; only the larger fell: no when the smaller went past the larger's
    peak KL without falling, else undecided; neither fell: undecided."""
    if small["fell"] and large["fell"]:
        return "yes" if small["kl_peak"] < large["kl_peak"] else "no"
    if small["fell"]:
        return "yes" if large["kl_max"] > small["kl_peak"] else "undecided"
    if large["fell"]:
        return "no" if small["kl_max"] > large["kl_peak"] else "undecided"
    return "undecided"


def sooner(table: pd.DataFrame) -> list[dict]:
    """Per (algo, beta) with at least two policy sizes: the neighbouring pairs' verdicts (small to large) and the
    claim's: "holds" (some pair decided, every decided pair yes), "fails" (a decided pair no), "not judged"."""
    out = []
    for (a, b), g in table.groupby(["algo", "beta"]):
        g = g.sort_values("policy_params").to_dict("records")
        if len(g) < 2:
            continue
        pairs = [pair_verdict(s, lg) for s, lg in zip(g[:-1], g[1:])]
        decided = [p for p in pairs if p != "undecided"]
        claim = "not judged" if not decided else "fails" if "no" in decided else "holds"
        out.append({"algo": a, "beta": b, "pairs": pairs, "claim": claim})
    return out


def _g(v, digits: int = 3) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}g}"


def direct_size_blocks(data: FigureData) -> list[tuple]:
    """Blocks (see figures.report.build); [] unless a direct method ran at two policy sizes or more."""
    table = size_table(data.points)
    if table.empty or table["policy_params"].nunique() < 2:
        return []
    head = ["algo", "policy", "beta", "seeds", "peak gold", "at step (epoch)", "KL at peak", "gold at end", "max KL"]
    rows = [
        [r["algo"], fmt_params(r["policy_params"]), f"{r['beta']:g}", str(r["seeds"]), _g(r["peak_gold"])]
        + [f"{r['peak_step']} ({r['peak_epoch']:.2g})", _g(r["kl_peak"]), _g(r["last_gold"]), _g(r["kl_max"])]
        + ["yes" if r["fell"] else "no"]
        for r in table.sort_values(["algo", "beta", "policy_params"]).to_dict("records")
    ]
    claims = sooner(table)
    verdicts = [[c["algo"], f"{c['beta']:g}", ", ".join(c["pairs"]), c["claim"]] for c in claims]
    counts = {k: sum(c["claim"] == k for c in claims) for k in ("holds", "fails", "not judged")}
    return [
        ("h2", "Direct alignment across policy sizes"),
        (
            "p",
            "Rafailov et al. 2024 find that smaller policies degrade sooner under direct alignment. Per algo, policy"
            " size and beta (seeds pooled by step, checkpoints in training order): gold's peak, where it was, and"
            " whether gold fell after it (below the peak by more than 2 SE and a tenth of the rise).",
        ),
        ("table", [*head, "gold fell"], rows),
        (
            "p",
            "Does the smaller policy degrade sooner (at less KL) than the next larger one? A pair is decided when"
            " the curve that fell can be compared with one that fell or went past its peak's KL without falling.",
        ),
        ("table", ["algo", "beta", "pairs, small to large", "claim"], verdicts),
        (
            "p",
            f"The claim holds for {counts['holds']} of {len(claims)} (algo, beta) curves, fails for"
            f" {counts['fails']}, and is not judged for {counts['not judged']} (no pair decided).",
        ),
    ]
