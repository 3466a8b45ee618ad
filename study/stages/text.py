"""The text study's declared stage graph (`study.text_study`; the machinery: `study.stages.graph`).

  model:policy ──> prompts ──┬─> labels ──> proxy[i] ──> bon[i] ──> ppo[i]
  model:gold ────────────────┤                 ^           ^         (policy, gold, prompts, proxy[i], bon[i])
  model:backbone[i] ─────────┼─────────────────┘           │
                             └─> pool ─────────────────────┘

Stages: `text_models` (model:<role>, prompts) and `text_train` (labels, pool, proxy[i], bon[i], ppo[i]).
Each instance's key holds exactly the config fields it reads (in the replicate's config,
`study.text_config.text_replicate_config`), its params (a checkpoint's or prompts file's sha256) and the
ids of what it consumes, so a relaunch reuses what is DONE and a changed field redoes only its readers and
what lies downstream. `rl_enabled` selects the ppo instances (in no key); `preset` and `replicate` are read
by the finish step (the replicate through the seeds it derives).
"""

from __future__ import annotations

from study.stages.graph import Instance, Stage, instantiate
from study.stages.text_models import MODEL, PROMPTS
from study.stages.text_train import BON, LABELS, POOL, PPO, PROXY
from study.text_config import text_replicate_config

TEXT_STAGES: tuple[Stage, ...] = (MODEL, PROMPTS, LABELS, POOL, PROXY, BON, PPO)
TEXT_SELECTORS = ("rl_enabled",)
TEXT_FINISH = ("preset", "replicate")


def text_plan(cfg) -> list[Instance]:
    """Every stage instance of text study config `cfg` (seeds derived from its replicate here), in
    topological order, with its key and id. Runs nothing (it reads the fingerprinted files)."""
    run_cfg = text_replicate_config(cfg)
    made: dict[str, Instance] = {}
    for stage in TEXT_STAGES:
        for slot in stage.expand(run_cfg):
            made[slot.label] = instantiate(stage, slot, run_cfg, made)
    return list(made.values())
