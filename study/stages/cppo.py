"""Stage "cppo-<size>" (optional: "ppo_constrained" in `rl.algos`): constrained PPO (rl.ppo_constrained,
Moskovitz et al. 2023) against one full-data proxy (member 0): PPO's settings (`rl.ppo`) and grid
(`rl.kl_coefs` x `rl.seeds`), with the proxy's mean score held at or below `rl.constraint.threshold` (the
proxy point, in the proxy's recentred units) by a Lagrange multiplier. Its points carry algo
"ppo_constrained", the multiplier (`constraint_lambda`) and the threshold (`constraint_threshold`)."""

from __future__ import annotations

import dataclasses

from rl.ppo_constrained import ConstrainedPPOConfig
from study.stages import rl as rl_stage
from study.stages.graph import Slot, Stage

READS = (*rl_stage.STAGE.reads, "rl.constraint")


def expand(cfg) -> list[Slot]:
    if "ppo_constrained" not in cfg.rl.algos:
        return []
    reads = {path.split(".", 1)[-1]: path for path in READS}
    return [s for s in rl_stage.slots(cfg, "cppo", reads) if "objective" not in s.params]  # member 0 only


def config(rl) -> ConstrainedPPOConfig:
    """The constrained optimizer's config: PPO's settings and the constraint's."""
    return ConstrainedPPOConfig(**dataclasses.asdict(rl.ppo), **dataclasses.asdict(rl.constraint))


def compute(ctx, run, inst) -> None:
    rl = ctx.cfg.rl
    name = f"constrained PPO (proxy <= {rl.constraint.threshold:g})"
    rl_stage.run_grid(ctx, run, inst, config(rl), rl.kl_coefs, name)


def load(ctx, run, inst):
    return run


STAGE = Stage(
    "cppo",
    reads=READS,
    consumes=rl_stage.STAGE.consumes,
    writes=rl_stage.STAGE.writes,
    expand=expand,
    compute=compute,
    load=load,
    exclude=rl_stage.STAGE.exclude,
    doc="constrained PPO (proxy <= rl.constraint.threshold) against each full-data proxy (ppo_constrained in rl.algos)",
)
