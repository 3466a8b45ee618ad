"""The report's learned-gold section (DIR/gold.json, written by the study's "gold" stage with gold.kind =
learned): the learned gold's size and its agreement with the hand-written preference on held-out pairs of its
training distribution and on off-distribution pairs."""

from __future__ import annotations

from pathlib import Path

from core import safe_read
from core.errors import UsageError


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _corr(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def gold_blocks(root: Path) -> list[tuple]:
    """Blocks (see figures.report.build); [] when DIR/gold.json is absent or unreadable (a formula gold)."""
    try:
        g = safe_read.read_json(Path(root) / "gold.json")
    except (OSError, ValueError, UsageError):
        return []
    m, noise = g["model"], g["label_noise"]
    rows = [["held out (its training distribution)", _pct(g["heldout"]["agreement"]), str(g["heldout"]["n"])]]
    rows[0].append(_corr(g["heldout"]["corr"]))
    for name, a in g["off_distribution"].items():
        rows.append([f"off distribution: {name}", _pct(a["agreement"]), str(a["n"]), _corr(a["corr"])])
    return [
        ("h2", "Learned gold"),
        (
            "p",
            f"The gold is a {m['n_layer']}x{m['d_model']} transformer reward model ({g['params']} parameters) trained "
            f"with Bradley-Terry on {g['n_train']} pairs labelled by the hand-written gold ({noise['mode']} labels, "
            f"{_pct(noise['flip_frac'])} flipped; {_pct(g['labels_agree_with_formula'])} of its training labels agree "
            "with the formula), over initial, hotter and edited responses. Its score is on the formula's scale; "
            "gold/learned_residual is its score minus the formula's. Agreement: the fraction of pairs it orders as "
            "the formula does (the formula's ties left out); corr: Pearson of the two scores.",
        ),
        ("table", ["pairs", "agreement", "n", "corr"], rows),
    ]
