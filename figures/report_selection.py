"""The report's selection-rule section (DIR/selection.json, `study.selection`) and its unseen-size
section (DIR/unseen_size.json, `scaling.unseen_size`)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd

from core import safe_read
from core.errors import UsageError
from scaling.fmt import fmt_params
from scaling.unseen_size import table_lines


def _g(v, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}g}"


def selection_blocks(root: Path) -> list[tuple]:
    """Blocks (see figures.report.build): rules' laws on kl_exact, the best rule at matched exact KL
    per proxy, and the best-n predictions. [] when DIR/selection.json is absent or unreadable."""
    path = Path(root) / "selection.json"
    try:
        sel = safe_read.read_json(path)
    except (OSError, ValueError, UsageError):
        return []
    blocks: list[tuple] = [
        ("h2", "Selection rules (KL: kl_exact)"),
        (
            "p",
            "Every rule on the same best-of-n pool, its KL exact against the pool's empirical distribution "
            "(best-of-n's too: the plug-in F^n - F-^n, not the bound). Laws fitted against sqrt(kl_exact).",
        ),
    ]
    fits = [f for f in sel.get("fits", []) if f.get("objective") in (None, "single")]
    if fits:
        head = ["rule", "proxy", "alpha", "beta", "R^2", "points"]
        rows = [
            [
                f.get("rule"),
                fmt_params(f["rm_params"]) if f.get("rm_params") is not None else "-",
                _g(f.get("alpha")),
                _g(f.get("beta")),
                _g(f.get("r2")),
                str(f.get("n_points", "-")),
            ]
            for f in sorted(fits, key=lambda f: (f.get("rm_params") or 0, str(f.get("rule"))))
        ]
        blocks.append(("table", head, rows))
    matched = [m for m in sel.get("matched_kl", []) if m.get("objective") in (None, "single")]
    if matched:
        by_proxy: dict = {}
        for m in matched:
            by_proxy.setdefault(m.get("rm_params"), []).append(m)
        rules = [r for r in ("max", "soft", "poisson", "regularized") if any(r in m for m in matched)]
        head = ["proxy", "KLs compared", "best rule (times)", *[f"gold at largest KL: {r}" for r in rules]]
        rows = []
        for size, ms in sorted(by_proxy.items(), key=lambda kv: kv[0] or 0):
            wins = Counter(m["best"] for m in ms).most_common()
            last = max(ms, key=lambda m: m["kl_exact"])
            rows.append(
                [
                    fmt_params(size) if size is not None else "-",
                    f"{len(ms)} in [{ms[0]['kl_exact']:.2g}, {last['kl_exact']:.2g}]",
                    ", ".join(f"{r} ({k})" for r, k in wins),
                    *[_g(last.get(r)) for r in rules],
                ]
            )
        blocks += [("p", "Gold at matched exact KL (interpolated in sqrt KL over the range every rule reaches):")]
        blocks.append(("table", head, rows))
    preds = [p for p in sel.get("best_n", []) if p.get("objective") in (None, "single")]
    if preds:
        size = preds[0].get("calibration_size")
        head = ["proxy", "rule", "predictor", "predicted", "oracle", "gold predicted", "gold oracle", "regret"]
        rows = [
            [
                fmt_params(p["rm_params"]) if p.get("rm_params") is not None else "-",
                p["rule"],
                p["predictor"],
                f"{p['param']} {_g(p['predicted'])}",
                _g(p["oracle"]),
                _g(p["predicted_gold"]),
                _g(p["oracle_gold"]),
                _g(p["regret"], 2),
            ]
            for p in preds
        ]
        blocks += [
            (
                "p",
                f"Best-n predictions from {size} gold labels per prompt (hedge: root of the calibration "
                "estimate's derivative; law: Gao's law fitted at small n) against the oracle (every label):",
            ),
            ("table", head, rows),
        ]
    return blocks


def unseen_size_blocks(root: Path) -> list[tuple]:
    """The unseen-size section from DIR/unseen_size.json (`scaling.unseen_size`); [] when absent or empty."""
    try:
        rows = safe_read.read_json(Path(root) / "unseen_size.json")["rows"]
    except (OSError, ValueError, KeyError, TypeError, UsageError):
        return []
    if not rows:
        return []
    lines = table_lines(pd.DataFrame(rows))
    head = [h.strip() for h in lines[0].strip("|").split("|")]
    body = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    text = (
        "Each proxy size left out in turn: its alpha and beta predicted by a line in log10 params through the "
        "other sizes (95% t prediction interval), and its gold curve by the law at those coefficients "
        "(RMSE over the curve's range, beside the size's own fit's)."
    )
    return [("h2", "Predicting an unseen proxy size"), ("p", text), ("table", head, body)]
