"""The report's lead section: the pooled verdict over replicates (DIR/verdict.json, `criteria.verdict`),
the held-out verdict first, the registration it was judged under and its history."""

from __future__ import annotations

from pathlib import Path

from core import safe_read
from core.errors import UsageError

WORD = {True: "pass", False: "FAIL", None: "n/a"}


def _num(v) -> str:
    if v is None:
        return "-"
    return v if isinstance(v, str) else f"{v:.3g}"


def _rows(claims: list[dict]) -> list[list[str]]:
    return [
        [
            c["claim"],
            c["test"],
            WORD[c["passed"]],
            _num(c.get("p")) if c.get("p") is not None else "-",
            "-" if not c.get("interval") else f"[{_num(c['interval'][0])}, {_num(c['interval'][1])}]",
            c["reason"],
        ]
        for c in claims
    ]


def verdict_blocks(root: Path) -> list[tuple]:
    """Blocks (see figures.report.build); [] when DIR/verdict.json is absent or unreadable."""
    try:
        v = safe_read.read_json(Path(root) / "verdict.json")
    except (OSError, ValueError, UsageError):
        return []
    calib = v.get("calibration_replicates") or []
    seen = v.get("registration", {}).get("held_out_seen_under_this_version") or []
    history = v.get("registration", {}).get("history") or []
    blocks: list[tuple] = [
        ("h2", "Verdict: Gao et al.'s claims pooled over replicates"),
        (
            "p",
            f"Criteria version {v.get('criteria_version')} (criteria/registered.toml, sha256"
            f" {str(v.get('criteria_sha256'))[:12]}...); replicates {v.get('replicates')}, calibration"
            f" {calib or 'none'}, held out {v.get('held_out_replicates') or 'none'}. Each claim is one pooled test"
            " with a known false-positive rate (docs/CRITERIA.md); n/a: the data cannot decide it.",
        ),
    ]
    if len(history) > 1:
        blocks.append(
            (
                "p",
                "Registration history (a margin changed after a held-out replicate was seen makes a new version): "
                + "; ".join(f"v{h['version']} ({h.get('date')}): {h.get('note')}" for h in history),
            )
        )
    if seen:
        blocks.append(("p", f"Held-out replicates already judged under this version: {seen}."))
    head = ["claim", "test", "verdict", "p", "interval", "reason"]
    for key, title in (("held_out", "held-out replicates"), ("all", "every replicate, calibration ones included")):
        part = (v.get("verdicts") or {}).get(key)
        if not part:
            continue
        n_pass = sum(c["passed"] is True for c in part["claims"])
        n_fail = sum(c["passed"] is False for c in part["claims"])
        blocks.append(("p", f"Over {title} {part['replicates_used']}: {n_pass} claims pass, {n_fail} fail."))
        blocks.append(("table", head, _rows(part["claims"])))
    return blocks
