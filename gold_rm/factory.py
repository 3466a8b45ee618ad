"""Building the gold of a config or a name: the one way callers above `gold_rm` get a `gold_rm.interface.Gold`."""

from __future__ import annotations

import dataclasses

from core.errors import UsageError
from gold_rm.gold import GoldConfig, GoldRM
from gold_rm.interface import Gold
from gold_rm.learned import load_learned
from gold_rm.text_gold import TextGold
from gold_rm.world import World
from lm.hf.text_rm import text_rm


def formula_gold(world: World, cfg: GoldConfig) -> GoldRM:
    """The hand-written gold of `cfg` (whatever its kind: a learned gold is trained on it and reports its terms)."""
    return GoldRM(world, cfg)


def make_gold(world: World, cfg: GoldConfig, learned_dir=None, formula: GoldRM | None = None) -> Gold:
    """The gold of `cfg`: kind "formula" -> the hand-written `GoldRM`; kind "learned" -> the `LearnedGold` saved
    in run directory `learned_dir` (the study's "gold" stage), on top of `formula` (built from `cfg` if None)."""
    formula = formula_gold(world, cfg) if formula is None else formula
    if cfg.kind == "formula":
        return formula
    if learned_dir is None:
        raise ValueError("a learned gold is loaded from its trained run directory (the study's gold stage)")
    return load_learned(learned_dir, formula)


SYNTHETIC = ("formula", "learned")  # the synthetic world's golds, named by `GoldConfig.kind`


def gold_by_name(
    ref: str,
    *,
    text_world=None,
    world: World | None = None,
    cfg: GoldConfig | None = None,
    learned_dir=None,
    batch_size: int = 32,
    device: str = "cpu",
) -> Gold:
    """The gold a reference names: "formula" or "learned" (the synthetic world's, from `world` and `cfg`), or
    `hf:PATH` / `torch:PATH` (a reward model scoring the text world's decoded text: `gold_rm.text_gold`)."""
    if ref in SYNTHETIC:
        if world is None or cfg is None:
            raise UsageError(f"gold {ref!r} is a synthetic world's gold: it scores the synthetic world only")
        if cfg.kind != ref:
            cfg = dataclasses.replace(cfg, kind=ref)
        return make_gold(world, cfg, learned_dir)
    rm = text_rm(ref, what="gold", batch_size=batch_size, device=device)  # a bad reference: one line naming the forms
    if text_world is None:
        raise UsageError(f"gold {ref}: a Hugging Face reward model scores text; it needs the text world's prompts")
    return TextGold(rm, text_world)
