"""Stage "rl-<size>-<objective>" (optional: an ensemble objective in `rl.objectives`): PPO against one
full-data proxy's ensemble objective (mean, min, median, uwo over its members; Coste et al. 2023), as stage
rl-<size> runs it against member 0. A stage of its own so that rl-<size>'s declared reads stay PPO's; uwo
reads its lambda, `bon.uwo_lambda` (best-of-n's). Points carry `objective` and `ensemble_size`."""

from __future__ import annotations

from study.stages import rl as rl_stage
from study.stages.graph import Slot, Stage


def expand(cfg) -> list[Slot]:
    if "ppo" not in cfg.rl.algos:
        return []
    reads = {path.split(".", 1)[-1]: path for path in rl_stage.STAGE.reads}
    return [s for s in rl_stage.slots(cfg, "rl", reads) if "objective" in s.params]


STAGE = Stage(
    "rl_objective",
    reads=(*rl_stage.STAGE.reads, "bon.uwo_lambda"),
    consumes=rl_stage.STAGE.consumes,
    writes=rl_stage.STAGE.writes,
    expand=expand,
    compute=rl_stage.compute,
    load=rl_stage.load,
    exclude=rl_stage.STAGE.exclude,
    doc="PPO against each full-data proxy's ensemble objectives (rl.objectives) over the (kl_coef, seed) grid",
)
