"""The checks judged on each replicate alone (`checks_by_replicate`), and on how many replicates each
passes (`replicate_verdicts`; calibration replicates marked): criteria_replicates.json."""

from __future__ import annotations

from criteria import gao_checks


def checks_by_replicate(points, fits: dict, bon_prompts=None, proxies=None) -> dict[int, list[dict]]:
    """`gao_checks` on each replicate of a table alone: {K: checks}. Arguments: points (a `replicate`
    column), fits (fit_table output whose rows carry `replicate`), bon_prompts and proxies as in gao_checks
    (each filtered to the replicate when it has a `replicate` column)."""

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
