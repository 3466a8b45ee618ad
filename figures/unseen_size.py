"""Each law coefficient against proxy size with its OLS line in log10 params (95% confidence band) and the
leave-one-size-out prediction of every size (95% prediction interval): scaling.unseen_size drawn. With several
replicates the line and the predictions pool them (a size is left out of every replicate at once); the table
`scaling.unseen_size.unseen_size_table` judges each replicate alone."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from figures.data import FigureData, Skip
from figures.style import save, subplots
from scaling.unseen_size import COEFS, MIN_SIZES, coef_table, fit_line, leave_one_out

NAME = "unseen_size"
TITLE = "Predicting an unseen proxy size"
CAPTION = (
    "alpha and beta of both laws against proxy parameters (log x-axis; replicates K as their own markers), the "
    "OLS line in log10 params on all sizes with its 95% confidence band, and each size predicted from the others"
    " (open diamonds, 95% prediction interval; several replicates are pooled, a size left out of all).\n"
    "Gao et al. 2022 (fig. 3) find the coefficients smooth in log params, so a left-out size is predictable; a "
    "fitted coefficient outside its prediction interval is off-trend."
)

_OFFSET = 1.15  # the prediction is drawn this factor right of its size, beside the fitted coefficient


def _panel(ax, sub, method: str, coef: str, colors: dict) -> bool:
    """One coefficient's panel; False (with a note) when it has fewer than MIN_SIZES sizes."""
    ax.set_title(f"{coef}_{method}")
    ax.set_xscale("log")
    ax.set_xlabel("proxy parameters")
    if sub["rm_params"].nunique() < MIN_SIZES:
        note = f"fewer than {MIN_SIZES} {method} sizes fitted"
        ax.text(0.5, 0.5, note, ha="center", va="center", transform=ax.transAxes, color="0.4")
        return False
    x = np.log10(sub["rm_params"].to_numpy(float))
    y = sub[coef].to_numpy(float)
    line = fit_line(x, y)
    grid = np.linspace(x.min() - 0.15, x.max() + 0.15, 60)
    lo, hi = line.ci(grid)
    ax.fill_between(10**grid, lo, hi, color="0.5", alpha=0.2, lw=0, label="95% CI of the line")
    ax.plot(10**grid, line(grid), "-", color="0.25", lw=1.0, label="OLS in log10 params, all sizes")
    ax.set_title(f"{coef}_{method}: slope/decade {line.slope:.3g}")
    for rep, g in sub.groupby("replicate", dropna=False, sort=True):
        key = None if isinstance(rep, float) and math.isnan(rep) else rep
        label = "fitted" if len(colors) == 1 else f"fitted, K={int(key)}"
        ax.plot(g["rm_params"], g[coef], "o", color=colors[key], ms=4, label=label)
    preds = leave_one_out(x, y)
    px = np.array([10 ** p["x"] * _OFFSET for p in preds])
    py = np.array([p["pred"] for p in preds])
    err = np.array([[p["pred"] - p["pi"][0], p["pi"][1] - p["pred"]] if p["pi"] else [0.0, 0.0] for p in preds]).T
    ax.errorbar(px, py, yerr=err, fmt="D", mfc="white", color="C3", ms=4, capsize=2, lw=0.8, label="left out: 95% PI")
    return True


def make(data: FigureData, out_dir: str | Path) -> list[Path]:
    """Arguments: data, out_dir. Returns: [png, pdf]. Skip: no method has 3 fitted proxy sizes on the ladder
    (one proxy, max rule, largest data size and policy, RL at its smallest kl_coef)."""
    coefs = coef_table(data.points, data.fits)
    counts = coefs.groupby("method")["rm_params"].nunique() if len(coefs) else None
    if counts is None or counts.max() < MIN_SIZES:
        raise Skip(f"fewer than {MIN_SIZES} proxy sizes fitted on the ladder (no unseen size to predict)")
    reps = [None if isinstance(r, float) and math.isnan(r) else r for r in coefs["replicate"].drop_duplicates()]
    colors = {r: f"C{i % 10}" for i, r in enumerate(sorted(reps, key=lambda r: -1 if r is None else r))}
    fig, axes = subplots(2, 2)
    for ax, (method, coef) in zip(axes.flat, COEFS, strict=True):
        sub = coefs[coefs["method"] == method]
        if _panel(ax, sub, method, coef, colors) and ax is axes.flat[0]:
            ax.legend(loc="best", fontsize=6)
    for ax in axes[:, 0]:
        ax.set_ylabel("coefficient")
    return save(fig, out_dir, NAME)
