"""The spread of each fitted coefficient across replicates (the whole study rerun with every seed derived
from K): what a verdict on one replicate is worth."""

from __future__ import annotations

import math

import numpy as np

from scaling.points import GROUP_COLS

COEFS = ("alpha", "beta")


def replicate_spread(fits: list[dict]) -> list[dict]:
    """One row per (group without its replicate, coefficient) fitted in two or more replicates.

    Arguments: fits, the `fits` rows of fit_table (each with a `replicate` key). Returns rows with the
    group's other keys, `coef`, `k` (replicates), `mean`, `sd` (ddof 1), `min`, `max` and `values`
    ({replicate: value}); [] when no group has two replicates.
    """
    groups: dict[tuple, list[dict]] = {}
    for row in fits:
        if row.get("replicate") is None or not row.get("converged"):
            continue
        key = tuple((c, row.get(c)) for c in GROUP_COLS if c != "replicate" and c in row)
        groups.setdefault(key, []).append(row)
    out = []
    for key, rows in groups.items():
        if len({r["replicate"] for r in rows}) < 2:
            continue
        rows = sorted(rows, key=lambda r: r["replicate"])
        for coef in COEFS:
            vals = {int(r["replicate"]): r[coef] for r in rows if isinstance(r.get(coef), (int, float))}
            if len(vals) < 2:
                continue
            v = np.array(list(vals.values()), float)
            sd = float(np.std(v, ddof=1))
            out.append(
                dict(key)
                | {
                    "coef": coef,
                    "k": len(v),
                    "mean": float(v.mean()),
                    "sd": sd if math.isfinite(sd) else None,
                    "min": float(v.min()),
                    "max": float(v.max()),
                    "values": {str(k): float(x) for k, x in vals.items()},
                }
            )
    return out


def checks_by_replicate(points, fits: dict, bon_prompts=None, proxies=None) -> dict[int, list[dict]]:
    """`gao_checks` on each replicate of a table alone: {K: checks}. Arguments: points (a `replicate`
    column), fits (fit_table output whose rows carry `replicate`), bon_prompts and proxies as in gao_checks
    (each filtered to the replicate when it has a `replicate` column)."""
    from scaling.criteria import gao_checks

    def mine(table, k):
        if table is None or "replicate" not in table.columns:
            return table
        return table[table["replicate"] == k]

    out = {}
    for k in sorted(int(v) for v in points["replicate"].dropna().unique()):
        own = {
            name: [r for r in fits.get(name, []) if r.get("replicate") == k] for name in ("fits", "scaling", "advance")
        }
        out[k] = gao_checks(points[points["replicate"] == k], own, mine(bon_prompts, k), mine(proxies, k))
    return out


def replicate_verdicts(by_rep: dict[int, list[dict]], calibration=()) -> list[dict]:
    """One row per check: how many replicates it passes, fails, or cannot judge, and each replicate's
    verdict ("K0* pass" marks a calibration replicate). Arguments: checks_by_replicate's output; the
    replicates the preset was calibrated on."""
    names = list(dict.fromkeys(c["check"] for checks in by_rep.values() for c in checks))
    word = {True: "pass", False: "FAIL", None: "n/a"}
    rows = []
    for name in names:
        verdicts = {k: next((c["passed"] for c in checks if c["check"] == name), None) for k, checks in by_rep.items()}
        held = [k for k in verdicts if k not in calibration]
        rows.append(
            {
                "check": name,
                "passes": (
                    f"{sum(v is True for v in verdicts.values())} of {len(verdicts)}"
                    if any(v is not None for v in verdicts.values())
                    else "not judged"
                ),
                "fails": sum(v is False for v in verdicts.values()),
                "not_judged": sum(v is None for v in verdicts.values()),
                "held_out_passes": f"{sum(verdicts[k] is True for k in held)} of {len(held)}",
                "replicates": ", ".join(
                    f"K{k}{'*' if k in calibration else ''} {word[v]}" for k, v in verdicts.items()
                ),
            }
        )
    return rows
