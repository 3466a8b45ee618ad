"""Selection rules on each proxy's pool: gold against exact KL for best-of-n, soft best-of-n,
Best-of-Poisson and regularized best-of-n, with each rule's fitted law (DIR/selection.json)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core import safe_read
from core.errors import UsageError
from figures.data import FigureData, Skip, law_curve
from figures.style import save, subplots
from scaling.fmt import fmt_params
from scaling.points import single_objective

NAME = "rules"
TITLE = "Selection rules at matched exact KL"
CAPTION = (
    "Gao et al. 2022's best-of-n curve (fig. 1) for every selection rule: gold score against the "
    "exact KL on the best-of-n pool (kl_exact: the "
    "selection's KL against the pool's empirical distribution, nats; for best-of-n the plug-in "
    "F^n - F-^n, not the bound log n - (n-1)/n), one panel per proxy; lines are each rule's law "
    "d (alpha - beta d) fitted against sqrt(kl_exact) (DIR/selection.json).\nBest-of-n's gold is the "
    "unbiased estimate; the other rules' golds are exact on the pool. Best-of-n ('max') over n, soft "
    "best-of-n over its temperature (n = the pool size), Best-of-Poisson over mu, regularized "
    "best-of-n over n at its beta."
)
RULE_STYLE = {
    "max": dict(color="k", marker="o"),
    "soft": dict(color="C0", marker="s"),
    "poisson": dict(color="C1", marker="^"),
    "regularized": dict(color="C2", marker="D"),
}


def rule_points(data: FigureData):
    """Single-objective best-of-n rows with `rule` (max where missing) and `kl_exact`; None without rules."""
    pts = data.points
    if "rule" not in pts.columns:
        return None
    bon = single_objective(pts[pts["method"] == "bon"])
    if "kl_exact" not in bon.columns:
        if "kl_est" not in bon.columns:
            return None
        bon = bon.assign(kl_exact=bon["kl_est"])
    return bon.assign(rule=bon["rule"].fillna("max")).dropna(subset=["kl_exact"])


def selection(data: FigureData) -> dict:
    path = None if data.root is None else Path(data.root) / "selection.json"
    if path is None or not path.exists():
        return {}
    try:
        return safe_read.read_json(path)
    except (OSError, ValueError, UsageError):
        return {}


def make(data: FigureData, out_dir: str | Path) -> list[Path]:
    """Arguments: data, out_dir. Returns: [png, pdf]. Skip: no selection-rule points."""
    bon = rule_points(data)
    if bon is None or bon["rule"].nunique() < 2:
        raise Skip("no selection-rule points (the study's `selection.rules` is empty, or an older store)")
    fits = [f for f in selection(data).get("fits", []) if f.get("alpha") is not None]
    keys = sorted(bon["rm_params"].dropna().unique()) if "rm_params" in bon.columns else [None]
    fig, axes = subplots(min(len(keys), 4), -(-len(keys) // 4))
    for ax in axes.ravel()[len(keys) :]:
        ax.set_visible(False)
    for ax, size in zip(axes.ravel(), keys, strict=False):
        sub = bon if size is None else bon[bon["rm_params"] == size]
        for rule, g in sub.groupby("rule"):
            style = RULE_STYLE.get(rule, dict(color="0.5", marker="x"))
            g = g.sort_values("kl_exact")
            d = np.sqrt(g["kl_exact"].to_numpy(float))
            ax.plot(d, g["gold"], ls="none", ms=3, label=rule, **style)
            fit = next((f for f in fits if f.get("rule") == rule and f.get("rm_params") == size), None)
            if fit is not None:
                dd = np.linspace(0, d.max(), 100)
                ax.plot(dd, law_curve(fit, dd), color=style["color"], lw=1)
        ax.set_xlabel("d = sqrt(kl_exact)")
        ax.set_ylabel("gold")
        ax.set_title("all" if size is None else f"proxy {fmt_params(size)}")
    axes.ravel()[0].legend(title="rule", fontsize=6)
    return save(fig, out_dir, NAME)
