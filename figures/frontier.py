"""Constrained PPO's frontier against the KL-penalty sweep's, for one proxy (issue 35, item 5; Moskovitz et al.
2023 against Gao et al. 2022, fig. 9).

Two families of PPO runs against the same proxy (the largest one constrained PPO ran against), single objective,
full-data proxy, the most common policy size:
  - the penalty sweep: PPO (`algo` ppo or missing) at each KL coefficient (`kl_coef`), the knob;
  - constrained PPO (`algo` ppo_constrained) at each proxy point (`constraint_threshold`), the knob, at its
    smallest `kl_coef`.
Each run (knob, seed) gives its end point (the last evaluation's KL, gold, proxy) and its peak (the largest gold
over its evaluations and the KL there). A family's frontier is its end points, one a knob, in order of KL: what
each setting delivers when training ends. `frontier_data` extracts them; `compare` asks where constrained PPO's
end points lie against the penalty sweep's frontier at the same KL (linear in d = sqrt(KL) between the penalty
sweep's end points, seed by seed; 95% t intervals over seeds)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from figures.data import FigureData, Skip
from figures.style import GOLD_LABEL, d_axis, save, subplots
from scaling.fmt import fmt_params
from scaling.points import is_single_objective

NAME = "frontier"
TITLE = "Constrained PPO against the KL-penalty sweep"
CAPTION = (
    "Constrained PPO at several proxy points against PPO at several KL coefficients, one proxy (Moskovitz et al."
    " 2023; Gao et al. 2022, fig. 9): each run's path thin, each setting's end point (mean over seeds, 95% t"
    " interval over seeds) joined into its family's frontier; gold against d = sqrt(KL) (left) and against the"
    " proxy (right).\nA frontier above the other reaches more gold at the same KL when training ends."
)
PENALTY, CONSTRAINED = "ppo", "ppo_constrained"
KNOB = {PENALTY: "kl_coef", CONSTRAINED: "constraint_threshold"}
LEVEL = 0.95


@dataclass(frozen=True)
class Frontier:
    """The two families' rows against one proxy and their runs' end points (`ends`: one row a (family, knob,
    seed): kl, gold, proxy at the last evaluation, gold_peak and kl_peak over the run)."""

    proxy: float | None
    rows: dict  # family -> its evaluation rows
    ends: pd.DataFrame


def _algo(df: pd.DataFrame) -> pd.Series:
    if "algo" not in df.columns:
        return pd.Series(PENALTY, index=df.index)
    return df["algo"].astype(object).where(df["algo"].notna(), PENALTY)


def frontier_data(points: pd.DataFrame) -> Frontier | None:
    """The two families against one proxy (module docstring), or None when either is missing."""
    pts = points[points["method"] == "rl"]
    if "constraint_threshold" not in pts.columns or "rm_params" not in pts.columns:
        return None
    if "policy_params" in pts.columns and pts["policy_params"].notna().any():
        pts = pts[pts["policy_params"].isna() | (pts["policy_params"] == pts["policy_params"].mode().iloc[0])]
    if "objective" in pts.columns:
        pts = pts[is_single_objective(pts["objective"])]
    algo = _algo(pts)
    con = pts[(algo == CONSTRAINED) & pts["constraint_threshold"].notna() & pts["rm_params"].notna()]
    if con.empty:
        return None
    proxy = float(con["rm_params"].max())
    pts, algo = pts[pts["rm_params"] == proxy], algo[pts["rm_params"] == proxy]
    if "data_size" in pts.columns and pts["data_size"].notna().any():
        full = pts["data_size"].isna() | (pts["data_size"] == pts["data_size"].max())
        pts, algo = pts[full], algo[full]
    rows = {PENALTY: pts[(algo == PENALTY) & pts["kl_coef"].notna()], CONSTRAINED: pts[algo == CONSTRAINED]}
    con = rows[CONSTRAINED]
    if con["kl_coef"].notna().any():
        rows[CONSTRAINED] = con[con["kl_coef"] == con["kl_coef"].min()]
    if rows[PENALTY].empty or rows[CONSTRAINED].empty:
        return None
    ends = [_ends(family, r) for family, r in rows.items()]
    return Frontier(proxy, rows, pd.concat(ends, ignore_index=True))


def _ends(family: str, rows: pd.DataFrame) -> pd.DataFrame:
    """One row a (knob, seed) run: its last evaluation's kl, gold, proxy and its peak gold and the KL there."""
    out = []
    seeds = rows["seed"] if "seed" in rows.columns else pd.Series(0, index=rows.index)
    for (knob, seed), run in rows.assign(seed=seeds).groupby([KNOB[family], "seed"]):
        run = run.sort_values("step")
        last, peak = run.iloc[-1], run.iloc[int(np.argmax(run["gold"].to_numpy(float)))]
        proxy = float(last["proxy"]) if "proxy" in run.columns else math.nan
        out.append(
            {
                "family": family,
                "knob": float(knob),
                "seed": int(seed),
                "kl": float(last["kl"]),
                "gold": float(last["gold"]),
                "proxy": proxy,
                "gold_peak": float(peak["gold"]),
                "kl_peak": float(peak["kl"]),
            }
        )
    return pd.DataFrame(out)


def t_interval(values, level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, low, high): the mean of `values` and its t interval over them; low and high NaN under 2 values."""
    v = np.asarray(values, dtype=float)
    m = float(v.mean()) if len(v) else math.nan
    if len(v) < 2:
        return m, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return m, m - half, m + half


def knob_table(ends: pd.DataFrame) -> pd.DataFrame:
    """Per (family, knob): seeds, mean kl and proxy at the end, gold at the end and its interval, peak gold and its
    interval, mean KL at the peak."""
    out = []
    for (family, knob), g in ends.groupby(["family", "knob"], sort=False):
        gold, gold_lo, gold_hi = t_interval(g["gold"])
        peak, peak_lo, peak_hi = t_interval(g["gold_peak"])
        out.append(
            {
                "family": family,
                "knob": knob,
                "seeds": len(g),
                "kl": g["kl"].mean(),
                "proxy": g["proxy"].mean(),
                "gold": gold,
                "gold_lo": gold_lo,
                "gold_hi": gold_hi,
                "gold_peak": peak,
                "peak_lo": peak_lo,
                "peak_hi": peak_hi,
                "kl_peak": g["kl_peak"].mean(),
            }
        )
    return pd.DataFrame(out)


def verdict(low: float, high: float) -> str:
    """above / below (the interval excludes 0), at (it holds 0), or "-" (no interval: one seed)."""
    if math.isnan(low) or math.isnan(high):
        return "-"
    return "above" if low > 0 else "below" if high < 0 else "at"


def compare(ends: pd.DataFrame) -> tuple[list[dict], dict]:
    """Constrained PPO's end points against the penalty sweep's frontier at the same KL, seed by seed (the seeds
    both families ran): delta = constrained gold - the penalty frontier's gold at that d = sqrt(KL), the frontier
    linear in d between the penalty sweep's end points of that seed. A proxy point whose end KL lies outside the
    penalty sweep's range for any seed is not compared (`in_range` False).
    Returns: (one dict a proxy point: knob, kl, gold, penalty_gold, delta, low, high, verdict, in_range;
    overall: the mean delta over the compared proxy points, per seed, then its interval and verdict)."""
    pen, con = ends[ends["family"] == PENALTY], ends[ends["family"] == CONSTRAINED]
    seeds = sorted(set(pen["seed"]) & set(con["seed"]))
    frontier = {}
    for s in seeds:
        p = pen[pen["seed"] == s].sort_values("kl")
        frontier[s] = (np.sqrt(np.clip(p["kl"].to_numpy(float), 0, None)), p["gold"].to_numpy(float))
    rows, per_seed = [], {s: [] for s in seeds}
    for knob, g in con[con["seed"].isin(seeds)].groupby("knob"):
        g = g.set_index("seed").loc[seeds]
        d = np.sqrt(np.clip(g["kl"].to_numpy(float), 0, None))
        inside = [frontier[s][0].min() <= x <= frontier[s][0].max() for s, x in zip(seeds, d)]
        row = {"knob": float(knob), "kl": float(g["kl"].mean()), "gold": float(g["gold"].mean())}
        row["in_range"] = all(inside)
        if all(inside):
            base = np.array([np.interp(x, *frontier[s]) for s, x in zip(seeds, d)])
            delta = g["gold"].to_numpy(float) - base
            for s, v in zip(seeds, delta):
                per_seed[s].append(v)
            m, lo, hi = t_interval(delta)
            row |= {"penalty_gold": float(base.mean()), "delta": m, "low": lo, "high": hi, "verdict": verdict(lo, hi)}
        rows.append(row)
    n = len(next(iter(per_seed.values()), []))
    overall = {"n_points": n, "seeds": len(seeds)}
    if n:
        m, lo, hi = t_interval([np.mean(v) for v in per_seed.values()])
        overall |= {"delta": m, "low": lo, "high": hi, "verdict": verdict(lo, hi)}
    return rows, overall


def best(table: pd.DataFrame, family: str, col: str = "gold") -> dict:
    """The family's knob with the largest mean `col` ("gold": at the end, "gold_peak": along the run)."""
    t = table[table["family"] == family]
    return t.loc[t[col].idxmax()].to_dict()


def make(data: FigureData, out_dir: str | Path) -> list[Path]:
    """Arguments: data, out_dir. Returns: [png, pdf]. Skip: no constrained PPO or no PPO against its proxy."""
    import matplotlib  # matplotlib loads inside functions (figures/__init__.py)

    fr = frontier_data(data.points)
    if fr is None:
        raise Skip("no constrained PPO with PPO against the same proxy (rl.algos ppo and ppo_constrained)")
    table = knob_table(fr.ends)
    fig, axes = subplots(2)
    colors = {PENALTY: matplotlib.colormaps["tab10"](0), CONSTRAINED: matplotlib.colormaps["tab10"](3)}
    names = {PENALTY: "PPO, KL penalty (end points by kl_coef)", CONSTRAINED: "constrained PPO (by proxy point)"}
    for family, rows in fr.rows.items():
        for _, run in rows.groupby([KNOB[family], "seed"] if "seed" in rows.columns else [KNOB[family]]):
            run = run.sort_values("step")
            d = np.sqrt(np.clip(run["kl"].to_numpy(float), 0, None))
            axes[0][0].plot(d, run["gold"], "-", color=colors[family], lw=0.4, alpha=0.35)
            if "proxy" in run.columns:
                axes[0][1].plot(run["proxy"], run["gold"], "-", color=colors[family], lw=0.4, alpha=0.35)
        t = table[table["family"] == family].sort_values("kl")
        d = np.sqrt(np.clip(t["kl"].to_numpy(float), 0, None))
        err = np.vstack([t["gold"] - t["gold_lo"], t["gold_hi"] - t["gold"]])
        err = None if np.isnan(err).all() else np.nan_to_num(err)
        axes[0][0].errorbar(d, t["gold"], yerr=err, fmt="o-", color=colors[family], ms=3, lw=1.5, label=names[family])
        for x, y, k in zip(d, t["gold"], t["knob"]):
            axes[0][0].annotate(f"{k:g}", (x, y), fontsize=5, xytext=(2, 2), textcoords="offset points")
        axes[0][1].errorbar(t["proxy"], t["gold"], yerr=err, fmt="o-", color=colors[family], ms=3, lw=1.5)
    for ax in axes[0]:
        ax.axhline(0.0, color="0.6", lw=0.6, zorder=0)
        ax.set_ylabel(GOLD_LABEL)
    d_axis(axes[0][0])
    proxy = f", proxy {fmt_params(fr.proxy)}" if fr.proxy is not None else ""
    axes[0][0].set_title(f"gold against KL{proxy}")
    axes[0][0].legend(fontsize=5, loc="lower left")
    axes[0][1].set_xlabel("proxy score")
    axes[0][1].set_title("gold against proxy")
    return save(fig, out_dir, NAME)
