"""alpha_bon, beta_bon, beta_rl against proxy parameters, with the coefficient-scaling fit (Gao fig. 3)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from figures.data import FigureData, Skip
from figures.style import save, subplots
from scaling.coef_scaling import SCALING_FIELDS
from scaling.fmt import fmt_params
from scaling.points import GROUP_COLS, max_rule, ppo_algo, single_objective

NAME = "coef_vs_rm_size"
TITLE = "Law coefficients against proxy size"
CAPTION = (
    "Fitted alpha_bon, beta_bon and beta_rl (95% intervals) against proxy parameters, log "
    "x-axis, with the linear-in-log(params) scaling fit (Gao et al. 2022, fig. 3); replicates (K) "
    "overlaid in their own colours when there are several.\n"
    "Gao find alpha_bon rising and beta_bon, beta_rl falling smoothly with size; proxies at chance "
    "sit off-trend."
)

PANELS = (("bon", "alpha"), ("bon", "beta"), ("rl", "beta"))
# Defaults that pick the main study out of a sweep's fit rows (see figures.data.main_slice).
_FIXED = (("data_size", "max"), ("kl_coef", "min"), ("policy_params", "mode"))


def fit_frame(fits: list[dict], x: str) -> pd.DataFrame:
    """Fit rows as a frame, restricted to single proxies, best-of-n's max rule, RL's PPO and to the main study on
    every grouping column except `x`."""
    df = pd.DataFrame(fits)
    if df.empty or x not in df.columns:
        return df
    df = ppo_algo(max_rule(single_objective(df)))
    for col, pick in _FIXED:
        if col == x or col not in df.columns:
            continue
        for method in df["method"].unique():
            m = df["method"] == method
            vals = df.loc[m, col].dropna()
            if vals.empty:
                continue
            v = {"max": vals.max(), "min": vals.min(), "mode": vals.mode().iloc[0]}[pick]
            df = df[~m | df[col].isna() | (df[col] == v)]
    return df


def _same(a, b) -> bool:
    na, nb = a is None or a != a, b is None or b != b  # None or NaN
    if na or nb:
        return na and nb
    return bool(np.isclose(float(a), float(b))) if not isinstance(a, str) else a == b


def scaling_line(scaling: list[dict], method: str, coef: str, x: str, xs, fixed: dict):
    """The coefficient-scaling fit (scaling.coef_scaling: coef = intercept + sum_j slope_j log10 size_j, one row
    per size column that varies) at sizes `xs` of `x`, the other sizes and context keys from `fixed`.

    Returns: (values, the row of `x`), or None when fits.json has no such fit or `fixed` lacks a size.
    """
    rows = [r for r in scaling if r.get("method") == method and r.get("coef") == coef]
    rows = [r for r in rows if all(_same(v, fixed.get(k)) for k, v in r.items() if k not in SCALING_FIELDS)]
    own = [r for r in rows if r.get("x") == x]
    if not own or own[0].get("slope") is None or own[0].get("intercept") is None:
        return None
    # Rows of one joint fit share the intercept: those are the other sizes' terms.
    joint = [r for r in rows if r.get("x") != x and _same(r.get("intercept"), own[0]["intercept"])]
    y = own[0]["intercept"] + own[0]["slope"] * np.log10(np.asarray(xs, float))
    for r in joint:
        v = fixed.get(r["x"])
        if v is None or r.get("slope") is None or not v > 0:
            return None
        y = y + r["slope"] * np.log10(float(v))
    return y, own[0]


def draw_coefs(axes, fits: list[dict], scaling: list[dict], x: str, hue: str | None = None, colors=None) -> int:
    """One panel per (method, coef) of PANELS: points with interval bars, the scaling fit when present.

    Returns: the number of panels with at least one point.
    """
    df = fit_frame(fits, x)
    filled = 0
    for i, (ax, (method, coef)) in enumerate(zip(axes, PANELS, strict=False)):
        ax.set_title(f"{coef}_{method}")
        ax.set_xscale("log")
        ax.set_xlabel({"rm_params": "proxy parameters", "data_size": "comparisons (data size)"}.get(x, x))
        sub = df[(df["method"] == method)] if not df.empty and x in df.columns else df.iloc[0:0]
        sub = sub[sub[coef].notna()] if not sub.empty else sub
        if sub.empty:
            ax.text(0.5, 0.5, f"no {method} fits", ha="center", va="center", transform=ax.transAxes, color="0.4")
            continue
        filled += 1
        groups = [(None, sub)] if hue is None or hue not in sub.columns else list(sub.groupby(hue))
        for hv, g in groups:
            g = g.sort_values(x)
            color = "C0" if hv is None else colors[float(hv)]
            ci = np.array(
                [
                    c if isinstance(c, (list, tuple)) and None not in c else [v, v]
                    for c, v in zip(g.get(f"{coef}_ci", [None] * len(g)), g[coef], strict=False)
                ],
                float,
            )
            yerr = np.abs(np.stack([g[coef].to_numpy(float) - ci[:, 0], ci[:, 1] - g[coef].to_numpy(float)]))
            fixed = {c: g[c].iloc[0] for c in GROUP_COLS if c in g and c != x and g[c].nunique(dropna=False) == 1}
            xs = np.geomspace(sub[x].min() / 1.3, sub[x].max() * 1.3, 50)
            line = scaling_line(scaling, method, coef, x, xs, fixed)
            # Hue entries are labelled on the first panel only: one legend of sizes is enough.
            ax.errorbar(
                g[x],
                g[coef],
                yerr=yerr,
                fmt="o" if hv is None or line else "o-",
                color=color,
                ms=4,
                capsize=2,
                lw=0.8,
                label=None if hv is None or i > 0 else (f"K={int(hv)}" if hue == "replicate" else fmt_params(hv)),
            )
            if line is not None:
                ci = line[1].get("slope_ci") or [math.nan, math.nan]
                label = f"slope/decade {line[1]['slope']:.3g} [{_f(ci[0])}, {_f(ci[1])}]"
                ax.plot(
                    xs,
                    line[0],
                    "-",
                    color="0.25" if hv is None else color,
                    lw=1.0,
                    label=label if hv is None else None,
                )
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=6)
    return filled


def _f(v) -> str:
    return "?" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2g}"


def make(data: FigureData, out_dir: str | Path) -> list[Path]:
    """Arguments: data, out_dir. Returns: [png, pdf]. Skip: no fits, or fewer than two proxy sizes fitted."""
    fits = data.fits.get("fits", [])
    df = fit_frame(fits, "rm_params")
    if df.empty or "rm_params" not in df.columns:
        raise Skip("no fitted laws (fits.json absent or empty)")
    if df["rm_params"].nunique() < 2:
        raise Skip("fewer than two proxy sizes fitted")
    fig, axes = subplots(len(PANELS))
    hue, colors = None, None
    if "replicate" in df.columns and df["replicate"].nunique() > 1:  # replicates overlaid, one colour each
        hue = "replicate"
        colors = {float(k): f"C{i % 10}" for i, k in enumerate(sorted(df["replicate"].dropna().unique()))}
    draw_coefs(axes[0], fits, data.fits.get("scaling", []), "rm_params", hue=hue, colors=colors)
    axes[0][0].set_ylabel("coefficient")
    return save(fig, out_dir, NAME)
