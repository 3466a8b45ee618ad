"""Predicting the best n: each predictor's parameter and gold against the pool's own best (the oracle)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from figures.data import FigureData, Skip
from figures.rules import RULE_STYLE, selection
from figures.style import save, size_colors, subplots
from scaling.fmt import fmt_params

NAME = "best_n"
TITLE = "Predicted against realized best n"
CAPTION = (
    "Where gold peaks, predicted before over-optimizing (as Gao et al. 2022's fig. 12, per rule). "
    "Left: the parameter each predictor picks from a small gold-labelled calibration set (hedge: the "
    "root of the calibration estimate of d gold / d parameter; law: the peak of Gao's law fitted at "
    "small n), against the oracle's (the same root-finder with every pool label); n for best-of-n and "
    "regularized best-of-n, mu for Best-of-Poisson.\nRight: exact gold on the whole pool at the "
    "predicted parameter against the oracle's gold. Marker: rule (filled: hedge, hollow: law); colour: "
    "proxy size. DIR/selection.json holds the numbers."
)


def make(data: FigureData, out_dir: str | Path) -> list[Path]:
    """Arguments: data, out_dir. Returns: [png, pdf]. Skip: no best-n predictions."""
    rows = [r for r in selection(data).get("best_n", []) if r.get("objective") in (None, "single")]
    if not rows:
        raise Skip("no best-n predictions (DIR/selection.json has none)")
    colors = size_colors([r.get("rm_params") for r in rows])
    fig, axes = subplots(2)
    for r in rows:
        style = RULE_STYLE.get(r["rule"], dict(marker="x"))
        color = colors.get(float(r["rm_params"]), "C0") if r.get("rm_params") is not None else "C0"
        face = color if r["predictor"] == "hedge" else "none"
        kw = dict(marker=style["marker"], ms=5, mec=color, mfc=face, ls="none")
        axes[0][0].plot(r["oracle"], r["predicted"], **kw)
        axes[0][1].plot(r["oracle_gold"], r["predicted_gold"], **kw)
    vals = [v for r in rows for v in (r["oracle"], r["predicted"]) if v and v > 0]
    lo, hi = min(vals) / 1.5, max(vals) * 1.5
    axes[0][0].plot([lo, hi], [lo, hi], color="0.6", lw=0.8, zorder=0)
    axes[0][0].set_xscale("log")
    axes[0][0].set_yscale("log")
    axes[0][0].set_xlabel("oracle parameter (n or mu)")
    axes[0][0].set_ylabel("predicted parameter")
    g = [v for r in rows for v in (r["oracle_gold"], r["predicted_gold"])]
    lo, hi = float(np.min(g)), float(np.max(g))
    pad = 0.05 * (hi - lo or 1.0)
    axes[0][1].plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.6", lw=0.8, zorder=0)
    axes[0][1].set_xlabel("oracle gold")
    axes[0][1].set_ylabel("gold at the predicted parameter")
    handles = [
        axes[0][0].plot([], [], ls="none", marker=s["marker"], color="0.3", label=rule)[0]
        for rule, s in RULE_STYLE.items()
        if any(r["rule"] == rule for r in rows)
    ]
    handles += [
        axes[0][0].plot([], [], ls="none", marker="o", color=c, label=fmt_params(v))[0] for v, c in colors.items()
    ]
    axes[0][0].legend(handles=handles, fontsize=6)
    return save(fig, out_dir, NAME)
