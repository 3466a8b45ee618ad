"""The study's configuration: one frozen dataclass per stage group, the whole `StudyConfig`, and its checks.

A preset (`study.presets`) is one named instance; `core.config` builds, overrides and type-checks it.
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from bon.pools import BonConfig
from core.errors import UsageError
from gold_rm.gold import GoldConfig
from gold_rm.world import WorldConfig
from lm.pretrain import PretrainConfig
from proxy_rm.ladder import LadderConfig, validate_ladder
from rl.ppo_config import PPOConfig


@dataclass(frozen=True)
class PolicyConfig:
    """The initial policy: its size, its corpus and its pretraining."""

    n_layer: int = 2
    d_model: int = 64
    n_head: int = 4
    corpus_size: int = 20000
    """base-corpus sequences the policy (and proxy backbones) are pretrained on."""
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)


@dataclass(frozen=True)
class LabelConfig:
    """Comparisons sampled from the initial policy and labelled by the gold RM."""

    n_comparisons: int = 20000
    """labelled pairs in all (train + validation); pairs share a prompt."""
    mode: Literal["hard", "bt"] = "hard"
    """hard: the higher gold wins (Gao); bt: sampled Bradley-Terry."""
    temperature: float = 1.0
    """Bradley-Terry temperature (mode bt)."""
    flip_frac: float = 0.0
    """fraction of labels flipped at random (Coste et al. use 0.25)."""
    n_init_samples: int = 4096
    """extra samples from the initial policy used to recentre every proxy."""
    seed: int = 2


@dataclass(frozen=True)
class RLConfig:
    """PPO against each proxy: a grid of KL coefficients x seeds in one compiled program."""

    ppo: PPOConfig = field(default_factory=PPOConfig)
    kl_coefs: tuple[float, ...] = (0.0,)
    seeds: tuple[int, ...] = (0,)
    proxies: tuple[str, ...] = ()
    """names of the proxy sizes that get PPO (empty: every size)."""
    prompt_bank: int = 4096
    """prompts PPO samples from (with replacement, inside the compiled program)."""
    prompt_seed: int = 4
    enabled: bool = True


@dataclass(frozen=True)
class StudyConfig:
    """Everything a study depends on. A preset is one named, frozen instance."""

    preset: str = "custom"
    world: WorldConfig = field(default_factory=WorldConfig)
    gold: GoldConfig = field(default_factory=GoldConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    labels: LabelConfig = field(default_factory=LabelConfig)
    ladder: LadderConfig = field(default_factory=LadderConfig)
    bon: BonConfig = field(default_factory=BonConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    figures: bool = True
    """draw the figures and write the report at the end."""
    replicate: int = 0
    """replicate index K: every seed of the study is derived from it (0 = the seeds as configured)."""
    calibration_replicates: tuple[int, ...] = ()
    """the replicates this config was calibrated on; results on every other K are held out."""


# every seed of a study: (path of the config field, is it a tuple of seeds)
SEED_FIELDS = (
    ("world.seed", False),
    ("gold.seed", False),
    ("policy.pretrain.seed", False),
    ("labels.seed", False),
    ("ladder.seed", False),
    ("bon.seed", False),
    ("rl.prompt_seed", False),
    ("rl.seeds", True),
)


def derive_seed(seed: int, replicate: int, where: str) -> int:
    """The seed of config field `where` in replicate K: the configured seed for K = 0, else a seed drawn
    from SeedSequence([seed, K, crc32(where)]) (independent streams per field and replicate)."""
    if replicate == 0:
        return seed
    entropy = [seed, replicate, zlib.crc32(where.encode())]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0] % (2**31 - 1))


def config_value(cfg, where: str):
    """The value of the dotted config field `where` (e.g. "rl.ppo.lr")."""
    for part in where.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _replace_path(cfg, path: list[str], value):
    if len(path) == 1:
        return dataclasses.replace(cfg, **{path[0]: value})
    return dataclasses.replace(cfg, **{path[0]: _replace_path(getattr(cfg, path[0]), path[1:], value)})


def replicate_config(cfg: StudyConfig) -> StudyConfig:
    """The config the stages run: every seed (SEED_FIELDS) derived from `cfg.replicate` (K = 0: `cfg` itself)."""
    out = cfg
    for where, many in SEED_FIELDS:
        value = config_value(cfg, where)
        if many:
            new = tuple(derive_seed(int(s), cfg.replicate, f"{where}[{i}]") for i, s in enumerate(value))
        else:
            new = derive_seed(int(value), cfg.replicate, where)
        out = _replace_path(out, where.split("."), new)
    return out


def validate(cfg: StudyConfig) -> None:
    if isinstance(cfg.replicate, bool) or not isinstance(cfg.replicate, int) or cfg.replicate < 0:
        raise UsageError(f"replicate must be a non-negative integer, got {cfg.replicate!r}")
    validate_ladder(cfg.ladder)
    if cfg.policy.d_model % cfg.policy.n_head:
        raise UsageError(f"policy.d_model {cfg.policy.d_model} is not divisible by policy.n_head {cfg.policy.n_head}")
    if cfg.labels.n_comparisons < 20:
        raise UsageError("labels.n_comparisons must be at least 20")
    if not 0.0 <= cfg.labels.flip_frac <= 0.5:
        raise UsageError(f"labels.flip_frac must lie in [0, 0.5], got {cfg.labels.flip_frac}")
    if cfg.bon.pool_size < 2 or cfg.bon.n_prompts < 2:
        raise UsageError("bon.pool_size and bon.n_prompts must be at least 2")
    if cfg.rl.ppo.max_new != cfg.world.max_new:
        raise UsageError(f"rl.ppo.max_new ({cfg.rl.ppo.max_new}) must equal world.max_new ({cfg.world.max_new})")
    names = {s.name for s in cfg.ladder.sizes}
    unknown = set(cfg.rl.proxies) - names
    if unknown:
        raise UsageError(f"rl.proxies names unknown proxy sizes: {sorted(unknown)}")
    n_train = n_train_comparisons(cfg)
    too_big = [d for d in cfg.ladder.data_sizes if d > n_train]
    if too_big:
        raise UsageError(f"ladder.data_sizes {too_big} exceed the {n_train} training comparisons")


def n_train_comparisons(cfg) -> int:
    """How many comparisons the full-data proxies train on (the rest is the validation split)."""
    n = cfg.labels.n_comparisons
    return n - max(1, int(round(cfg.ladder.train.val_frac * n)))
