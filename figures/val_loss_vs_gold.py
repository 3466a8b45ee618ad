"""Proxy validation loss against BoN gold at a fixed n (Gao et al. fig. 5)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from figures.data import FigureData, Skip
from figures.style import GOLD_LABEL, save, size_colors, size_legend, subplots
from scaling.fmt import fmt_params
from scaling.points import max_rule, single_objective

NAME = "val_loss_vs_gold"
TITLE = "Proxy validation loss against BoN gold"
CAPTION = (
    "BoN gold score at a fixed n against the proxy's validation loss, one marker per proxy, coloured "
    "by size, marker shape by data size (Gao et al. 2022, fig. 5).\n"
    "Lower validation loss should mean higher gold: validation loss predicts how well a proxy can be "
    "optimized."
)
TARGET_N = 64  # the n drawn: the one present in every proxy closest to this in log scale


def pick_n(ns_per_proxy: list[set]) -> int:
    """The n present for every proxy that is closest to TARGET_N in log scale."""
    common = set.intersection(*ns_per_proxy) if ns_per_proxy else set()
    if not common:
        raise Skip("no n shared by every proxy's BoN points")
    return int(min(common, key=lambda n: (abs(np.log(n) - np.log(TARGET_N)), -n)))


def make(data: FigureData, out_dir: str | Path) -> list[Path]:
    """Arguments: data, out_dir. Returns: [png, pdf]. Skip: no proxies.parquet with val_loss, or no BoN n."""
    prox = data.proxies
    if prox is None or "val_loss" not in prox.columns or prox["val_loss"].isna().all():
        raise Skip("no proxies.parquet with val_loss")
    pts = data.points
    bon = pts[(pts["method"] == "bon")] if "n" in pts.columns else pts.iloc[0:0]
    bon = max_rule(single_objective(bon))
    if bon.empty:
        raise Skip("no BoN points with n")
    # Join on the proxy's name when both tables carry it, else on its size and data size (seeds averaged).
    if "rm_name" in bon.columns and "rm_name" in prox.columns and bon["rm_name"].notna().any():
        keys = ["rm_name"]
    else:
        keys = [k for k in ("rm_params", "data_size") if k in bon.columns and k in prox.columns]
    if not keys:
        raise Skip("points and proxies share no proxy key (rm_name, rm_params)")
    n = pick_n([set(g["n"].dropna().astype(int)) for _, g in bon.groupby(keys)])
    gold = bon[bon["n"] == n].groupby(keys, as_index=False)["gold"].mean()
    extra = [c for c in ("rm_params", "data_size") if c in prox.columns and c not in keys]
    loss = prox.groupby(keys, as_index=False)[["val_loss", *extra]].mean()
    df = gold.merge(loss, on=keys)
    if df.empty:
        raise Skip("no proxy in proxies.parquet matches the BoN points")
    colors = size_colors(df["rm_params"]) if "rm_params" in df.columns else None
    fig, axes = subplots(1)
    ax = axes[0][0]
    marks = "osD^v<>"
    dsizes = sorted(df["data_size"].unique()) if "data_size" in df.columns else [None]
    for j, ds in enumerate(dsizes):
        sub = df if ds is None else df[df["data_size"] == ds]
        c = [colors[float(v)] for v in sub["rm_params"]] if colors else "C0"
        ax.scatter(
            sub["val_loss"],
            sub["gold"],
            c=c,
            marker=marks[j % len(marks)],
            s=30,
            edgecolor="black",
            linewidth=0.4,
        )
    ax.set_xlabel("proxy validation loss")
    ax.set_ylabel(f"{GOLD_LABEL}, BoN n={n}")
    ax.set_title(f"BoN gold at n = {n}")
    if colors:
        size_legend(ax, colors, loc="upper right")
    if dsizes != [None] and len(dsizes) > 1:
        from matplotlib.lines import Line2D  # matplotlib loads inside functions (figures/__init__.py)

        first = ax.get_legend()
        handles = [
            Line2D(
                [],
                [],
                ls="",
                marker=marks[j % len(marks)],
                color="0.5",
                mec="black",
                mew=0.4,
                label=f"{fmt_params(ds)} comparisons",
            )
            for j, ds in enumerate(dsizes)
        ]
        ax.legend(handles=handles, loc="lower left", fontsize=6)
        ax.add_artist(first)
    return save(fig, out_dir, NAME)
