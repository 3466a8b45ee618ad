"""The RL points table (DESIGN.md) from a run's evaluation rows: one row per (grid point, evaluation step),
with the optimizer's name in `algo`."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd


def points_from_rows(
    rows: Sequence[dict],
    rm_params: int | None = None,
    policy_params: int | None = None,
    extra: dict | None = None,
    stop_rule: str | None = None,
    algo: str | None = None,
):
    """RL points (DESIGN.md points table) from evaluation rows of the metrics.

    Arguments: rows (dicts with split == "eval"; others are skipped); rm_params, policy_params, the run's
    stop_rule (`rl.ppo_config.stop_rule`), the optimizer's name `algo` (a grouping column; None: no column)
    and `extra` columns copied into every row. Returns: a pandas DataFrame, one row per (grid point,
    evaluation step).
    """
    out = []
    for r in rows:
        if r.get("split") != "eval":
            continue
        p = {
            "method": "rl",
            "step": int(r["step"]),
            "kl": max(float(r["objective/kl"]), 0.0),
            "gold": r["gold/score"],
            "proxy": r["proxy/score"],
            "kl_coef": r["kl_coef"],
            "seed": int(r["seed"]),
            "rm_params": rm_params,
            "policy_params": policy_params,
            "entropy": r["objective/entropy"],
            "distinct_1": r["eval/distinct_1"],
            "distinct_2": r["eval/distinct_2"],
            "self_bleu": r["eval/self_bleu"],
            "length": r["eval/length"],
            "gold_eval_se": r.get("eval/gold_se", float("nan")),
            "stop_rule": stop_rule,
        }
        if algo is not None:
            p["algo"] = algo
        p.update({k: v for k, v in r.items() if k.startswith("gold/") and k != "gold/score"})
        p.update({k.replace("/", "_"): v for k, v in r.items() if k.startswith("constraint/")})  # ppo_constrained
        p.update(extra or {})
        out.append(p)
    return pd.DataFrame(out)
