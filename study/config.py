"""The study's configuration: one frozen dataclass per stage group, the whole `StudyConfig`, and its checks.

A preset (`study.presets`) is one named instance; `core.config` builds, overrides and type-checks it.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from bon.pools import BonConfig
from bon.rule_points import SelectionConfig
from bon.rule_points import validate as validate_selection
from core.config import MAX_INT
from core.errors import UsageError, show
from core.store import OMIT_DEFAULT, safe_name
from direct.config import DirectConfig
from gold_rm.gold import GoldConfig
from gold_rm.gold import validate as validate_gold
from gold_rm.world import World, WorldConfig
from gold_rm.world import validate as validate_world
from lm.arch import COMPUTE_DTYPES
from lm.model import ModelConfig, param_count
from lm.pretrain import PretrainConfig
from proxy_rm.ensemble import OBJECTIVES
from proxy_rm.ladder import LadderConfig, validate_ladder
from proxy_rm.train import POOLS
from rl.grpo_config import GRPOConfig
from rl.ppo_config import PPOConfig
from rl.ppo_constrained import Constraint


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


RL_ALGOS = ("ppo", "grpo", "ppo_constrained")  # the values of rl.algos: one stage each (rl.py, grpo.py, cppo.py)
RL_ALGOS += ("dpo", "ipo", "slic")  # direct alignment, offline on the comparisons: stage dpo (one instance each)


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
    algos: tuple[str, ...] = field(default=("ppo",), metadata=OMIT_DEFAULT)
    """the RL optimizers run against each selected proxy: "ppo" (stage rl-<size>), "grpo" (stage grpo-<size>)."""
    grpo: GRPOConfig = field(default_factory=GRPOConfig, metadata=OMIT_DEFAULT)
    """GRPO's settings (with "grpo" in algos); its kl_coef comes from grpo_kl_coefs, its max_new is world.max_new."""
    objectives: tuple[str, ...] = field(default=("single",), metadata=OMIT_DEFAULT)
    """the rewards each RL optimizer maximises, one run each: "single" (the proxy's member 0) and ensemble
    objectives over its members (mean, min, median, uwo with bon.uwo_lambda; needs ladder.ensemble_size > 1)."""
    grpo_kl_coefs: tuple[float, ...] = field(default=(0.04,), metadata=OMIT_DEFAULT)
    """GRPO's grid of k3 KL coefficients (beta, in the loss), times `seeds`."""
    constraint: Constraint = field(default_factory=Constraint, metadata=OMIT_DEFAULT)
    """constrained PPO's proxy point and dual step (with "ppo_constrained" in algos; PPO's settings are `ppo`)."""
    direct: DirectConfig = field(default_factory=DirectConfig, metadata=OMIT_DEFAULT)
    """DPO / IPO / SLiC settings (with one in algos); loss: the instance's, max_new: the world's, beta: the grid's."""
    direct_betas: tuple[float, ...] = field(default=(0.05, 0.1, 0.5), metadata=OMIT_DEFAULT)
    """direct alignment's grid of betas (one curve each), times `seeds`."""


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
    selection: SelectionConfig = field(default_factory=SelectionConfig, metadata=OMIT_DEFAULT)
    """selection rules besides best-of-n on every proxy's pool, and the best-n predictor (issue 24)."""
    figures: bool = True
    """draw the figures and write the report at the end."""
    replicate: int = 0
    """replicate index K: every seed of the study is derived from it (0 = the seeds as configured)."""
    calibration_replicates: tuple[int, ...] = ()
    """the replicates this config was calibrated on; results on every other K are held out."""
    compute_dtype: str = field(default="float32", metadata=OMIT_DEFAULT)
    """the dense layers' matmuls of the policy and the proxies in every stage (pretraining, sampling, proxy
    training and scoring, PPO and the other optimizers): "bfloat16" on accelerators, parameters and optimizer
    state kept float32 (`lm.arch.ModelConfig.compute_dtype`); the gold stays float32. In the stage keys only
    when not "float32" (`study.stages.plan`), so float32 studies keep their ids and numbers."""


# every seed of a study: (path of the config field, is it a tuple of seeds). Each is a named stream of the
# replicate's root (`derive_seed`); tests/test_stage_graph.py finds the seed-like fields by walking the
# config and checks that each one moves with the replicate, so a seed missing here fails there.
SEED_FIELDS = (
    ("world.seed", False),
    ("gold.seed", False),
    ("policy.pretrain.seed", False),
    ("labels.seed", False),
    ("ladder.seed", False),
    ("bon.seed", False),
    ("rl.prompt_seed", False),
    ("rl.seeds", True),
    ("selection.calibration_seed", False),
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


def _walk(obj, prefix: str):
    """(dotted key, value) of every leaf of a config tree (tuple items as key[i])."""
    if dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            yield from _walk(getattr(obj, f.name), f"{prefix}{f.name}" if not prefix else f"{prefix}.{f.name}")
    elif isinstance(obj, (tuple, list)):
        for i, v in enumerate(obj):
            yield from _walk(v, f"{prefix}[{i}]")
    else:
        yield prefix, obj


def _check_numbers(cfg) -> None:
    """Every number of the tree finite and within int64 (NaN, inf and huge values never reach a stage)."""
    for key, v in _walk(cfg, ""):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if isinstance(v, float) and not math.isfinite(v):
            raise UsageError(f"config key '{key}': expected a finite number, got {v}")
        if abs(v) > MAX_INT:
            raise UsageError(f"config key '{key}': {show(v)} is too large")


ALLOCATIONS = (
    # (what, keys whose product sizes one allocation, the most it may be): generous, finite limits, so a typo
    # such as bon.pool_size=10**15 is refused before anything is built (and by --print-config)
    ("responses in the best-of-n pool", "bon.pool_size bon.n_prompts", 10**9),
    ("labelled comparisons", "labels.n_comparisons", 10**8),
    ("initial-policy samples", "labels.n_init_samples", 10**8),
    ("corpus responses", "policy.corpus_size", 10**9),
    ("prompts in the RL bank", "rl.prompt_bank", 10**8),
    ("PPO updates", "rl.ppo.updates", 10**7),
    ("pretraining steps", "policy.pretrain.steps", 10**8),
    ("response tokens", "world.max_new", 4096),
    ("symbols", "world.n_symbols", 65536),
    ("rows a batch", "bon.batch_size", 2**24),
    ("rows a batch", "rl.ppo.batch_size", 2**24),
    ("rows a batch", "rl.ppo.eval_batch", 2**24),
    ("rows a batch", "ladder.train.batch_size", 2**24),
    ("rows a batch", "policy.pretrain.batch_size", 2**24),
    ("layers", "policy.n_layer", 1024),
    ("width", "policy.d_model", 65536),
)
"""Config values that size an allocation, and their limits (`_check_allocations`)."""


def _check_allocations(cfg) -> None:
    """Each product of ALLOCATIONS (and every proxy size's layers and width) within its limit, else UsageError
    naming the keys, the value and the limit."""
    rows = [
        (what, " x ".join(f"'{k}'" for k in keys.split()), math.prod(config_value(cfg, k) for k in keys.split()), limit)
        for what, keys, limit in ALLOCATIONS
    ]
    for i, size in enumerate(cfg.ladder.sizes):
        rows += [("layers", f"'ladder.sizes[{i}].n_layer'", size.n_layer, 1024)]
        rows += [("width", f"'ladder.sizes[{i}].d_model'", size.d_model, 65536)]
    rows += [("RL grid points", "'rl.kl_coefs' x 'rl.seeds'", len(cfg.rl.kl_coefs) * len(cfg.rl.seeds), 10**4)]
    for what, names, value, limit in rows:
        if value > limit:
            raise UsageError(f"config key {names}: {value:,} {what} is more than the {limit:,} a study may allocate")


def _at_least(cfg, keys: str, minimum: int | float, what: str = "") -> None:
    """Each dotted key of `keys` (space-separated) >= minimum, else UsageError naming it."""
    for key in keys.split():
        v = config_value(cfg, key)
        if not v >= minimum:
            raise UsageError(f"config key '{key}' must be at least {minimum}{what}, got {show(v)}")


def _between(cfg, key: str, lo: float, hi: float, closed: str = "[]") -> None:
    """Dotted key's value in the interval lo..hi; `closed` says which ends are included ('[]', '()', '[)', '(]')."""
    v = config_value(cfg, key)
    ok = (v >= lo if closed[0] == "[" else v > lo) and (v <= hi if closed[1] == "]" else v < hi)
    if not ok:
        raise UsageError(f"config key '{key}' must lie in {closed[0]}{lo}, {hi}{closed[1]}, got {show(v)}")


def _heads(key: str, n_layer, d_model, n_head) -> None:
    for name, v in (("n_layer", n_layer), ("d_model", d_model), ("n_head", n_head)):
        if not v >= 1:
            raise UsageError(f"config key '{key}.{name}' must be at least 1, got {show(v)}")
    if d_model % n_head:
        raise UsageError(f"config key '{key}': d_model {d_model} is not divisible by n_head {n_head}")


def validate(cfg: StudyConfig) -> None:
    """Check the whole config before anything is written: every stage's sizes, fractions, grids, names and
    seeds. Raises UsageError naming the first bad key (a dotted config key)."""
    if not isinstance(cfg, StudyConfig):
        raise UsageError(f"expected a study config, got {type(cfg).__name__}")
    _check_numbers(cfg)
    _check_allocations(cfg)
    if cfg.compute_dtype not in COMPUTE_DTYPES:
        raise UsageError(f"compute_dtype: choose from {', '.join(COMPUTE_DTYPES)}, got {show(cfg.compute_dtype)}")
    if isinstance(cfg.replicate, bool) or not isinstance(cfg.replicate, int) or cfg.replicate < 0:
        raise UsageError(f"replicate must be a non-negative integer, got {show(cfg.replicate)}")
    if any(k < 0 for k in cfg.calibration_replicates):
        raise UsageError(f"config key 'calibration_replicates' holds a replicate < 0, got {cfg.calibration_replicates}")
    for where, many in SEED_FIELDS:  # numpy seeds are non-negative
        for s in config_value(cfg, where) if many else (config_value(cfg, where),):
            if s < 0:
                raise UsageError(f"config key '{where}': seeds must be >= 0, got {s}")
    for part, check in (("world", validate_world), ("gold", validate_gold)):
        try:
            check(getattr(cfg, part))
        except UsageError as e:  # their messages start with the field's name
            raise UsageError(f"{part}.{e}") from None
    _heads("policy", cfg.policy.n_layer, cfg.policy.d_model, cfg.policy.n_head)
    _at_least(cfg, "policy.corpus_size", 1)
    _at_least(cfg, "labels.n_comparisons", 20)
    _at_least(cfg, "labels.n_init_samples", 1)
    _between(cfg, "labels.temperature", 0, math.inf, "()")
    _between(cfg, "labels.flip_frac", 0.0, 0.5)
    for i, size in enumerate(cfg.ladder.sizes):
        safe_name(size.name, f"proxy size (ladder.sizes[{i}].name)")
        _heads(f"ladder.sizes[{i}]", size.n_layer, size.d_model, size.n_head)
    validate_ladder(cfg.ladder)
    for name in (*cfg.ladder.data_sweep_sizes, *cfg.rl.proxies):
        safe_name(name, "proxy size")
    _at_least(cfg, "ladder.train.epochs ladder.train.batch_size", 1)
    _between(cfg, "ladder.train.val_frac", 0.0, 1.0, "()")
    _between(cfg, "ladder.train.warmup_frac", 0.0, 1.0, "[)")
    _between(cfg, "ladder.train.lr", 0, math.inf, "()")
    _between(cfg, "ladder.train.grad_clip", 0, math.inf, "()")
    _at_least(cfg, "ladder.train.weight_decay", 0)
    if cfg.ladder.train.pool not in POOLS:
        pool = show(cfg.ladder.train.pool)
        raise UsageError(f"config key 'ladder.train.pool' must be one of {list(POOLS)}, got {pool}")
    if any(d < 1 for d in cfg.ladder.data_sizes):
        raise UsageError(f"config key 'ladder.data_sizes' must hold sizes >= 1, got {list(cfg.ladder.data_sizes)}")
    _at_least(cfg, "bon.pool_size bon.n_prompts", 2)
    _at_least(cfg, "bon.batch_size", 1)
    _between(cfg, "bon.temperature", 0, math.inf, "()")
    _at_least(cfg, "bon.uwo_lambda", 0)
    unknown = [o for o in cfg.bon.objectives if o not in OBJECTIVES]
    if unknown:
        raise UsageError(f"config key 'bon.objectives' names unknown objectives {unknown} (known: {list(OBJECTIVES)})")
    try:
        validate_selection(cfg.selection, cfg.bon.pool_size)
    except UsageError as e:
        raise UsageError(f"config key {e}") from None
    if not cfg.rl.kl_coefs:
        raise UsageError("config key 'rl.kl_coefs' is empty: give at least one KL coefficient")
    if not cfg.rl.seeds:
        raise UsageError("config key 'rl.seeds' is empty: give at least one seed")
    if any(k < 0 for k in cfg.rl.kl_coefs):
        raise UsageError(f"config key 'rl.kl_coefs' must hold coefficients >= 0, got {list(cfg.rl.kl_coefs)}")
    if len(set(cfg.rl.seeds)) != len(cfg.rl.seeds):
        raise UsageError(f"config key 'rl.seeds' has duplicates: {list(cfg.rl.seeds)}")
    _at_least(cfg, "rl.prompt_bank", 1)
    if cfg.rl.ppo.max_new != cfg.world.max_new:
        raise UsageError(f"rl.ppo.max_new ({cfg.rl.ppo.max_new}) must equal world.max_new ({cfg.world.max_new})")
    unknown_algos = sorted(set(cfg.rl.algos) - set(RL_ALGOS))
    if unknown_algos or not cfg.rl.algos:
        raise UsageError(f"config key 'rl.algos' must name some of {list(RL_ALGOS)}, got {list(cfg.rl.algos)}")
    bad = [o for o in cfg.rl.objectives if o != "single" and o not in OBJECTIVES]
    if bad or not cfg.rl.objectives or len(set(cfg.rl.objectives)) != len(cfg.rl.objectives):
        raise UsageError(
            f"config key 'rl.objectives' must name distinct objectives of {['single', *OBJECTIVES]},"
            f" got {list(cfg.rl.objectives)}"
        )
    if set(cfg.rl.objectives) - {"single"} and cfg.ladder.ensemble_size < 2:
        raise UsageError("config key 'rl.objectives' names an ensemble objective: set ladder.ensemble_size >= 2")
    if "grpo" in cfg.rl.algos and (not cfg.rl.grpo_kl_coefs or any(k < 0 for k in cfg.rl.grpo_kl_coefs)):
        raise UsageError(f"config key 'rl.grpo_kl_coefs' must hold coefficients >= 0, got {cfg.rl.grpo_kl_coefs}")
    if set(cfg.rl.algos) & {"dpo", "ipo", "slic"} and (not cfg.rl.direct_betas or min(cfg.rl.direct_betas) <= 0):
        raise UsageError(f"config key 'rl.direct_betas' must hold betas > 0, got {list(cfg.rl.direct_betas)}")
    c = cfg.rl.constraint
    if "ppo_constrained" in cfg.rl.algos and not (c.dual_lr > 0 and c.lambda_init >= 0 and math.isfinite(c.threshold)):
        raise UsageError(f"config key 'rl.constraint' needs dual_lr > 0, lambda_init >= 0, a finite threshold: {c}")
    names = {s.name for s in cfg.ladder.sizes}
    unknown = set(cfg.rl.proxies) - names
    if unknown:
        raise UsageError(f"rl.proxies names unknown proxy sizes: {sorted(unknown)}")
    n_train = n_train_comparisons(cfg)
    if n_train < 1:
        raise UsageError(f"ladder.train.val_frac {cfg.ladder.train.val_frac} leaves no training comparisons")
    too_big = [d for d in cfg.ladder.data_sizes if d > n_train]
    if too_big:
        raise UsageError(f"ladder.data_sizes {too_big} exceed the {n_train} training comparisons")
    if cfg.gold.kind == "learned":  # as in Gao et al., the gold reward model is larger than every proxy
        g = cfg.gold.learned
        gold_params = param_count(_model(cfg, g), lm_head=False, scalar_head=True)
        largest = max(cfg.ladder.sizes, key=lambda s: param_count(_model(cfg, s), lm_head=False, scalar_head=True))
        if gold_params <= param_count(_model(cfg, largest), lm_head=False, scalar_head=True):
            raise UsageError(
                f"gold.learned ({g.n_layer}x{g.d_model}, {gold_params} parameters) must be larger than every proxy "
                f"(ladder size '{largest.name}' is not smaller)"
            )


def _model(cfg, size) -> ModelConfig:
    """The reward-model config of a size (anything with n_layer, d_model, n_head) in the config's world."""
    world = World(cfg.world)
    return ModelConfig(world.vocab_size, world.seq_len, size.n_layer, size.d_model, size.n_head)


def n_train_comparisons(cfg) -> int:
    """How many comparisons the full-data proxies train on (the rest is the validation split)."""
    n = cfg.labels.n_comparisons
    return n - max(1, int(round(cfg.ladder.train.val_frac * n)))
