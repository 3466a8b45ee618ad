"""The look shared by every figure: seaborn theme, size palettes, the d = sqrt(KL) axis, atomic saving."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from core.store import atomic_write_bytes
from figures.data import CATEGORICAL, curve, curve_hue, curve_labels, group_cols, law_curve, match_fit
from scaling.fmt import fmt_params

DPI = 100
PANEL = (3.6, 2.9)  # inches per panel: small figures render fast and stay readable at dpi 100
SIZE_PALETTE = "viridis"  # sequential: colour encodes log proxy size, dark small, bright large
GOLD_LABEL = "gold score (recentred)"
SCORE_LABEL = "score (recentred)"
D_LABEL = r"$d=\sqrt{\mathrm{KL}}$ (nats$^{1/2}$)"


def apply_style() -> None:
    """Agg backend, seaborn whitegrid theme, paper context."""
    import matplotlib  # matplotlib loads inside functions (figures/__init__.py)

    matplotlib.use("Agg")
    import seaborn as sns  # matplotlib loads inside functions (figures/__init__.py)

    sns.set_theme(context="paper", style="whitegrid", font_scale=0.95)
    matplotlib.rcParams.update(
        {
            "figure.dpi": DPI,
            "savefig.dpi": DPI,
            "legend.fontsize": 7,
            "legend.title_fontsize": 7,
            "axes.titlesize": 9,
        }
    )


def subplots(ncols: int, nrows: int = 1, **kw):
    """A figure of `nrows x ncols` panels of PANEL size, constrained layout; axes always a 2-D array."""
    apply_style()
    import matplotlib.pyplot as plt  # matplotlib loads inside functions (figures/__init__.py)

    fig, axes = plt.subplots(
        nrows, ncols, figsize=(PANEL[0] * ncols, PANEL[1] * nrows), squeeze=False, layout="constrained", **kw
    )
    return fig, axes


def size_colors(values, palette: str = SIZE_PALETTE) -> dict:
    """{value: colour} with colour a sequential map of log(value) (one colour when there is one value)."""
    import matplotlib  # matplotlib loads inside functions (figures/__init__.py)

    vals = sorted({float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))})
    cmap = matplotlib.colormaps[palette]
    if len(vals) <= 1:
        return {v: cmap(0.45) for v in vals}
    lo, hi = math.log(vals[0]) if vals[0] > 0 else 0.0, math.log(vals[-1]) if vals[-1] > 0 else 1.0
    span = (hi - lo) or 1.0
    # Stop at 0.9: the palette's brightest yellow is unreadable on white.
    return {v: cmap(0.05 + 0.85 * ((math.log(v) if v > 0 else lo) - lo) / span) for v in vals}


def run_colors(labels) -> dict:
    """{run name: colour}, categorical (tab10, then tab20), in sorted order."""
    import matplotlib  # matplotlib loads inside functions (figures/__init__.py)

    names = sorted({str(v) for v in labels})
    cmap = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {n: cmap(i % cmap.N) for i, n in enumerate(names)}


def hue_colors(df) -> tuple[str | None, dict, str]:
    """(the column telling curves apart: `figures.data.curve_hue`, {value: colour}, the legend's title): runs and
    optimizers categorical, proxy sizes on the size palette; (None, {}, "") for one curve."""
    hue = curve_hue(df)
    if hue in CATEGORICAL:
        return hue, run_colors(curve_labels(df, hue)), hue
    if hue is None:
        return None, {}, ""
    return hue, size_colors(df[hue]), "proxy params"


def d_axis(ax, kl_note: bool = True) -> None:
    """Label the x-axis d = sqrt(KL), with KL in nats on a secondary top axis."""
    ax.set_xlabel(D_LABEL)
    ax.set_xlim(left=0)
    if kl_note:
        sec = ax.secondary_xaxis("top", functions=(lambda d: np.square(d), lambda kl: np.sqrt(np.clip(kl, 0, None))))
        sec.set_xlabel("KL (nats)", fontsize=7)
        sec.tick_params(labelsize=6)


def size_legend(ax, colors: dict, title: str = "proxy params", **kw) -> None:
    """A legend of colour lines labelled with sizes (1.2M), or with names (runs, optimizers), replacing any
    legend already on `ax`."""
    from matplotlib.lines import Line2D  # matplotlib loads inside functions (figures/__init__.py)

    sized = {v: fmt_params(v) if isinstance(v, (int, float, np.number)) else str(v) for v in colors}
    handles = [Line2D([], [], color=c, lw=2, label=sized[v]) for v, c in colors.items()]
    leg = ax.legend(handles=handles, title=title, loc=kw.pop("loc", "best"), frameon=True, **kw)
    leg.get_frame().set_alpha(0.85)


def style_legend(ax, entries: list[tuple[str, dict]], **kw):
    """A second legend of line styles (e.g. gold solid, proxy dashed) that does not replace the first."""
    from matplotlib.lines import Line2D  # matplotlib loads inside functions (figures/__init__.py)

    first = ax.get_legend()
    handles = [Line2D([], [], color="0.3", label=label, **style) for label, style in entries]
    leg = ax.legend(handles=handles, loc=kw.pop("loc", "upper left"), frameon=True, **kw)
    leg.get_frame().set_alpha(0.85)
    if first is not None:
        ax.add_artist(first)


def save(fig, out_dir: str | Path, name: str) -> list[Path]:
    """Write `name.png` and `name.pdf` atomically (render to memory, temp file, rename); close `fig`."""
    import matplotlib.pyplot as plt  # matplotlib loads inside functions (figures/__init__.py)

    out_dir = Path(out_dir)
    paths = []
    try:
        for ext in ("png", "pdf"):
            buf = io.BytesIO()
            fig.savefig(buf, format=ext, dpi=DPI)
            # Solve the constrained layout once (for the PNG), keep it for the PDF: same inches, less time.
            fig.set_layout_engine("none")
            path = out_dir / f"{name}.{ext}"
            atomic_write_bytes(path, buf.getvalue())
            paths.append(path)
    finally:
        plt.close(fig)
    return paths


def slice_key(df) -> dict:
    """{grouping column: its value} for every grouping column constant over `df` (NaN as None)."""
    key = {}
    for col in group_cols(df):
        vals = df[col].drop_duplicates()
        if len(vals) == 1:
            v = vals.iloc[0]
            key[col] = None if (isinstance(v, float) and math.isnan(v)) else (v.item() if hasattr(v, "item") else v)
    return key


def draw_curves(
    ax,
    df,
    hue: str,
    colors: dict,
    fits: list[dict],
    proxy: bool = True,
    peak: bool = False,
    label_fmt=fmt_params,
) -> int:
    """For each value of `hue`: gold as markers with its fitted law solid (a solid line when unfitted),
    proxy dashed; `peak` marks the fitted peak (or the observed maximum) with a star.

    Returns: the number of fitted laws drawn.
    """
    n_fit = 0
    for v, g in df.groupby(curve_labels(df, hue), sort=True):  # a run's label (not NaN) for rows without one
        c = curve(g)
        color = colors[float(v)] if isinstance(v, (int, float, np.number)) else colors[v]
        row = match_fit(fits, **slice_key(g))
        if row is not None and row.get("alpha") is not None:
            d = np.linspace(0.0, c["d"].max() * 1.05, 200)
            ax.plot(d, law_curve(row, d), color=color, lw=1.6)
            ax.plot(c["d"], c["gold"], "o", color=color, ms=3)
            n_fit += 1
        else:
            ax.plot(c["d"], c["gold"], "o-", color=color, ms=3, lw=1.4)
        if proxy and "proxy" in c and c["proxy"].notna().any():
            ax.plot(c["d"], c["proxy"], "--", color=color, lw=1.1, alpha=0.8)
        if peak:
            dp, gp = (row.get("d_peak"), row.get("gold_peak")) if row is not None else (None, None)
            if dp is None or gp is None or dp > c["d"].max() * 1.5:
                i = int(np.nanargmax(c["gold"].to_numpy(float)))
                dp, gp = c["d"].iloc[i], c["gold"].iloc[i]
            ax.plot([dp], [gp], "*", color=color, ms=11, mec="black", mew=0.6, zorder=5)
    ax.axhline(0.0, color="0.6", lw=0.6, zorder=0)
    return n_fit
