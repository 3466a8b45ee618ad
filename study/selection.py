"""DIR/selection.json: the selection rules' results gathered by the finish step (`study.finish`).

The select-<size> stages (`study.stages.select`) leave each proxy's rule points (soft, Best-of-Poisson,
regularized; in the points table with `rule`) and best-n predictions (`best_n.parquet`; the finish step
gathers them into DIR/best_n.parquet). `write_selection` fits every rule's law against the exact KL
(`kl_exact`, best-of-n's included, so all rules share one x axis), gives gold at matched exact KL per
rule, and lists the best-n predictions. The max rule's own points (and every criterion) are the best-of-n
stage's, against the analytic bound.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.store import atomic_write_json
from scaling.fitting import fit_table
from scaling.points import upgrade_columns

SELECTION = "selection.json"  # in the study directory


def matched_kl(curves: dict, n_kl: int = 8) -> list[dict]:
    """Gold of each rule at `n_kl` exact KLs spread (in sqrt KL) over the range every rule reaches.

    Arguments: `curves` rule -> (kl_exact, gold) arrays of one proxy. Returns rows {kl, rule -> gold,
    best}: linear interpolation in sqrt(KL), which is how the laws are drawn.
    """
    lo = max(float(np.min(k)) for k, _ in curves.values())
    hi = min(float(np.max(k)) for k, _ in curves.values())
    if not hi > lo:
        return []
    rows = []
    for kl in np.linspace(np.sqrt(lo), np.sqrt(hi), n_kl + 1)[1:] ** 2:
        g = {}
        for rule, (k, v) in curves.items():
            order = np.argsort(k)
            g[rule] = float(np.interp(np.sqrt(kl), np.sqrt(np.asarray(k)[order]), np.asarray(v)[order]))
        rows.append({"kl_exact": float(kl), **g, "best": max(g, key=g.get)})
    return rows


def write_selection(
    out, points: pd.DataFrame, preds: pd.DataFrame | None, n_boot: int = 200, by_extra: tuple[str, ...] = ()
) -> dict | None:
    """DIR/selection.json: every rule's law against kl_exact, gold at matched exact KL, best-n predictions.
    by_extra: further grouping columns (a sweep's varying axes: settings are never pooled in one fit)."""
    if "rule" not in points.columns and preds is None:
        return None
    points = upgrade_columns(points)  # stores written before the rename: kl_est -> kl_exact
    bon = points[points["method"] == "bon"]  # every objective: each rule with each ensemble objective
    if "kl_exact" not in bon.columns:
        return None
    bon = bon.dropna(subset=["kl_exact"])
    bon = bon.assign(rule=bon["rule"].fillna("max") if "rule" in bon.columns else "max", kl=bon["kl_exact"])
    if "objective" in bon.columns:
        bon = bon.assign(objective=bon["objective"].fillna("single"))
    by = [
        c for c in ("method", "rm_params", "data_size", "policy_params", "objective", "replicate", "rule") if c in bon
    ]
    by += [c for c in by_extra if c in bon.columns and c not in by]
    fits = fit_table(bon.drop(columns=[c for c in ("kl_coef",) if c in bon.columns]), by=by, n_boot=n_boot)
    matched = []
    keys = [c for c in by if c not in ("rule", "method")]
    for key, g in bon.groupby(keys, dropna=False):
        curves = {r: (s["kl_exact"].to_numpy(float), s["gold"].to_numpy(float)) for r, s in g.groupby("rule")}
        if len(curves) > 1:
            ident = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
            ident["rm_name"] = str(g["rm_name"].iloc[0]) if "rm_name" in g.columns else None
            matched += [ident | row for row in matched_kl(curves)]
    out_json = {
        "kl": "kl_exact: each rule's exact KL against the pool's empirical distribution (nats)",
        "fits": fits["fits"],
        "matched_kl": matched,
        "best_n": [] if preds is None else preds.to_dict(orient="records"),
    }
    atomic_write_json(out / SELECTION, out_json)
    return out_json
