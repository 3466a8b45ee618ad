"""verdict.json: Gao et al.'s claims judged once over replicates, with the pre-registered tests of
docs/CRITERIA.md (`criteria.registered`), instead of a conjunction of checks on each replicate alone.

`verdict(points, fits, bon_prompts, proxies, calibration)` returns
{criteria_version, criteria_sha256, registration, replicates, calibration_replicates, held_out_replicates,
 primary, claims, verdicts: {held_out, all}}:
- `verdicts.held_out`: the claims over the replicates not in calibration_replicates (None when every
  replicate is a calibration one); `verdicts.all`: over every replicate, calibration ones included
  (seen: not an independent test of the calibrated world).
- `claims` is the primary verdict's list: held_out's when there is a held-out replicate, else all's
  (`primary` says which). Each claim: {claim, test, statistic, p, interval, replicates_used, passed
  (True | False | None = n/a), reason, ...}.
"""

from __future__ import annotations

import pandas as pd

from criteria.pooled_curves import (
    advance_entry,
    kl_efficiency_entry,
    overopt_entry,
    penalty_entry,
    r2_entry,
    resolved_entry,
    rl_peak_kl_entry,
)
from criteria.pooled_trends import (
    alpha_rl_entry,
    best_gold_entry,
    data_size_entry,
    floor_entry,
    frame_by_rep,
    peak_later_entry,
    slope_entry,
    val_loss_entry,
)
from criteria.registered import Registered, load
from scaling.ladder import build_ladder

FIT_GROUPS = ("fits", "scaling", "advance")


def replicates_of(points: pd.DataFrame) -> list[int]:
    """The table's replicates ([0] without a `replicate` column: one study as replicate 0)."""
    if "replicate" not in points.columns:
        return [0]
    return sorted(int(v) for v in points["replicate"].dropna().unique())


def ladders_by_replicate(points, fits: dict, bon_prompts=None, proxies=None) -> tuple[dict, dict]:
    """({K: Ladder}, {K: the replicate's points}); a replicate with fewer than 2 proxy sizes has no ladder."""
    ladders, pts = {}, {}
    for k in replicates_of(points):
        mine = points if "replicate" not in points.columns else points[points["replicate"] == k]
        own = {g: [r for r in fits.get(g, []) if r.get("replicate", k) == k] for g in FIT_GROUPS}
        L = build_ladder(mine, own, frame_by_rep(bon_prompts, k), frame_by_rep(proxies, k))
        pts[k] = mine
        if L is not None:
            ladders[k] = L
    return ladders, pts


def claims(ladders: dict, points_by_rep: dict, reg: Registered) -> list[dict]:
    """Every claim of docs/CRITERIA.md over the given replicates' ladders."""
    return [
        floor_entry(ladders, reg),
        r2_entry(ladders, reg, "bon"),
        r2_entry(ladders, reg, "rl"),
        advance_entry(ladders, reg, "bon"),
        advance_entry(ladders, reg, "rl"),
        resolved_entry(ladders, reg),
        overopt_entry(ladders, reg, "bon"),
        overopt_entry(ladders, reg, "rl"),
        best_gold_entry(ladders, reg),
        peak_later_entry(ladders, reg),
        val_loss_entry(ladders, reg),
        data_size_entry(points_by_rep, reg),
        slope_entry(ladders, reg, "bon", "alpha", +1),
        slope_entry(ladders, reg, "bon", "beta", -1),
        slope_entry(ladders, reg, "rl", "beta", -1),
        alpha_rl_entry(ladders, reg),
        kl_efficiency_entry(ladders, reg),
        rl_peak_kl_entry(ladders, reg),
        penalty_entry(ladders, reg),
    ]


def verdict(points, fits: dict, bon_prompts=None, proxies=None, calibration=(), reg: Registered | None = None) -> dict:
    """verdict.json's content (module docstring). calibration: the replicates the preset was calibrated on."""
    reg = reg or load()
    ladders, pts = ladders_by_replicate(points, fits, bon_prompts, proxies)
    reps = replicates_of(points)
    calib = sorted(int(k) for k in calibration)
    held = [k for k in reps if k not in calib]

    def over(ks):
        return {
            "replicates_used": [k for k in ks if k in ladders],
            "claims": claims({k: ladders[k] for k in ks if k in ladders}, {k: pts[k] for k in ks}, reg),
        }

    held_v = over(held) if held else None
    all_v = over(reps)
    primary = "held_out" if held_v is not None else "all"
    return {
        "criteria_version": reg.version,
        "criteria_sha256": reg.sha256,
        "registration": {"history": reg.history, "held_out_seen_under_this_version": reg.seen},
        "replicates": reps,
        "calibration_replicates": calib,
        "held_out_replicates": held,
        "primary": primary,
        "claims": (held_v or all_v)["claims"],
        "verdicts": {"held_out": held_v, "all": all_v},
    }
