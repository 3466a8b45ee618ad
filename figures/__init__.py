"""Figures of the over-optimization literature, regenerated from stored runs; and the report.

One module a figure. Each exposes `NAME`, `TITLE`, `CAPTION` (two lines, naming the Gao et al. 2022 figure)
and `make(data, out_dir) -> list[Path]` (a PNG and a PDF), raising `figures.data.Skip(reason)` when the runs
it needs are absent. `render_all` runs them and writes a manifest the report reads.
Matplotlib is imported inside functions so that `overopt --help` stays fast.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from core import safe_read
from core.errors import UsageError
from core.store import atomic_write_json
from figures.data import Skip
from figures.style import apply_style

# Figure name -> module, in the report's order (Gao et al. 2022 figure numbers in each module's caption).
FIGURES: dict[str, str] = {
    "gold_proxy_vs_kl": "figures.gold_proxy_vs_kl",
    "coef_vs_rm_size": "figures.coef_vs_rm_size",
    "unseen_size": "figures.unseen_size",
    "data_size": "figures.data_size",
    "val_loss_vs_gold": "figures.val_loss_vs_gold",
    "policy_size": "figures.policy_size",
    "proxy_vs_gold": "figures.proxy_vs_gold",
    "kl_penalty": "figures.kl_penalty",
    "predicted_peaks": "figures.predicted_peaks",
    "extrapolation": "figures.extrapolation",
    "what_was_hacked": "figures.what_was_hacked",
    "ensembles": "figures.ensembles",
    "mode_collapse": "figures.mode_collapse",
    "rules": "figures.rules",
    "best_n": "figures.best_n",
    "optimizers": "figures.optimizers",
    "frontier": "figures.frontier",
}

MANIFEST = "figures.json"


def figure_module(name: str):
    """The module of figure `name` (a key of FIGURES)."""
    return importlib.import_module(FIGURES[name])


def render_all(data, out_dir: str | Path, only: list[str] | None = None) -> dict[str, dict]:
    """Render the figures `only` names (all when None) into `out_dir`; write `out_dir/figures.json`.

    Arguments: data (figures.data.FigureData), out_dir, only (names; unknown names raise UsageError).
    Returns: {name: {"title", "caption", "files": [str], "skip": reason | None}} for the figures rendered.
    """
    names = list(FIGURES) if only is None else list(only)
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        raise UsageError(f"unknown figure name(s) {', '.join(unknown)}; known: {', '.join(FIGURES)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    apply_style()
    # Keep entries of figures not re-rendered this time (a partial --only run).
    manifest_path = out_dir / MANIFEST
    manifest = safe_read.read_json(manifest_path) if manifest_path.exists() else {}
    results = {}
    for name in names:
        mod = figure_module(name)
        try:
            res = mod.make(data, out_dir)
        except Skip as s:
            res = s
        entry = {"title": mod.TITLE, "caption": mod.CAPTION, "files": [], "skip": None}
        if isinstance(res, Skip):
            entry["skip"] = res.reason
            for ext in ("png", "pdf"):  # a stale figure from an earlier run would contradict the skip
                (out_dir / f"{name}.{ext}").unlink(missing_ok=True)
        else:
            entry["files"] = [Path(p).name for p in res]
        results[name] = entry
        manifest[name] = entry
    atomic_write_json(manifest_path, {k: manifest[k] for k in FIGURES if k in manifest})
    return results
