"""The spread of each fitted coefficient across replicates (the whole study rerun with every seed derived
from K): what a verdict on one replicate is worth (the checks judged on each replicate: `criteria.replicates`)."""

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
