"""Extrapolation: the laws fitted on low KL only, drawn across the whole KL range (Gao et al. fig. 26)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from figures.data import (
    CATEGORICAL,
    FigureData,
    Skip,
    curve,
    curve_labels,
    lstsq_fit,
    main_slice,
    match_fit,
    method_title,
    methods_in,
)
from figures.style import (
    GOLD_LABEL,
    d_axis,
    hue_colors,
    save,
    size_legend,
    slice_key,
    style_legend,
    subplots,
)
from scaling.laws import DEFAULT_LAW, LAWS

NAME = "extrapolation"
TITLE = "Extrapolating the laws from low KL"
CAPTION = (
    "Each law fitted only on the points left of the dotted line (fits.json advance rows when present, "
    "else a least-squares fit on d below half the largest d; filled markers) and drawn dashed over "
    "the whole range, against the held-out points (hollow) (Gao et al. 2022, fig. 26).\n"
    "Where the dashed curve follows the hollow points, the law predicts over-optimization before it "
    "happens."
)
FRACTION = 0.5  # fit on d <= FRACTION * max d
MIN_POINTS = 3


def make(data: FigureData, out_dir: str | Path) -> list[Path]:
    """Arguments: data, out_dir. Returns: [png, pdf]. Skip: no curve with MIN_POINTS low-KL points."""
    pts = main_slice(data.points)
    methods = [m for m in methods_in(pts) if m in DEFAULT_LAW]
    hue, colors, title = hue_colors(pts)  # trainer runs: one curve a run, never pooled
    panels = []
    for method in methods:
        sub = pts[pts["method"] == method]
        law = DEFAULT_LAW[method]
        curves = []
        for v, g in sub.groupby(curve_labels(sub, hue)) if hue else [(None, sub)]:
            c = curve(g)
            # Prefer the fitter's advance-prediction row (fit_table(d_cut=...)); else refit at FRACTION.
            adv = match_fit(data.fits.get("advance") or [], **slice_key(g))
            if adv is not None and adv.get("alpha") is not None and adv.get("law") == law:
                curves.append((v, c, adv["d_cut"], (adv["alpha"], adv["beta"])))
                continue
            cut = FRACTION * c["d"].max()
            low = c[(c["d"] <= cut) & ((c["d"] > 0) if LAWS[law].drop_zero else True)]
            if len(low) >= MIN_POINTS:
                curves.append((v, c, cut, lstsq_fit(low["d"], low["gold"], law)))
        if curves:
            panels.append((method, law, curves))
    if not panels:
        raise Skip(f"no curve has {MIN_POINTS} points below half its largest d")
    fig, axes = subplots(len(panels))
    for ax, (method, law, curves) in zip(axes[0], panels, strict=False):
        for v, c, cut, (alpha, beta) in curves:
            color = "C0" if v is None else colors.get(v if hue in CATEGORICAL else float(v), "C0")
            fit_in = c["d"] <= cut
            ax.plot(c["d"][fit_in], c["gold"][fit_in], "o", color=color, ms=3.5)
            ax.plot(c["d"][~fit_in], c["gold"][~fit_in], "o", mfc="none", mec=color, ms=3.5)
            d = np.linspace(0, c["d"].max() * 1.05, 200)
            ax.plot(d, LAWS[law].fn(d, alpha, beta), "--", color=color, lw=1.3)
            ax.axvline(cut, color=color, ls=":", lw=0.8)
        ax.axhline(0.0, color="0.6", lw=0.6, zorder=0)
        ax.set_title(method_title(method, data.points) + f", {law} law")
        d_axis(ax)
        ax.set_ylabel(GOLD_LABEL if ax is axes[0][0] else "")
    if colors:
        size_legend(axes[0][-1], colors, title=title, loc="lower left")
    style_legend(
        axes[0][0],
        [
            ("fitted (low KL)", {"ls": "", "marker": "o"}),
            ("held out", {"ls": "", "marker": "o", "mfc": "none"}),
            ("low-KL law", {"ls": "--"}),
        ],
        loc="upper left",
        fontsize=6,
    )
    return save(fig, out_dir, NAME)
