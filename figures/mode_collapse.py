"""Mode collapse during RL: entropy, distinct-2, self-BLEU and length against KL."""

from __future__ import annotations

from pathlib import Path

from figures.data import FigureData, Skip, curve, main_slice
from figures.style import d_axis, save, size_colors, size_legend, subplots

NAME = "mode_collapse"
TITLE = "Mode collapse"
CAPTION = (
    "Policy entropy, distinct-2, self-BLEU and response length of RL samples against d = sqrt(KL), "
    "one line per proxy size (no Gao et al. 2022 counterpart; their fig. 1 stops at gold and proxy "
    "scores).\n"
    "Falling entropy and distinct-2 with rising self-BLEU mean the policy collapses onto few "
    "responses as it over-optimizes."
)
EVAL_COLS = {
    "entropy": "entropy (nats/token)",
    "distinct_2": "distinct-2",
    "self_bleu": "self-BLEU",
    "length": "response length (tokens)",
}


def make(data: FigureData, out_dir: str | Path) -> list[Path]:
    """Arguments: data, out_dir. Returns: [png, pdf]. Skip: no RL evaluation columns."""
    pts = main_slice(data.points)
    rl = pts[pts["method"] != "bon"]
    cols = [c for c in EVAL_COLS if c in rl.columns and rl[c].notna().any()]
    if rl.empty or not cols:
        raise Skip(f"no RL evaluation columns ({', '.join(EVAL_COLS)})")
    hue = "rm_params" if "rm_params" in rl.columns else None
    colors = size_colors(rl[hue]) if hue else {}
    fig, axes = subplots(len(cols))
    for ax, col in zip(axes[0], cols, strict=False):
        for v, g in rl[rl[col].notna()].groupby(hue) if hue else [(None, rl)]:
            c = curve(g)
            ax.plot(c["d"], c[col], "o-", ms=2.5, lw=1.3, color=colors.get(float(v), "C0") if hue else "C0")
        ax.set_title(EVAL_COLS[col])
        ax.set_ylabel("")
        d_axis(ax)
    if colors:
        size_legend(axes[0][-1], colors, loc="best")
    return save(fig, out_dir, NAME)
