"""Stage "select-<size>": the selection rules besides best-of-n (soft, Best-of-Poisson, regularized) on one
proxy's ranking of the pool, for each ensemble objective, and the best-n predictions (`bon.rule_points`).
The proxy's scores are the score stage's; pi_init's log-probs are the pool's own (kept from sampling)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from bon.pools import n_grid, rankings, recentred
from bon.rule_points import predictions, rule_points
from core.store import atomic_write_parquet
from study.stages import bon as bon_stage
from study.stages import proxy as proxy_stage
from study.stages.graph import Slot, Stage

PREDICTIONS = "best_n.parquet"  # in each select-<size> run


def expand(cfg) -> list[Slot]:
    if not cfg.selection.rules and not cfg.selection.hedge_rules:
        return []
    reads = {"selection": "selection", "objectives": "bon.objectives", "uwo_lambda": "bon.uwo_lambda"}
    return proxy_stage.per_proxy(cfg, "select", reads, bon_stage.optimizer_inputs)


def compute(ctx, run, inst) -> None:
    cfg = ctx.cfg.selection
    t0 = time.time()
    pool = recentred(ctx.output(inst.inputs["pool"]))
    proxy = ctx.output(inst.inputs["proxy"])
    members = ctx.output(inst.inputs["scores"])
    gold = pool.per_prompt(pool.gold["score"])
    extra = {k: pool.per_prompt(v) for k, v in pool.gold.items() if k != "score"}
    lp = pool.per_prompt(pool.ref_logprob)
    ns = n_grid(pool.pool_size)
    const = {
        "rm_name": proxy.size.name,
        "rm_params": proxy.rm_params,
        "data_size": proxy.data_size,
        "seed": proxy.seeds[0],
        "run_id": run.id,
        "policy_params": bon_stage.policy_params(ctx, inst),  # a policy-size sweep keeps its curves apart
    }
    frames, preds = [], []
    for name, rank in rankings(members, ctx.cfg.bon).items():
        score = pool.per_prompt(np.asarray(rank, np.float64))
        c = const | {"objective": name, "ensemble_size": 1 if name == "single" else members.shape[0]}
        for rule in cfg.rules:
            frames.append(rule_points(rule, score, gold, ns, cfg, extra=extra, ref_logprob=lp, **c))
        preds.append(predictions(score, gold, cfg, ref_logprob=lp, **c))
    if frames:
        run.write_points(pd.concat(frames, ignore_index=True))
    atomic_write_parquet(run.file(PREDICTIONS), pd.concat(preds, ignore_index=True))
    run.mark_done({"seconds": time.time() - t0})
    ctx.timings[f"select-{proxy.size.name}"] = time.time() - t0
    ctx.log(f"  selection rules on {proxy.size.name}: {time.time() - t0:.1f}s")


def load(ctx, run, inst):
    return run


STAGE = Stage(
    "select",
    reads=("selection", "bon.objectives", "bon.uwo_lambda"),
    consumes=("pool", "score", "proxy", "lm"),
    writes=("points.parquet", PREDICTIONS),
    expand=expand,
    compute=compute,
    load=load,
    doc="selection rules (soft, Best-of-Poisson, regularized) and the best-n predictions per proxy",
)
