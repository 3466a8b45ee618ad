"""Gold and proxy score against d = sqrt(KL) for every proxy size, BoN beside RL (Gao et al. fig. 1)."""

from __future__ import annotations

from pathlib import Path

from figures.data import CATEGORICAL, FigureData, Skip, curve, curve_labels, main_slice, method_title, methods_in
from figures.style import (
    SCORE_LABEL,
    d_axis,
    draw_curves,
    hue_colors,
    save,
    size_legend,
    style_legend,
    subplots,
)

NAME = "gold_proxy_vs_kl"
TITLE = "Gold and proxy score against KL, by proxy size"
CAPTION = (
    "Gold (markers, fitted law solid; left axis) and proxy (dashed; right axis, its own units) score "
    "against d = sqrt(KL) for each proxy size (for trainer runs: each run, never pooled); BoN left (KL: the "
    "analytic bound log n - (n-1)/n), RL right "
    "(KL: the policy's sampled KL to the initial policy) (Gao et al. 2022, fig. 1).\n"
    "Gold rising then falling while the proxy keeps rising is over-optimization; larger proxies "
    "should peak later and higher."
)


def make(data: FigureData, out_dir: str | Path) -> list[Path]:
    """Arguments: data, out_dir. Returns: [png, pdf]. Raises Skip when there are no BoN or RL points."""
    pts = main_slice(data.points)
    methods = methods_in(pts)
    if not methods:
        raise Skip("no points")
    hue, colors, title = hue_colors(pts)  # trainer runs: one curve a run, never pooled
    if hue is None:
        raise Skip("points have no rm_params column (and no trainer runs)")
    fig, axes = subplots(len(methods), sharey=False)
    for ax, method in zip(axes[0], methods, strict=False):
        sub = pts[pts["method"] == method]
        draw_curves(ax, sub, hue, colors, data.fits["fits"], proxy=False)
        # proxy scores are in the proxy's own units (often far larger than gold): their own axis
        if "proxy" in sub.columns and sub["proxy"].notna().any():
            twin = ax.twinx()
            for v, g in sub.groupby(curve_labels(sub, hue), sort=True):
                c = curve(g)
                color = colors[v] if hue in CATEGORICAL else colors[float(v)]
                twin.plot(c["d"], c["proxy"], "--", color=color, lw=1.1, alpha=0.8)
            twin.set_ylabel("proxy score (recentred, dashed)", fontsize=7)
            twin.tick_params(labelsize=7)
            twin.grid(False)
        ax.set_title(method_title(method, data.points))
        d_axis(ax)
        ax.set_ylabel(SCORE_LABEL + " (gold)" if ax is axes[0][0] else "")
    size_legend(axes[0][-1], colors, title=title, loc="upper left", fontsize=6)
    style_legend(axes[0][0], [("gold (fit)", {"lw": 1.6}), ("proxy", {"ls": "--"})], loc="lower left")
    return save(fig, out_dir, NAME)
