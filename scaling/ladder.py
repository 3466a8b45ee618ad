"""The proxy ladder: the slice of a points table and its fits that the criteria (`criteria`) judge and the
unseen-size prediction (`scaling.unseen_size`) leaves one size out of.

The ladder's rows are the single-objective points (best-of-n: the max rule's), the largest data size of each
method and the largest policy; RL at the smallest kl_coef. "Curve": best-of-n's mean over prompts at each n
(`bon_curves`); RL's mean over seeds at each evaluation, the steps every seed evaluated (`rl_curve`).
`build_ladder(points, fits)` gathers them into a `Ladder`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from scaling.points import is_max_rule, is_ppo_algo, is_single_objective, max_rule, ppo_algo, single_objective


def ladder(points: pd.DataFrame) -> pd.DataFrame:
    """The ladder's rows: objective single, best-of-n's max rule, RL's PPO, the largest data size of each
    method, the largest policy."""
    p = ppo_algo(max_rule(single_objective(points)))
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


def fit_rows(rows: list[dict], method: str, lad: pd.DataFrame, kl_coef=None) -> dict:
    """{rm_params: row} of fits (or advance) rows of the ladder's groups of `method` (at `kl_coef`)."""
    sub = lad[lad["method"] == method]
    want = {}
    for col in ("data_size", "policy_params"):
        if col in sub.columns and sub[col].notna().any():
            want[col] = float(sub[col].iloc[0])
    out = {}
    for r in rows:
        if r.get("method") != method or r.get("rm_params") is None:
            continue
        if not is_single_objective(r.get("objective")) or not is_max_rule(r.get("rule")):
            continue
        if not is_ppo_algo(r.get("algo")):
            continue
        if any(r.get(c) is None or float(r[c]) != v for c, v in want.items()):
            continue
        if kl_coef is not None and r.get("kl_coef") is not None and float(r["kl_coef"]) != kl_coef:
            continue
        out[float(r["rm_params"])] = r
    return out


def bon_curves(lad: pd.DataFrame) -> dict:
    """{rm_params: (kl, gold, gold_se)} of the ladder's BoN points (mean over duplicate KLs), KL order."""
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


def common_steps(rl: pd.DataFrame) -> pd.DataFrame:
    """The rows of the steps every seed evaluated (all rows without `step` or `seed`)."""
    if "step" not in rl.columns or "seed" not in rl.columns or rl["seed"].nunique(dropna=False) < 2:
        return rl
    per_seed = [set(s) for _, s in rl.groupby("seed", dropna=False)["step"]]
    return rl[rl["step"].isin(set.intersection(*per_seed))]


def rl_curve(rl: pd.DataFrame) -> dict:
    """One proxy's RL curve: the mean over seeds at each evaluation (steps every seed evaluated; by `kl`
    without a `step` column), in step order. Returns {kl, gold, se, k}: se the SE over seeds
    (sd ddof 1 / sqrt(k); with one seed the evaluation batch's `gold_eval_se` when present, else NaN)."""
    rl = common_steps(rl)
    key = "step" if "step" in rl.columns and rl["step"].notna().all() else "kl"
    g = rl.groupby(key, sort=True)
    k = int(rl["seed"].nunique(dropna=False)) if "seed" in rl.columns else 1
    kl = g["kl"].mean().to_numpy(float)
    gold = g["gold"].mean().to_numpy(float)
    if k >= 2:
        se = (g["gold"].std(ddof=1) / math.sqrt(k)).to_numpy(float)
    elif "gold_eval_se" in rl.columns:
        se = g["gold_eval_se"].mean().to_numpy(float)
    else:
        se = np.full(len(kl), np.nan)
    return {"kl": kl, "gold": gold, "se": se, "k": k}


@dataclass
class Ladder:
    """The data every check reads: the ladder's rows and curves, fits, and what else was given."""

    lad: pd.DataFrame
    sizes: list[float]  # every proxy size of the ladder (BoN or RL)
    kc: float  # the smallest KL coefficient (the RL checks' runs)
    kl_coefs: list[float]
    bon: dict  # bon_curves
    rl: dict  # {rm_params: rl_curve} at kc
    rl_sizes: list[float]
    bon_fits: dict
    rl_fits: dict
    fits: dict  # fit_table's output
    prompts: pd.DataFrame | None = None  # the ladder's per-prompt best-of-n rows
    proxies: pd.DataFrame | None = None

    @staticmethod
    def half(sizes: list[float]) -> list[float]:
        """The smaller half: the ceil(n/2) smallest sizes."""
        return sorted(sizes)[: math.ceil(len(sizes) / 2)]


def build_ladder(points: pd.DataFrame, fits: dict, bon_prompts=None, proxies=None) -> Ladder | None:
    """The ladder's data (a `Ladder`), None with fewer than 2 proxy sizes."""
    lad = ladder(points)
    sizes = sorted({float(s) for s in lad["rm_params"].unique()}) if len(lad) else []
    if len(sizes) < 2:
        return None
    rl_all = lad[lad["method"] == "rl"]
    kl_coefs = sorted(float(c) for c in rl_all["kl_coef"].fillna(0.0).unique()) if "kl_coef" in lad.columns else []
    kl_coefs = kl_coefs or [0.0]
    kc = kl_coefs[0]
    rl = rl_rows(lad, kc)
    curves = {float(s): rl_curve(sub) for s, sub in rl.groupby("rm_params", sort=True)}
    prompts = None
    if bon_prompts is not None and len(bon_prompts):
        prompts = ladder(bon_prompts)
        prompts = prompts[prompts["method"] == "bon"] if "method" in prompts.columns else prompts
    rows = fits.get("fits", [])
    return Ladder(
        lad=lad,
        sizes=sizes,
        kc=kc,
        kl_coefs=kl_coefs,
        bon=bon_curves(lad),
        rl=curves,
        rl_sizes=sorted(curves),
        bon_fits=fit_rows(rows, "bon", lad),
        rl_fits=fit_rows(rows, "rl", lad, kl_coef=kc),
        fits=fits,
        prompts=prompts,
        proxies=proxies,
    )
