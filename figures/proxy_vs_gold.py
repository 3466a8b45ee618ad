"""Proxy score against gold score along optimization, BoN and RL (Gao et al. fig. 8)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from figures.data import CATEGORICAL, FigureData, Skip, curve, curve_labels, main_slice, method_title, methods_in
from figures.style import hue_colors, save, size_legend, subplots

NAME = "proxy_vs_gold"
TITLE = "Proxy against gold score"
CAPTION = (
    "Proxy score against gold score along each optimization path, one line per proxy size (arrows "
    "point to more KL); the grey diagonal is proxy = gold; BoN left, RL right (Gao et al. 2022, fig. "
    "8).\n"
    "The gap between a line and the diagonal is what the proxy over-promises; it widens as "
    "optimization goes on."
)


def make(data: FigureData, out_dir: str | Path) -> list[Path]:
    """Arguments: data, out_dir. Returns: [png, pdf]. Skip: no proxy column."""
    pts = main_slice(data.points)
    if "proxy" not in pts.columns or pts["proxy"].isna().all():
        raise Skip("points have no proxy scores")
    pts = pts[pts["proxy"].notna()]
    methods = methods_in(pts)
    hue, colors, title = hue_colors(pts)  # trainer runs: one curve a run, never pooled
    fig, axes = subplots(len(methods))
    for ax, method in zip(axes[0], methods, strict=False):
        sub = pts[pts["method"] == method]
        for v, g in sub.groupby(curve_labels(sub, hue)) if hue else [(None, sub)]:
            c = curve(g)
            color = "C0" if hue is None else colors[v] if hue in CATEGORICAL else colors[float(v)]
            ax.plot(c["gold"], c["proxy"], "o-", color=color, ms=2.5, lw=1.2)
            if len(c) >= 2:  # direction of optimization
                ax.annotate(
                    "",
                    xy=(c["gold"].iloc[-1], c["proxy"].iloc[-1]),
                    xytext=(c["gold"].iloc[-2], c["proxy"].iloc[-2]),
                    arrowprops=dict(arrowstyle="->", color=color, lw=1.2),
                )
        lo = float(np.nanmin([sub["gold"].min(), sub["proxy"].min(), 0.0]))
        hi = float(np.nanmax([sub["gold"].max(), sub["proxy"].max()]))
        ax.plot([lo, hi], [lo, hi], color="0.6", lw=0.8, zorder=0)
        ax.set_title(method_title(method, data.points))
        ax.set_xlabel("gold score (recentred)")
        ax.set_ylabel("proxy score (recentred)" if ax is axes[0][0] else "")
    if hue:
        size_legend(axes[0][-1], colors, title=title, loc="lower right")
    return save(fig, out_dir, NAME)
