"""Stage "grpo-<size>" (optional: "grpo" in `rl.algos`): GRPO (rl.grpo) against one full-data proxy, a grid
of (kl_coef, seed) points in one compiled program, run by the same resumable runner as PPO
(`rl.runner.run_rl`). The grid `rl.grpo_kl_coefs` x `rl.seeds` gives each point's beta (`rl.grpo.kl_coef` is
read by nothing, and `rl.grpo.max_new` is the world's); the proxies are PPO's (`rl.proxies`, `rl.enabled`:
`study.stages.rl.targets`). Its points carry algo "grpo" and are fitted apart from PPO's (`algo` is a grouping
column)."""

from __future__ import annotations

import dataclasses

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
    cfg = dataclasses.replace(rl.grpo, max_new=ctx.world.max_new)
    rl_stage.run_grid(ctx, run, inst, cfg, rl.grpo_kl_coefs, "GRPO")


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
