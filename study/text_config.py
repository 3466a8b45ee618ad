"""The text study's configuration (`TextStudyConfig`) and its presets: `text-tiny` (tiny random Hugging Face
models built in-process: a plumbing test in minutes on a CPU, no science claim) and `text-pythia` (one GPU,
real checkpoints named as local paths: a Pythia policy and a Pythia proxy ladder; its cost is an estimate).

Model references: `hf:DIR` (a local checkpoint directory, imported into JAX), `torch:DIR` (the gold only: a
one-label sequence classifier run by PyTorch outside the compiled programs), or `tiny:FAMILY:WIDTH` (a tiny
random model of `lm.hf.tiny`, FAMILY gpt2, neox, llama or qwen2, built into DIR/models with
`save_pretrained`; a tiny gold is a torch sequence classifier). Every proxy backbone must share the policy's
tokenizer: the proxies score the policy's tokens inside the compiled PPO program.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from core.config import merge, parse_overrides
from core.errors import UsageError, show
from proxy_rm.train import ProxyTrainConfig
from rl.ppo_config import PPOConfig
from study.config import derive_seed


@dataclass(frozen=True)
class TextStudyConfig:
    """The text world's study: policy, gold, proxy backbones (a ladder), labels, best-of-n and PPO."""

    preset: str = "custom-text"
    policy: str = "tiny:gpt2:32"
    gold: str = "tiny:gpt2:64"
    backbones: tuple[str, ...] = ("tiny:neox:16", "tiny:llama:24", "tiny:gpt2:48")
    prompts: str = ""  # a prompts file (one a line, or a .parquet/.jsonl column); "": the built-in prompts
    prompt_column: str = ""
    prompt_tokens: int = 14  # prompts keep at most their last K tokens; shorter ones are left-padded
    max_new: int = 8  # response length of labels, pools and PPO
    temperature: float = 1.0
    n_comparisons: int = 512  # gold-labelled pairs sampled from the policy
    train: ProxyTrainConfig = field(default_factory=lambda: ProxyTrainConfig(epochs=4, batch_size=32, pool="last"))
    bon_prompts: int = 16
    pool: int = 16  # responses a prompt in the best-of-n pool
    ppo: PPOConfig = field(
        default_factory=lambda: PPOConfig(
            batch_size=16, minibatches=2, epochs=2, eval_every=5, eval_batch=32, updates=20, lr=3e-4, bleu_sample=16
        )
    )
    kl_coefs: tuple[float, ...] = (0.0,)
    seeds: tuple[int, ...] = (0,)
    rl_enabled: bool = True
    gold_batch: int = 64  # rows a gold call (the torch gold runs outside every compiled program)
    gold_device: str = "cpu"  # the torch gold's device ("cuda" on a GPU machine)
    compute_dtype: str = "float32"  # the JAX models' dense layers: "bfloat16" on accelerators (weights stay float32)
    seed: int = 0
    replicate: int = 0  # every seed (TEXT_SEED_FIELDS) derived from it, as the synthetic study's; 0: as configured


TEXT_SEED_FIELDS = (("seed", False), ("seeds", True))
"""The text study's seeds (as `study.config.SEED_FIELDS`): `seed` (labels, pool, proxy training) and `seeds`
(PPO). The checkpoints are not redrawn: a replicate samples and trains anew on the same models."""


def text_replicate_config(cfg: TextStudyConfig) -> TextStudyConfig:
    """The config the text stages run: every seed derived from `cfg.replicate` (K = 0: `cfg` itself)."""
    k = cfg.replicate
    return dataclasses.replace(
        cfg,
        seed=derive_seed(int(cfg.seed), k, "seed"),
        seeds=tuple(derive_seed(int(s), k, f"seeds[{i}]") for i, s in enumerate(cfg.seeds)),
    )


def text_tiny() -> TextStudyConfig:
    """The defaults, two PPO seeds in one vmapped grid."""
    return TextStudyConfig(preset="text-tiny", seeds=(0, 1))


def text_pythia() -> TextStudyConfig:
    """One GPU, real checkpoints (download them yourself; paths are placeholders to override with --set):
    a Pythia-410m policy, a Pythia proxy ladder (70m, 160m, 410m), a Pythia-1.4b gold sequence classifier.

    ESTIMATE (not measured): memory, fp32 weights with Adam: PPO's policy and value head (410m) ~6.6 GB for
    weights and optimizer state, plus the reference policy 1.6 GB and the largest proxy 1.6 GB, plus
    activations of 64 x 128 tokens ~ 10 GB: ~20 GB, and 5.6 GB more with the gold on the GPU
    (gold_device="cuda"), within one 80 GB H100. Time: sampling 64 x 128
    prompt+response tokens with a KV cache, 200 updates x (rollout + 4 epochs) on an H100 at ~30% MFU ~ 20-40
    min; proxy training 3 x 20k pairs x 2 epochs ~ 10 min; the pool 256 prompts x 64 responses ~ 5 min: 40-60 min
    in all (README "Bring your own models")."""
    return TextStudyConfig(
        preset="text-pythia",
        policy="hf:/models/pythia-410m",
        gold="torch:/models/pythia-1.4b-rm",
        backbones=("hf:/models/pythia-70m", "hf:/models/pythia-160m", "hf:/models/pythia-410m"),
        prompt_tokens=64,
        max_new=64,
        n_comparisons=20000,
        train=ProxyTrainConfig(epochs=2, batch_size=32, lr=1e-5, pool="last"),
        bon_prompts=256,
        pool=64,
        ppo=PPOConfig(batch_size=64, minibatches=4, epochs=4, eval_every=10, eval_batch=128, updates=200, lr=1e-6),
        kl_coefs=(0.0, 0.05),
        gold_batch=32,
        gold_device="cuda",
    )


TEXT_PRESETS = {"text-tiny": text_tiny, "text-pythia": text_pythia}


def resolve_text(preset: str, overrides: list[str]) -> TextStudyConfig:
    """The preset's config with `--set key=value` overrides applied and checked."""
    if preset not in TEXT_PRESETS:
        raise UsageError(f"unknown text preset {show(preset)}; choose from {', '.join(TEXT_PRESETS)}")
    cfg = merge(TEXT_PRESETS[preset](), parse_overrides(overrides))
    cfg = dataclasses.replace(cfg, ppo=dataclasses.replace(cfg.ppo, max_new=cfg.max_new))
    check(cfg)
    return cfg


def check(cfg: TextStudyConfig) -> None:
    """Refuse settings no run could use, with one line."""
    for name in ("prompt_tokens", "max_new", "n_comparisons", "bon_prompts", "gold_batch"):
        if getattr(cfg, name) < 1:
            raise UsageError(f"{name} must be a positive integer, got {getattr(cfg, name)}")
    if cfg.pool < 4:
        raise UsageError(f"pool must be >= 4 (the best-of-n law needs 3 points with n > 1), got {cfg.pool}")
    if not cfg.backbones:
        raise UsageError("backbones: give one proxy backbone at least")
    if not cfg.temperature > 0:
        raise UsageError(f"temperature must be > 0, got {cfg.temperature}")
    if cfg.compute_dtype not in ("float32", "bfloat16"):
        raise UsageError(f"compute_dtype: float32 or bfloat16, got {cfg.compute_dtype!r}")
    if isinstance(cfg.replicate, bool) or not isinstance(cfg.replicate, int) or cfg.replicate < 0:
        raise UsageError(f"replicate must be a non-negative integer, got {show(cfg.replicate)}")
    if not cfg.seeds or not cfg.kl_coefs:
        raise UsageError("seeds and kl_coefs: one value at least each")
