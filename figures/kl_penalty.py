"""RL with several KL penalties: gold against KL, and KL over training (Gao et al. figs. 9, 14)."""

from __future__ import annotations

from pathlib import Path

from figures.data import FigureData, Skip, curve, main_slice, need_variation
from figures.style import GOLD_LABEL, d_axis, save, size_legend, subplots
from scaling.fmt import fmt_params

NAME = "kl_penalty"
TITLE = "KL penalty"
CAPTION = (
    "RL with several KL penalty coefficients for the largest proxy: gold against d = sqrt(KL) (left, "
    "Gao et al. 2022, fig. 9) and KL against training step (right, fig. 14); seeds pooled.\n"
    "A penalty slows the KL growth like early stopping, but should not move the gold-vs-KL frontier."
)


def kl_coef_colors(values) -> dict:
    """Sequential colours for KL coefficients (0 included, so spaced by rank rather than log)."""
    import matplotlib  # matplotlib loads inside functions (figures/__init__.py)

    vals = sorted({float(v) for v in values})
    cmap = matplotlib.colormaps["magma"]
    return {v: cmap(0.1 + 0.7 * i / max(len(vals) - 1, 1)) for i, v in enumerate(vals)}


def make(data: FigureData, out_dir: str | Path) -> list[Path]:
    """Arguments: data, out_dir. Returns: [png, pdf]. Skip: fewer than two kl_coef values among RL runs."""
    pts = data.points
    rl = pts[pts["method"] != "bon"]
    need_variation(rl, "kl_coef", "KL-penalty")
    rl = main_slice(rl[rl["kl_coef"].notna()], keep=("kl_coef",))
    if "rm_params" in rl.columns:
        rl = rl[rl["rm_params"] == rl["rm_params"].max()]
    if rl.empty:  # e.g. only direct alignment (no proxy): its kl_coef is its beta, not a penalty
        raise Skip("no RL run against a proxy at several KL coefficients")
    colors = kl_coef_colors(rl["kl_coef"])
    has_step = "step" in rl.columns and rl["step"].notna().any()
    fig, axes = subplots(2 if has_step else 1)
    ax = axes[0][0]
    for kc, g in rl.groupby("kl_coef"):
        c = curve(g)
        ax.plot(c["d"], c["gold"], "o-", color=colors[float(kc)], ms=2.5, lw=1.3)
        if has_step:
            axes[0][1].plot(c["step"], c["kl"], "-", color=colors[float(kc)], lw=1.5)
    ax.axhline(0.0, color="0.6", lw=0.6, zorder=0)
    d_axis(ax)
    ax.set_ylabel(GOLD_LABEL)
    proxy = f", proxy {fmt_params(rl['rm_params'].iloc[0])}" if "rm_params" in rl.columns else ""
    ax.set_title(f"gold against KL{proxy}")
    size_legend(ax, colors, title="KL coefficient", loc="lower right")
    # size_legend formats numbers as sizes; KL coefficients are plain numbers.
    for t, v in zip(ax.get_legend().get_texts(), colors, strict=False):
        t.set_text(f"{v:g}")
    if has_step:
        axes[0][1].set_xlabel("training step")
        axes[0][1].set_ylabel("KL (nats)")
        axes[0][1].set_title("KL over training")
    return save(fig, out_dir, NAME)
