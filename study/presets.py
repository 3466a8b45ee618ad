"""Named, frozen study configs.

- tiny:  the README's main command and CI's end-to-end smoke; whole study in minutes on 2 CPU cores.
- tiny-flattery: the first tiny, kept by name: extremal Goodhart from one knob (a global one-token exploit).
- small: 2 CPU cores, under an hour (52 min measured); 6 proxy sizes over 2.6 decades
         from pretrained backbones, larger pools, a data-size sweep, 300 PPO updates.
- tiny-bank: a candidate for issue 22 (being calibrated): tiny with a bank of extremal features.
- W1_OVERRIDES: issue 31's world W1 as overrides over a preset (being calibrated; no preset of its own yet).
- paper: one accelerator (about an hour on one H100-class GPU); sizes and sample counts closest to
         Gao et al. (pools of 16,384 per prompt, 90k/10k comparisons, 8 proxy sizes).
"""

from __future__ import annotations

import dataclasses

from bon.pools import BonConfig
from core.config import merge, parse_overrides
from core.errors import UsageError, show
from gold_rm.gold import GoldConfig
from gold_rm.world import WorldConfig
from lm.pretrain import PretrainConfig
from proxy_rm.ladder import LadderConfig, ProxySize
from proxy_rm.train import ProxyTrainConfig
from rl.ppo_config import PPOConfig
from study.config import LabelConfig, PolicyConfig, RLConfig, StudyConfig, validate
from study.stages import check_keys


def tiny():
    """The README's main command. Until issue 32 freezes its new world, the same config as `tiny-flattery`."""
    return dataclasses.replace(tiny_flattery(), preset="tiny")


def tiny_flattery():
    """Extremal Goodhart from one knob: the first `tiny` (sessions 1-5), kept by name. Its over-optimization is a
    global one-token exploit (FLATTER past the gold's cap) that RL finds in a few updates (docs/CALIBRATION.md).
    `small`, `paper`, `tiny-bank`, the test suite's micro studies and the specs measured on it start from it."""
    return StudyConfig(
        preset="tiny-flattery",
        # calibrated on replicate 0's seeds (sessions 1-5); from now on 0 and 1, every other K held out
        calibration_replicates=(0, 1),
        # one prompt-conditioned task (`map`) that a small proxy cannot represent: proxy size matters.
        # Flattery in 30% of corpus responses (DESIGN's prototype: 8%): with 8%, RL against the larger
        # proxies never found the flattery exploit, converged on the correct answer (~3 nats from the
        # initial policy) and could not reach the largest BoN KL; with 30% it finds it, and proxies that
        # extrapolate flattery past the gold's cap of 2 (3+ tokens are rare: flatter_more) over-optimize.
        world=WorldConfig(tasks=("map",), k=4, flatter_rate=0.3),
        gold=GoldConfig(),
        policy=PolicyConfig(
            n_layer=2,
            d_model=64,
            n_head=4,
            corpus_size=20000,
            pretrain=PretrainConfig(steps=600, batch_size=64, lr=3e-3, warmup=50),
        ),
        labels=LabelConfig(n_comparisons=20000),
        ladder=LadderConfig(
            # three one-layer rungs and a two-layer one (1.2k to 103k parameters). PPO against one-layer
            # proxies finds the flattery exploit within ~20 updates and gold falls to a plateau (RL R^2
            # 0.99); against two-layer proxies gold climbs slowly while the policy's flattery count
            # oscillates around the gold's cap. A two-layer rm-m (2, 32, 4; 27k) gave RL R^2 0.07-0.51
            # over seeds and batch sizes (dips of 0.3-0.4 gold when the policy overshoots the cap); the
            # one-layer rm-m (1, 32, 4; 14k) has the same accuracy (0.83) and a BoN peak between its
            # neighbours' (README).
            sizes=(
                ProxySize("rm-xs", 1, 8, 2),
                ProxySize("rm-s", 1, 16, 2),
                ProxySize("rm-m", 1, 32, 4),
                ProxySize("rm-l", 2, 64, 4),
            ),
            ensemble_size=1,
            # an additive (sum-pooled) head and 3 epochs: on 18k pairs the ladder's validation accuracy
            # then climbs with size (0.68 / 0.81 / 0.82 / 0.84 measured); one epoch left them all near 0.65
            train=ProxyTrainConfig(epochs=3, batch_size=64, lr=1e-3, pool="sum"),
        ),
        # 64 prompts: the standard error of the last BoN point (the pool's argmax) is ~0.08 gold units
        bon=BonConfig(n_prompts=64, pool_size=4096),
        rl=RLConfig(
            # lr 1e-4 and an evaluation every 5 updates on 256 prompts: the rise (KL 0-2) gets several
            # points before the policy finds the flattery exploit and KL jumps past 15 nats. At 5e-5 RL
            # against the two-layer proxies stopped short of the largest BoN KL (7.32). 200 updates: the
            # two-layer rm-l's gold is still climbing at 100 (RL R^2 0.75 on updates 1-100, 0.92 on 1-200)
            # Evaluations on a log schedule (issue 18): one-update chunks, 18 evaluations after step 0 at
            # updates 1, 2, 3, 4, 5, 7, 9, 12, 16, 21, 28, 38, 50, 66, 87, 115, 151, 200 (was every 5: 40),
            # so the rise before the exploit has several points; stopping rule: the update budget.
            # Three seeds in the one compiled grid, so over-optimization is judged over seeds.
            ppo=PPOConfig(
                updates=200,
                batch_size=64,
                lr=1e-4,
                eval_every=1,
                eval_schedule="log",
                n_evals=20,
                eval_batch=256,
                max_new=WorldConfig().max_new,
            ),
            kl_coefs=(0.0,),
            seeds=(0, 1, 2),
        ),
    )


def small():
    t = tiny_flattery()
    # tiny's world, policy and 20k labels, with 6 proxy sizes (1.2k to 452k parameters; four one-layer
    # rungs as in tiny: with the two-layer rm-m (2, 32, 4) its RL R^2 was 0.50) started from
    # LMs of their size pretrained on the corpus (ladder.backbone, as Gao's proxies start from pretrained
    # LMs), pools of 16,384, a data-size sweep and an RL grid of 3 KL coefficients x 2 seeds.
    # Without backbones the proxies from rm-s (4k) up judged the base distribution equally well (the
    # same BoN gold at n <= 16; accuracy 0.81-0.85), so alpha_bon did not rise with size past rm-s; with
    # them accuracy (0.65 / 0.68 / 0.70 / 0.81 / 0.85 / 0.83) and early BoN gold climb with size over the
    # whole ladder and alpha_bon's slope is positive with a 95% interval excluding 0 (README).
    # A 425-parameter rung was dropped: its BoN gold falls off a cliff (flattery) that Gao's form cannot
    # fit (R^2 0.86); rm-xs now shows the same (R^2 0.78).
    # With 50k labels and a longer-pretrained policy (the first calibration) the proxies from rm-s up
    # learned the flattery penalty, so RL against them never over-optimized.
    return dataclasses.replace(
        t,
        preset="small",
        calibration_replicates=(0, 1),
        ladder=dataclasses.replace(
            t.ladder,
            sizes=(
                ProxySize("rm-xs", 1, 8, 2),
                ProxySize("rm-xs2", 1, 12, 2),
                ProxySize("rm-s", 1, 16, 2),
                ProxySize("rm-m", 1, 32, 4),
                ProxySize("rm-l", 2, 64, 4),
                ProxySize("rm-xl", 4, 96, 4),
            ),
            backbone=True,
            data_sizes=(2000, 6000, 18000),
            data_sweep_sizes=("rm-s", "rm-l"),
        ),
        bon=dataclasses.replace(t.bon, n_prompts=64, pool_size=16384),
        # 300 updates at lr 5e-5 (evaluated every 10): with 100, RL against rm-xl stopped at KL 4.7,
        # short of the largest BoN KL (8.7), and its gold curve was still rising
        rl=dataclasses.replace(
            t.rl,
            # (issue 18: 4 seeds in the one compiled grid, evaluations on a log schedule in chunks of 2)
            ppo=dataclasses.replace(t.rl.ppo, updates=300, eval_every=2, n_evals=24, lr=5e-5),
            kl_coefs=(0.0, 0.01, 0.05),
            seeds=(0, 1, 2, 3),
        ),
    )


def paper():
    s = small()
    return dataclasses.replace(
        s,
        preset="paper",
        policy=dataclasses.replace(
            s.policy,
            n_layer=4,
            d_model=256,
            n_head=8,
            corpus_size=200000,
            pretrain=dataclasses.replace(s.policy.pretrain, steps=10000, batch_size=256),
        ),
        labels=dataclasses.replace(s.labels, n_comparisons=100000),
        ladder=dataclasses.replace(
            s.ladder,
            # small's ladder up to rm-l, then three larger rungs (two decades beyond rm-l)
            sizes=s.ladder.sizes[:5]
            + (ProxySize("rm-xl", 4, 128, 4), ProxySize("rm-2xl", 6, 256, 8), ProxySize("rm-3xl", 8, 384, 8)),
            ensemble_size=4,
            data_sizes=(10000, 30000, 90000),
            data_sweep_sizes=("rm-s", "rm-l", "rm-2xl"),
        ),
        bon=dataclasses.replace(s.bon, n_prompts=128, pool_size=16384),
        rl=dataclasses.replace(s.rl, kl_coefs=(0.0, 0.003, 0.01, 0.03, 0.1), seeds=(0, 1, 2, 3)),
    )


def tiny_bank():
    """Issue 22's first candidate (session 7, calibrating): `tiny` with a bank of 8 extremal surface
    features (`gold_rm.bank`) beside flattery, so that the proxies' errors spread over many directions.
    Everything else is tiny's; the calibration log is docs/CALIBRATION.md, "Issue 22 calibration log"."""
    t = tiny_flattery()
    return dataclasses.replace(t, preset="tiny-bank", world=dataclasses.replace(t.world, bank_k=8))


PRESETS = {"tiny": tiny, "tiny-flattery": tiny_flattery, "small": small, "paper": paper, "tiny-bank": tiny_bank}

# Issue 31's world W1 (being calibrated: no preset yet): `--set` overrides that turn every W1 knob on over a preset,
# e.g. `resolve("tiny", W1_OVERRIDES)` or `overopt study --preset tiny --set world.global_exploits=false ...`.
# Every prompt-independent move is judged right by every proxy, proxy errors are context-specific:
W1_OVERRIDES = [
    # no single-token exploit: no FLATTER in the corpus (no bank either), no flattery term in the gold
    "world.global_exploits=false",
    # the global rules the gold keeps (repetition, echo, length) in about a third of the corpus responses each
    # (tiny: 0.15, 0.1, 0.2, 0.1), so that every proxy sees them often enough to learn them
    "world.repeat_prob=0.3",
    "world.echo_prob=0.3",
    "world.long_prob=0.3",
    "world.short_prob=0.2",
    # tasks of graded difficulty: copy and reverse (position-wise rules), sort (a global order), map (a
    # 16-entry lookup table per position), over 16 symbols
    "world.tasks=['copy','reverse','sort','map']",
    "world.n_symbols=16",
    # responses of about 20 tokens: 8 target symbols plus EOS, up to 4 stuttered and 7 appended symbols (20 in all)
    "world.k=8",
    "world.repeat_max=4",
    "world.long_max=7",
    "world.max_new=20",
    "rl.ppo.max_new=20",
    # proxies from corpus-pretrained backbones, scored at the last token (Gao's head; `mean` and `sum` are the
    # pooling screen), trained as Gao did: one epoch over more pairs (tiny: 3 epochs over 18k)
    "ladder.backbone=true",
    "ladder.train.pool=last",
    "ladder.train.epochs=1",
    "labels.n_comparisons=60000",
]


def resolve(preset: str, overrides: list[str] | None = None) -> StudyConfig:
    """A preset with `a.b=value` overrides applied and checked (UsageError on unknown key / wrong type)."""
    if preset not in PRESETS:
        raise UsageError(f"unknown preset {show(preset)} (choose from: {', '.join(PRESETS)})")
    cfg = PRESETS[preset]()
    if overrides:
        data = parse_overrides(overrides)
        cfg = merge(cfg, data)  # unknown keys and wrong types first
        check_keys(data)  # a key no stage, selector or the finish step reads is refused, not ignored
    validate(cfg)
    return cfg
