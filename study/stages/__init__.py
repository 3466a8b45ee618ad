"""The study as a declared stage graph (one module per stage; `graph` holds the machinery).

  lm ──> [gold: with gold.kind = learned, consumed by labels, pool and rl]
  lm ──> labels ──> proxy-<size> ──┬─> score-<size> ──┬─> bon-<size>
   │        (lm[i]: backbones) ────┘        ^         └─> select-<size>
   ├──> pool ───────────────────────────────┘
   └──────────────> rl-<size> (proxy, pool: the gold's centre) ──> klsplit-<size>
                    rl-<size>-<objective> (stage rl_objective: PPO against an ensemble objective in rl.objectives)
                    grpo-<size>[-<objective>] (as rl-<size>; with "grpo" in rl.algos)
                    cppo-<size> (constrained PPO; with "ppo_constrained" in rl.algos)
  labels ──> dpo:<algo> (DPO / IPO / SLiC on the comparisons; with them in rl.algos)

`plan(cfg)` lists every stage instance of a config in topological order with its key and id, without
running anything; `study.pipeline.Study` walks it. `SELECTORS` choose which instances exist and are in no
key; `FINISH` fields are read by the finish step only; `check_keys` refuses a key nothing reads.
"""

from __future__ import annotations

import dataclasses
import re

from core.errors import UsageError
from study.config import replicate_config
from study.stages import bon, cppo, dpo, gold, grpo, klsplit, labels, lm, pool, proxy, rl, rl_objective, scores, select
from study.stages import probes as probe_stage
from study.stages.graph import STORE_VERSION, Instance, Stage, covers, downstream, instantiate, readers, value_at
from study.stages.store import check_store

STAGES: tuple[Stage, ...] = (
    lm.STAGE,
    gold.STAGE,
    labels.STAGE,
    proxy.STAGE,
    pool.STAGE,
    scores.STAGE,
    bon.STAGE,
    select.STAGE,
    probe_stage.STAGE,  # the probes of each proxy (issue 31)
    rl.STAGE,
    klsplit.STAGE,  # RL's KL split by token class, after RL (issue 31)
    rl_objective.STAGE,  # PPO against ensemble objectives, with one in rl.objectives (issue 35)
    grpo.STAGE,  # GRPO against each proxy, with "grpo" in rl.algos (issue 35)
    cppo.STAGE,  # constrained PPO against each proxy, with "ppo_constrained" in rl.algos (issue 35)
    dpo.STAGE,  # DPO / IPO / SLiC on the comparisons, with them in rl.algos (issue 35)
)

SELECTORS = (
    "ladder.sizes",  # one proxy (and its score, bon, select, rl) per size; each size's own fields are read
    "ladder.data_sizes",
    "ladder.data_sweep_sizes",
    "ladder.backbone",  # backbone lm instances (and read by the proxies)
    "selection.rules",  # no select stage when both lists are empty (and read by it)
    "selection.hedge_rules",
    "rl.enabled",
    "rl.proxies",
    "rl.algos",
    "rl.objectives",
)

FINISH = ("figures", "preset", "calibration_replicates", "replicate")
"""Read by the finish step (and, for `replicate`, the seed derivation: `study.config.replicate_config`)."""

UNUSED = {
    "rl.ppo.kl_coef": "each RL grid point's KL coefficient comes from rl.kl_coefs",
    "rl.grpo.kl_coef": "each GRPO grid point's KL coefficient comes from rl.grpo_kl_coefs",
    "rl.grpo.max_new": "GRPO's response length is world.max_new",
    "rl.direct.loss": "each direct instance's loss is its algo in rl.algos",
    "rl.direct.max_new": "direct alignment's response length is world.max_new",
    "rl.direct.beta": "each direct grid point's beta comes from rl.direct_betas",
}
"""Config fields no stage, selector or the finish step reads, with the reason: a --set of one is refused."""


FLOAT32_STAGES = ("gold",)
"""Stages that `compute_dtype` does not reach (the learned gold trains in float32 whatever it is)."""


def plan(cfg) -> list[Instance]:
    """Every stage instance of study config `cfg` (as requested: seeds are derived from its replicate here),
    in topological order, with its key and id. Runs nothing."""
    run_cfg = replicate_config(cfg)
    made: dict[str, Instance] = {}
    dtype = getattr(run_cfg, "compute_dtype", "float32")
    for stage in STAGES:
        for slot in stage.expand(run_cfg):
            if dtype != "float32" and stage.name not in FLOAT32_STAGES:  # float32: the keys of before the option
                slot = dataclasses.replace(slot, params={**slot.params, "compute_dtype": dtype})
            made[slot.label] = instantiate(stage, slot, run_cfg, made)
    return list(made.values())


def _declared(path: str, paths) -> bool:
    return any(covers(p, path) or covers(path, p) for p in paths)


def role(path: str) -> str | None:
    """What reads config key `path` (dotted, indices allowed): "stage", "selector", "finish", or None."""
    if any(covers(u, path) for u in UNUSED):
        return None
    if path == "compute_dtype":  # every stage but FLOAT32_STAGES, keyed only when not float32 (`plan`)
        return "stage"
    generic = re.sub(r"\[\d+\]", "[i]", path)  # ladder.sizes[2].name: a stage declares ladder.sizes[i].name
    if any(_declared(generic, s.reads) for s in STAGES):
        return "stage"
    if _declared(path, SELECTORS):
        return "selector"
    if _declared(path, FINISH):
        return "finish"
    return None


def check_keys(data: dict, prefix: str = "") -> None:
    """UsageError (one line) for the first key of override table `data` (nested dicts, as
    `core.config.parse_overrides` or a sweep spec gives them) that nothing in a study reads."""
    for k, v in data.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict) and path not in ("ladder.sizes",):
            check_keys(v, path + ".")
            continue
        if path in UNUSED:
            raise UsageError(f"config key '{path}' is read by no stage: {UNUSED[path]}")
        if role(path) is None:
            raise UsageError(f"config key '{path}' is read by no stage, selector or the finish step")


__all__ = [
    "FINISH",
    "SELECTORS",
    "STAGES",
    "STORE_VERSION",
    "UNUSED",
    "check_keys",
    "check_store",
    "downstream",
    "plan",
    "readers",
    "role",
    "value_at",
]
