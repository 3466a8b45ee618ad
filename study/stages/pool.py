"""Stage "pool": N responses per prompt sampled from pi_init, gold-scored once, with pi_init's log-prob of
each response kept from sampling (the regularized selection rule's proximity), stored as one .npz."""

from __future__ import annotations

import time

from bon.pools import load_pool, make_pool, save_pool
from study.stages import gold as gold_stage
from study.stages.graph import Slot, Stage

LABEL = "pool"


def expand(cfg) -> list[Slot]:
    reads = {
        "world": "world",
        "gold": "gold",
        "n_prompts": "bon.n_prompts",
        "pool_size": "bon.pool_size",
        "temperature": "bon.temperature",
        "batch_size": "bon.batch_size",
        "seed": "bon.seed",
    }
    return [Slot(LABEL, "pool", reads, {"policy": "lm"} | gold_stage.inputs(cfg))]


def compute(ctx, run, inst) -> None:
    b = ctx.cfg.bon
    ctx.log(f"best-of-n pool, {b.pool_size} responses x {b.n_prompts} prompts")
    t0 = time.time()
    graphdef, state = ctx.output(inst.inputs["policy"])
    pool = make_pool(ctx.world, ctx.gold(inst), graphdef, state, b, progress=ctx.progress)
    save_pool(run.path / "pool.npz", pool)
    dt = time.time() - t0
    run.log(
        {
            "pool/samples": b.pool_size * b.n_prompts,
            "pool/seconds": dt,
            "pool/samples_per_second": b.pool_size * b.n_prompts / dt,
        }
    )
    run.mark_done({"seconds": dt})
    ctx.timings["pool"] = dt


def load(ctx, run, inst):
    """The `bon.pools.Pool` (gold as stored: not recentred)."""
    return load_pool(run.path / "pool.npz")


STAGE = Stage(
    "pool",
    reads=("world", "gold", "bon.n_prompts", "bon.pool_size", "bon.temperature", "bon.batch_size", "bon.seed"),
    consumes=("lm", "gold"),
    writes=("pool.npz", "metrics.jsonl"),
    expand=expand,
    compute=compute,
    load=load,
    doc="the best-of-n pool: responses, gold components and pi_init's log-probs",
)
