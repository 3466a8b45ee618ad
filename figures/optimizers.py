"""Every optimizer's gold-versus-KL curve against one proxy on one axis (issue 35): best-of-n, PPO, PPO with
each ensemble objective, constrained PPO, GRPO, and the direct methods (DPO, IPO, SLiC; no proxy: every beta).

`variants(points, proxy)` gives the curves (one per optimizer variant; the report's section reuses it)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from figures.data import FigureData, Skip, curve
from figures.style import GOLD_LABEL, d_axis, save, subplots
from scaling.fmt import fmt_params
from scaling.points import is_max_rule, is_single_objective

NAME = "optimizers"
TITLE = "Every optimizer on one axis"
CAPTION = (
    "Gao et al. 2022's gold against d = sqrt(KL) (fig. 1) for every optimizer against one proxy (the largest one"
    " RL optimized), seeds pooled:"
    " best-of-n, PPO and its ensemble objectives, constrained PPO, GRPO at their smallest KL coefficient; DPO,"
    " IPO and SLiC (no proxy: each beta a thin line, the smallest bold).\n"
    "KL is not comparable across optimizers as a cost: each spends it differently (best-of-n's is an analytic"
    " bound, RL's a sampled k1 estimate, the direct methods' drift comes from offline data); compare shapes."
)
DIRECT = ("dpo", "ipo", "slic")


def _algo(df: pd.DataFrame) -> pd.Series:
    if "algo" not in df.columns:
        return pd.Series("ppo", index=df.index)
    return df["algo"].astype(object).where(df["algo"].notna(), "ppo")


def variants(points: pd.DataFrame) -> tuple[float | None, list[tuple[str, pd.DataFrame]]]:
    """(the proxy's rm_params, [(variant label, its rows)]): the largest proxy an RM-based RL optimizer ran
    against; best-of-n (max rule, single objective) and each RL (algo, objective) at its smallest kl_coef against
    it; each direct algo's rows (every beta). Policy size: the most common one."""
    pts = points
    if "policy_params" in pts.columns and pts["policy_params"].notna().any():
        pts = pts[pts["policy_params"].isna() | (pts["policy_params"] == pts["policy_params"].mode().iloc[0])]
    algo = _algo(pts)
    objective = pts["objective"] if "objective" in pts.columns else pd.Series(None, index=pts.index)
    rl = (pts["method"] == "rl") & ~algo.isin(DIRECT)
    sized = pts["rm_params"].notna() if "rm_params" in pts.columns else pd.Series(False, index=pts.index)
    proxy = float(pts.loc[rl & sized, "rm_params"].max()) if (rl & sized).any() else None
    out = []
    on_proxy = sized & (pts["rm_params"] == proxy) if proxy is not None else sized & False
    if "data_size" in pts.columns and on_proxy.any():
        full = pts.loc[on_proxy, "data_size"].max()
        on_proxy &= pts["data_size"].isna() | (pts["data_size"] == full)
    bon = on_proxy & (pts["method"] == "bon") & is_single_objective(objective)
    if "rule" in pts.columns:
        bon &= is_max_rule(pts["rule"])
    if bon.any():
        out.append(("best-of-n", pts[bon]))
    keys = sorted(
        {(a, o if isinstance(o, str) else "single") for a, o in zip(algo[rl & on_proxy], objective[rl & on_proxy])},
        key=lambda k: (k[0], k[1] != "single", k[1]),  # each algo's single proxy first
    )
    for a, o in keys:
        rows = pts[rl & on_proxy & (algo == a) & (objective.fillna("single") == o)]
        if "kl_coef" in rows.columns and rows["kl_coef"].notna().any():
            rows = rows[rows["kl_coef"] == rows["kl_coef"].min()]
        label = a if o == "single" else f"{a} ({o})"
        theta = rows["constraint_threshold"] if "constraint_threshold" in rows.columns else None
        if theta is not None and theta.nunique() > 1:  # constrained PPO at several proxy points: one curve each
            out += [(f"{label} (proxy <= {t:g})", rows[theta == t]) for t in sorted(theta.dropna().unique())]
            continue
        out.append((label, rows))
    for a in DIRECT:
        rows = pts[(pts["method"] == "rl") & (algo == a)]
        if len(rows):
            out.append((a, rows))
    return proxy, out


def make(data: FigureData, out_dir: str | Path) -> list[Path]:
    """Arguments: data, out_dir. Returns: [png, pdf]. Skip: fewer than two optimizers in the points."""
    import matplotlib  # matplotlib loads inside functions (figures/__init__.py)

    proxy, curves = variants(data.points)
    if len(curves) < 2:
        raise Skip("fewer than two optimizers in the points (turn more on with rl.algos / rl.objectives)")
    cmap = matplotlib.colormaps["tab10" if len(curves) <= 10 else "tab20"]
    fig, axes = subplots(1)
    ax = axes[0][0]
    for i, (label, rows) in enumerate(curves):
        color = cmap(i % cmap.N)
        if label in DIRECT:
            betas = sorted(rows["beta_dpo"].dropna().unique()) if "beta_dpo" in rows.columns else [None]
            for j, b in enumerate(betas):
                sub = rows if b is None else rows[rows["beta_dpo"] == b]
                c = curve(sub, x="step")
                ax.plot(c["d"], c["gold"], "-", color=color, lw=1.6 if j == 0 else 0.7, label=label if j == 0 else None)
            continue
        c = curve(rows)
        ax.plot(c["d"], c["gold"], "o-", color=color, ms=2.0, lw=1.3, label=label)
    ax.axhline(0.0, color="0.6", lw=0.6, zorder=0)
    d_axis(ax)
    ax.set_ylabel(GOLD_LABEL)
    ax.set_title("every optimizer" + (f", proxy {fmt_params(proxy)}" if proxy is not None else ""))
    ax.legend(fontsize=5, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)  # outside: curves overlap
    return save(fig, out_dir, NAME)
