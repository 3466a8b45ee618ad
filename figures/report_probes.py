"""The report's probes section (DIR/probes.json, `probes.tables`): per proxy the flagged global moves (the
proxy rises, the gold falls) with the gold term each hits, and the confusion fraction by proxy size."""

from __future__ import annotations

import math
from pathlib import Path

from core import safe_read
from core.errors import UsageError
from scaling.fmt import fmt_params


def _pm(v, se) -> str:
    if v is None or not math.isfinite(v):
        return "-"
    return f"{v:+.3g}" + (f" ± {se:.2g}" if se is not None and math.isfinite(se) else "")


def _proxy(r: dict) -> tuple:
    """(sort key, label) of a row's proxy: size, then data size, then replicate."""
    size = r.get("rm_params") or 0
    d, rep = r.get("data_size"), r.get("replicate")
    text = f"{r.get('rm_name', '?')} ({fmt_params(size)})" + (f", {int(d)} pairs" if d is not None else "")
    text += f", replicate {rep}" if rep is not None else ""
    return (size, d or 0, rep or 0), text


def probes_blocks(root: Path) -> list[tuple]:
    """Blocks (see figures.report.build) from DIR/probes.json; [] when it is absent or unreadable."""
    try:
        doc = safe_read.read_json(Path(root) / "probes.json")
    except (OSError, ValueError, UsageError):
        return []
    rows = doc.get("rows") or []
    moves = [r for r in rows if r.get("probe") == "move"]
    blocks: list[tuple] = [
        ("h2", "Probes (before RL)"),
        (
            "p",
            f"Global moves: each prompt-independent edit applied to {doc.get('per_prompt')} pool responses per "
            "prompt; mean change of the proxy (member 0) and of the gold, ± the standard error over prompts. "
            f"Flagged: Δproxy > {doc.get('flag_z')} SE and Δgold < 0, a direction RL can climb while the gold "
            "falls. 'hit': the gold term the move lowers most.",
        ),
    ]
    by_proxy: dict = {}
    for r in moves:
        key, text = _proxy(r)
        by_proxy.setdefault((key, text), []).append(r)
    table = []
    for (_, text), rs in sorted(by_proxy.items()):
        flagged = [r for r in rs if r.get("flagged")]
        if not flagged:
            table.append([text, "none flagged", "-", "-", "-"])
        for r in sorted(flagged, key=lambda r: -(r.get("d_proxy") or 0)):
            hit = r.get("hit")
            term = f"{hit} ({r.get(f'd_gold/{hit}'):+.3g})" if hit else "-"
            table.append(
                [text, r["move"], _pm(r.get("d_proxy"), r.get("d_proxy_se")), _pm(r["d_gold"], r["d_gold_se"]), term]
            )
    if table:
        blocks.append(("table", ["proxy", "flagged move", "Δproxy", "Δgold", "hit (Δ term)"], table))
    conf = sorted((r for r in rows if r.get("probe") == "confusion"), key=lambda r: (_proxy(r)[0], r["move"]))
    if conf:
        blocks.append(
            (
                "p",
                "Confusion: one correct response token (as the gold's task term counts it) replaced by a wrong "
                "symbol; the fraction of such pairs the proxy scores higher (ties half), mean over prompts ± SE. "
                "It should fall with size.",
            )
        )
        head = ["proxy", "group", "pairs", "prefers the wrong token"]
        body = [[_proxy(r)[1], r["move"], str(r["n"]), _pm(r.get("frac"), r.get("frac_se"))] for r in conf]
        blocks.append(("table", head, body))
    return blocks + _kl_split_blocks([r for r in rows if r.get("probe") == "kl_split"])


def _kl_split_blocks(rows: list[dict]) -> list[tuple]:
    """The KL split after RL (`probes.kl_split`): per proxy and KL coefficient, the mean over seeds."""
    if not rows:
        return []
    groups: dict = {}
    for r in rows:
        key, text = _proxy(r)
        groups.setdefault((key, text, r.get("kl_coef")), []).append(r)
    cols = ["total", "judged", "rest", "extra", "flatter", "bank", "eos"]
    body = []
    for (_, text, coef), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][2] or 0)):
        mean = [sum(float(r.get(c) or 0.0) for r in rs) / len(rs) for c in cols]
        body.append([text, f"{coef:g}", str(len(rs)), str(rs[0].get("step"))] + [f"{v:.3g}" for v in mean])
    return [
        ("h2", "KL split (after RL)"),
        (
            "p",
            "RL's KL (k1, nats, on fresh samples of each grid point's policy at its last checkpoint) divided by "
            "the tokens it is spent on: 'judged' = the task tokens the gold's task term compares with the target; "
            "'rest' = everything else (extra content, FLATTER, bank markers, EOS). Mean over seeds.",
        ),
        ("table", ["proxy", "kl_coef", "seeds", "step"] + cols, body),
    ]
