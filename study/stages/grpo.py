"""Stage "grpo-<size>" (optional: "grpo" in `rl.algos`): GRPO (rl.grpo) against one full-data proxy, a grid
of (kl_coef, seed) points in one compiled program, run by the same resumable runner as PPO
(`rl.runner.run_rl`). The grid `rl.grpo_kl_coefs` x `rl.seeds` gives each point's beta (`rl.grpo.kl_coef` is
read by nothing, and `rl.grpo.max_new` is the world's); the proxies are PPO's (`rl.proxies`, `rl.enabled`:
`study.stages.rl.targets`). Its points carry algo "grpo" and are fitted apart from PPO's (`algo` is a grouping
column)."""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from rl.runner import run_rl
from study.stages import rl as rl_stage
from study.stages.graph import Slot, Stage

# the last one only for a uwo objective (`study.stages.rl.slots`)
READS = (
    "rl.grpo",
    "rl.grpo_kl_coefs",
    "rl.seeds",
    "rl.prompt_bank",
    "rl.prompt_seed",
    "world",
    "gold",
    "bon.uwo_lambda",
)


def expand(cfg) -> list[Slot]:
    if "grpo" not in cfg.rl.algos:
        return []
    return rl_stage.slots(cfg, "grpo", {path.split(".", 1)[-1]: path for path in READS[:-1]})


def compute(ctx, run, inst) -> None:
    rl = ctx.cfg.rl
    grid = [(float(k), int(s)) for k in rl.grpo_kl_coefs for s in rl.seeds]
    bank = ctx.world.sample_prompts(np.random.default_rng([rl.prompt_seed, 5]), rl.prompt_bank)
    proxy = ctx.output(inst.inputs["proxy"])
    cols = rl_stage.objective_columns(inst, proxy)
    ctx.log(f"GRPO against {proxy.size.name} ({cols['objective']}): a grid of {len(grid)} (kl_coef, seed) points")
    t0 = time.time()
    run_rl(
        run,
        ctx.output(inst.inputs["policy"]),
        rl_stage.reward_scorer(ctx, proxy, cols["objective"]),
        rl_stage.gold_scorer(ctx, inst, ctx.output(inst.inputs["pool"])),
        bank,
        dataclasses.replace(rl.grpo, max_new=ctx.world.max_new),
        grid,
        rm_params=proxy.rm_params,
        extra={"rm_name": proxy.size.name, "data_size": proxy.data_size, **cols, "run_id": run.id},
        progress=ctx.progress,
    )
    ctx.timings[run.path.name.rsplit("-", 1)[0]] = time.time() - t0
    ctx.log(f"  {proxy.size.name}: {rl.grpo.updates} updates x {len(grid)} grid points, {time.time() - t0:.1f}s")


def load(ctx, run, inst):
    return run


STAGE = Stage(
    "grpo",
    reads=READS,
    consumes=("lm", "proxy", "pool", "gold"),
    writes=("points.parquet", "metrics.jsonl", "checkpoints/"),
    expand=expand,
    compute=compute,
    load=load,
    exclude=("rl.grpo.kl_coef", "rl.grpo.max_new"),
    doc="GRPO against each full-data proxy over the (kl_coef, seed) grid (with grpo in rl.algos)",
)
