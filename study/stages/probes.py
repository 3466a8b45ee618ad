"""Stage "probe-<size>": the probes of one proxy on the best-of-n pool, before any RL (issue 31; `probes`):
each global move's mean change of the proxy (member 0, what RL optimises) against the gold's and each gold
term's, flagged when the proxy rises and the gold falls, and the fraction of wrong-for-right substitutions
the proxy prefers. Reads `probes.tables.PER_PROMPT` responses per prompt, so it takes seconds."""

from __future__ import annotations

import time

import pandas as pd

from core.store import atomic_write_parquet
from probes.tables import probe_rows
from study.stages import gold as gold_stage
from study.stages import proxy as proxy_stage
from study.stages.graph import Slot, Stage

TABLE = "probes.parquet"  # in each probe-<size> run: one row per move and per confusion group


def expand(cfg) -> list[Slot]:
    reads = {"world": "world", "gold": "gold"}
    return proxy_stage.per_proxy(cfg, "probe", reads, lambda p: {"pool": "pool", "proxy": p} | gold_stage.inputs(cfg))


def compute(ctx, run, inst) -> None:
    t0 = time.time()
    pool = ctx.output(inst.inputs["pool"])
    proxy = ctx.output(inst.inputs["proxy"])
    P = ctx.world.prompt_len
    rows = probe_rows(pool, ctx.world, ctx.gold(inst), lambda tokens, mask: proxy.scores(tokens, mask, P)[0])
    const = {"rm_name": proxy.size.name, "rm_params": proxy.rm_params, "data_size": proxy.data_size, "run_id": run.id}
    atomic_write_parquet(run.file(TABLE), pd.DataFrame([const | r for r in rows]))
    run.mark_done({"seconds": time.time() - t0})
    ctx.timings[f"probe-{proxy.size.name}" + (f"-{proxy.data_size}" if "@" in inst.inputs["proxy"].label else "")] = (
        time.time() - t0
    )


def load(ctx, run, inst):
    return run


STAGE = Stage(
    "probe",
    reads=("world", "gold"),
    consumes=("pool", "proxy", "gold"),
    writes=(TABLE,),
    expand=expand,
    compute=compute,
    load=load,
    doc="the global-move and confusion probes of each proxy on the pool (before RL)",
)
