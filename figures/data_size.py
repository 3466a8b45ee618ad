"""Gold curves across data sizes and the law coefficients against data size (Gao et al. figs. 4, 17, 18)."""

from __future__ import annotations

from pathlib import Path

from figures.coef_vs_rm_size import PANELS, draw_coefs
from figures.data import FigureData, main_slice, need_variation
from figures.style import GOLD_LABEL, d_axis, draw_curves, save, size_colors, size_legend, subplots
from scaling.fmt import fmt_params

NAME = "data_size"
TITLE = "Effect of proxy training data size"
CAPTION = (
    "Left: BoN gold against d = sqrt(KL) for the largest proxy trained on each data size (Gao et al. "
    "2022, fig. 4); right: alpha_bon, beta_bon, beta_rl against data size, one colour per proxy size "
    "(figs. 17, 18).\n"
    "More comparisons should raise and delay the gold peak, as a larger proxy does."
)


def make(data: FigureData, out_dir: str | Path) -> list[Path]:
    """Arguments: data, out_dir. Returns: [png, pdf]. Skip: fewer than two data sizes."""
    pts = data.points
    need_variation(pts, "data_size", "data-size")
    pts = main_slice(pts, keep=("data_size",))
    bon = pts[pts["method"] == "bon"]
    fig, axes = subplots(1 + len(PANELS))
    ax = axes[0][0]
    if not bon.empty and "rm_params" in bon.columns:
        bon = bon[bon["rm_params"] == bon["rm_params"].max()]
        colors = size_colors(bon["data_size"], palette="crest")
        draw_curves(ax, bon, "data_size", colors, data.fits["fits"], proxy=False)
        size_legend(ax, colors, title="comparisons", loc="lower right")
        ax.set_title(f"BoN, largest proxy ({fmt_params(bon['rm_params'].iloc[0])} params)")
    else:
        ax.text(0.5, 0.5, "no BoN points", ha="center", va="center", transform=ax.transAxes, color="0.4")
    d_axis(ax)
    ax.set_ylabel(GOLD_LABEL)
    fits = data.fits.get("fits", [])
    hue_vals = [f["rm_params"] for f in fits if f.get("rm_params") is not None]
    draw_coefs(
        axes[0][1:],
        fits,
        data.fits.get("scaling", []),
        "data_size",
        hue="rm_params",
        colors=size_colors(hue_vals),
    )
    return save(fig, out_dir, NAME)
