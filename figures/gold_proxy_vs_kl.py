"""Gold and proxy score against d = sqrt(KL) for every proxy size, BoN beside RL (Gao et al. fig. 1)."""

from __future__ import annotations

from pathlib import Path

from figures.data import FigureData, Skip, main_slice
from figures.style import (
    SCORE_LABEL,
    d_axis,
    draw_curves,
    save,
    size_colors,
    size_legend,
    style_legend,
    subplots,
)

NAME = "gold_proxy_vs_kl"
TITLE = "Gold and proxy score against KL, by proxy size"
CAPTION = (
    "Gold (markers, fitted law solid) and proxy (dashed) score against d = sqrt(KL) for each proxy "
    "size; BoN left, RL right (Gao et al. 2022, fig. 1).\n"
    "Gold rising then falling while the proxy keeps rising is over-optimization; larger proxies "
    "should peak later and higher."
)


def make(data: FigureData, out_dir: str | Path) -> list[Path]:
    """Arguments: data, out_dir. Returns: [png, pdf]. Raises Skip when there are no BoN or RL points."""
    pts = main_slice(data.points)
    methods = [m for m in ("bon", "rl") if (pts["method"] == m).any()]
    methods += sorted(set(pts["method"]) - {"bon", "rl"})
    if not methods:
        raise Skip("no points")
    if "rm_params" not in pts.columns:
        raise Skip("points have no rm_params column")
    colors = size_colors(pts["rm_params"])
    fig, axes = subplots(len(methods), sharey=False)
    for ax, method in zip(axes[0], methods, strict=False):
        draw_curves(ax, pts[pts["method"] == method], "rm_params", colors, data.fits["fits"])
        ax.set_title({"bon": "best-of-n", "rl": "RL (PPO)"}.get(method, method))
        d_axis(ax)
        ax.set_ylabel(SCORE_LABEL if ax is axes[0][0] else "")
    size_legend(axes[0][-1], colors, loc="upper left", fontsize=6)
    style_legend(axes[0][0], [("gold (fit)", {"lw": 1.6}), ("proxy", {"ls": "--"})], loc="lower left")
    return save(fig, out_dir, NAME)
