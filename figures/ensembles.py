"""Single proxy against ensemble objectives: mean, min, median, uncertainty-weighted (Coste et al. 2023)."""

from __future__ import annotations

from pathlib import Path

from figures.data import FigureData, Skip, curve, main_slice, method_title, methods_in
from figures.style import GOLD_LABEL, d_axis, save, subplots
from scaling.fmt import fmt_params
from scaling.points import SINGLE, is_single_objective

NAME = "ensembles"
TITLE = "Single proxy against ensemble objectives"
CAPTION = (
    "Gold score against d = sqrt(KL) when optimizing a single proxy or an ensemble objective (mean, "
    "min, median, uncertainty-weighted), one column per method, one row per proxy size (Coste et al. "
    "2023; not in Gao et al. 2022).\n"
    "Conservative objectives (min, uwo) should peak later and higher than a single proxy of the same "
    "size."
)
OBJECTIVE_COLORS = {SINGLE: "0.25", "mean": "C0", "min": "C3", "median": "C2", "uwo": "C4"}
MAX_ROWS = 3  # proxy sizes shown: the largest ones with ensembles


def make(data: FigureData, out_dir: str | Path) -> list[Path]:
    """Arguments: data, out_dir. Returns: [png, pdf]. Skip: no ensemble objective in the points."""
    pts = data.points
    if "objective" not in pts.columns:
        raise Skip("points have no objective column (no ensembles)")
    single = is_single_objective(pts["objective"])
    if single.all():
        raise Skip("no ensemble objective in the points (only single proxies)")
    pts = main_slice(pts.assign(objective=pts["objective"].mask(single, SINGLE)), keep=("objective",))
    ens = pts[pts["objective"] != SINGLE]
    methods = methods_in(ens)
    sizes = sorted(ens["rm_params"].unique())[-MAX_ROWS:] if "rm_params" in ens.columns else [None]
    fig, axes = subplots(len(methods), nrows=len(sizes), sharex="col")
    objectives = sorted(pts["objective"].unique(), key=lambda o: (o != SINGLE, o))
    for r, size in enumerate(sizes):
        for col, method in enumerate(methods):
            ax = axes[r][col]
            sub = pts[pts["method"] == method]
            if size is not None:
                sub = sub[sub["rm_params"] == size]
            for obj in objectives:
                g = sub[sub["objective"] == obj]
                if g.empty:
                    continue
                c = curve(g)
                color = OBJECTIVE_COLORS.get(obj, f"C{5 + objectives.index(obj) % 5}")
                ax.plot(
                    c["d"],
                    c["gold"],
                    "o-",
                    ms=2.5,
                    lw=1.5 if obj != SINGLE else 2.0,
                    color=color,
                    label=obj if obj == SINGLE else _ens_label(obj, g),
                )
            ax.axhline(0.0, color="0.6", lw=0.6, zorder=0)
            name = method_title(method, data.points)
            ax.set_title(f"{name}" + ("" if size is None else f", proxy {fmt_params(size)}"))
            d_axis(ax, kl_note=(r == 0))
            if r < len(sizes) - 1:
                ax.set_xlabel("")
            ax.set_ylabel(GOLD_LABEL if col == 0 else "")
            if ax.get_legend_handles_labels()[0]:
                ax.legend(loc="best", fontsize=6, title="objective")
    return save(fig, out_dir, NAME)


def _ens_label(obj: str, g) -> str:
    if "ensemble_size" in g.columns and g["ensemble_size"].notna().any():
        return f"{obj} (k={int(g['ensemble_size'].max())})"
    return obj
