"""Gold against KL for several policy sizes, peaks marked (Gao et al. fig. 7)."""

from __future__ import annotations

from pathlib import Path

from figures.data import FigureData, main_slice, method_title, methods_in, need_variation
from figures.style import GOLD_LABEL, d_axis, draw_curves, save, size_colors, size_legend, subplots
from scaling.fmt import fmt_params

NAME = "policy_size"
TITLE = "Policy size"
CAPTION = (
    "Gold score against d = sqrt(KL) for each initial-policy size, with the largest proxy; stars mark"
    " the fitted peaks (observed maxima when unfitted); BoN left, RL right (Gao et al. 2022, fig. 7).\n"
    "Gao find larger policies start higher but over-optimize no less: the peak moves little with "
    "policy size."
)


def make(data: FigureData, out_dir: str | Path) -> list[Path]:
    """Arguments: data, out_dir. Returns: [png, pdf]. Skip: fewer than two policy sizes."""
    pts = data.points
    need_variation(pts, "policy_params", "policy-size")
    pts = main_slice(pts, keep=("policy_params",))
    methods = methods_in(pts)
    colors = size_colors(pts["policy_params"], palette="flare")
    fig, axes = subplots(len(methods))
    for ax, method in zip(axes[0], methods, strict=False):
        sub = pts[pts["method"] == method]
        title = method_title(method, data.points)
        if "rm_params" in sub.columns:
            sub = sub[sub["rm_params"] == sub["rm_params"].max()]
            title += f", proxy {fmt_params(sub['rm_params'].iloc[0])}"
        draw_curves(ax, sub, "policy_params", colors, data.fits["fits"], proxy=False, peak=True)
        ax.set_title(title)
        d_axis(ax)
        ax.set_ylabel(GOLD_LABEL if ax is axes[0][0] else "")
    size_legend(axes[0][-1], colors, title="policy params", loc="lower right")
    return save(fig, out_dir, NAME)
