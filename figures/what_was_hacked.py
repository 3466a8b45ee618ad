"""What was hacked: each gold component against KL for the most over-optimized run."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from figures.data import FigureData, Skip, most_overoptimized
from figures.style import d_axis, save, subplots
from scaling.fmt import fmt_params
from scaling.points import is_single_objective, max_rule

NAME = "what_was_hacked"
TITLE = "What was hacked"
CAPTION = (
    "Change of each named gold component (from the initial policy) against d = sqrt(KL) for the run "
    "whose gold falls most from its peak; total gold in black, proxy dashed (no Gao et al. 2022 "
    "counterpart: their gold was a single RM).\n"
    "A component that falls while the proxy rises is the feature the policy exploits (extremal "
    "Goodhart); a flat task component with a rising proxy is regressional Goodhart."
)


def components(df) -> list[str]:
    """The gold/<component> columns that vary, total score and standard errors (`gold/<c>_se`) excluded."""
    return [
        c
        for c in df.columns
        if c.startswith("gold/")
        and c != "gold/score"
        and not c.endswith("_se")
        and df[c].notna().any()
        and df[c].abs().max() > 0  # a component whose weight is 0 (e.g. the teacher) is identically 0
    ]


def make(data: FigureData, out_dir: str | Path) -> list[Path]:
    """Arguments: data, out_dir. Returns: [png, pdf]. Skip: no gold/<component> columns."""
    pts = max_rule(data.points)  # best-of-n's own curves (the other selection rules have their figure)
    comps = components(pts)
    if not comps:
        raise Skip("points have no gold/<component> columns")
    key, run = most_overoptimized(pts[pts[comps].notna().any(axis=1)])
    run = run.sort_values("kl")
    import seaborn as sns  # matplotlib loads inside functions (figures/__init__.py)

    d = np.sqrt(np.clip(run["kl"].to_numpy(float), 0, None))
    fig, axes = subplots(1)
    ax = axes[0][0]
    fig.set_size_inches(5.2, 3.3)
    palette = sns.color_palette("colorblind", len(comps))
    for color, comp in zip(palette, comps, strict=False):
        y = run[comp].to_numpy(float)
        ax.plot(d, y - y[0], "o-", color=color, ms=2.5, lw=1.3, label=comp.removeprefix("gold/"))
    gold = run["gold"].to_numpy(float)
    ax.plot(d, gold - gold[0], "-", color="black", lw=2.2, label="gold (total)")
    if "proxy" in run.columns and run["proxy"].notna().all():
        prox = run["proxy"].to_numpy(float)
        ax.plot(d, prox - prox[0], "--", color="0.35", lw=1.3, label="proxy")
    ax.axhline(0.0, color="0.6", lw=0.6, zorder=0)
    d_axis(ax)
    ax.set_ylabel("change from initial policy")
    ax.set_title(_describe(key), fontsize=7.5)
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=7, frameon=False)
    return save(fig, out_dir, NAME)


def _describe(key: dict) -> str:
    """A short title naming the run: method, proxy size, data size, KL coefficient, objective, seed."""
    parts = [str(key.get("method", "")).upper()]
    for col, label in (("rm_params", "proxy"), ("data_size", "data"), ("policy_params", "policy")):
        if key.get(col) is not None and key[col] == key[col]:
            parts.append(f"{label} {fmt_params(key[col])}")
    if key.get("kl_coef") is not None and key["kl_coef"] == key["kl_coef"]:
        parts.append(f"kl_coef {key['kl_coef']:g}")
    if not is_single_objective(key.get("objective")):
        parts.append(f"objective {key['objective']}")
    if key.get("seed") is not None and key["seed"] == key["seed"]:
        parts.append(f"seed {int(key['seed'])}")
    return "most over-optimized run: " + ", ".join(parts)
