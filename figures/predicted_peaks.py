"""Peaks predicted by the fitted BoN law against the observed peaks (Gao et al. fig. 12)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from figures.data import FigureData, Skip, curve, fit_points
from figures.style import save, size_colors, size_legend, subplots
from scaling.fmt import fmt_params
from scaling.points import is_max_rule, max_rule, single_objective

NAME = "predicted_peaks"
TITLE = "Predicted against observed BoN peaks"
CAPTION = (
    "Peak gold score and its distance d* = sqrt(KL*) predicted by each fitted BoN law, against the "
    "observed maximum of the gold curve, one marker per fitted curve (Gao et al. 2022, fig. 12).\n"
    "Points on the diagonal mean the law locates the optimum; hollow markers are curves whose "
    "observed maximum is their last point (the peak not yet reached)."
)


def observed_peaks(data: FigureData) -> list[dict]:
    """Each BoN fit row with a peak: predicted and observed (d, gold) of the maximum; is it interior."""
    pts = data.points
    bon = max_rule(single_objective(pts[pts["method"] == "bon"]))
    rows = []
    for f in data.fits.get("fits", []):
        if f.get("method") != "bon" or not is_max_rule(f.get("rule")):
            continue
        if f.get("d_peak") is None or f.get("gold_peak") is None:
            continue
        sel = fit_points(bon, f)
        if sel.empty:
            continue
        c = curve(sel)
        i = int(np.nanargmax(c["gold"].to_numpy(float)))
        rows.append(
            dict(
                rm_params=f.get("rm_params"),
                pred_d=f["d_peak"],
                pred_gold=f["gold_peak"],
                obs_d=float(c["d"].iloc[i]),
                obs_gold=float(c["gold"].iloc[i]),
                interior=i < len(c) - 1,
            )
        )
    return rows


def make(data: FigureData, out_dir: str | Path) -> list[Path]:
    """Arguments: data, out_dir. Returns: [png, pdf]. Skip: no BoN fit with a peak."""
    rows = observed_peaks(data)
    if not rows:
        raise Skip("no fitted BoN law with a peak (beta_bon > 0)")
    colors = size_colors([r["rm_params"] for r in rows if r["rm_params"] is not None])
    fig, axes = subplots(2)
    for ax, (what, label) in zip(axes[0], (("gold", "peak gold score"), ("d", "peak d = sqrt(KL)")), strict=False):
        for r in rows:
            color = colors.get(float(r["rm_params"]), "C0") if r["rm_params"] is not None else "C0"
            ax.plot(
                r[f"pred_{what}"],
                r[f"obs_{what}"],
                "o",
                ms=6,
                mec=color,
                mew=1.2,
                color=color if r["interior"] else "none",
            )
        vals = [r[f"{k}_{what}"] for r in rows for k in ("pred", "obs")]
        lo, hi = min(min(vals), 0.0), max(vals) * 1.05
        ax.plot([lo, hi], [lo, hi], color="0.6", lw=0.8, zorder=0)
        ax.set_xlabel(f"predicted {label}")
        ax.set_ylabel(f"observed {label}")
        ax.set_title(label)
    if colors:
        size_legend(axes[0][0], colors, loc="lower right")
        for t, v in zip(axes[0][0].get_legend().get_texts(), colors, strict=False):
            t.set_text(fmt_params(v))
    return save(fig, out_dir, NAME)
