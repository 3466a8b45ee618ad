"""Building the gold of a config: the one way callers above `gold_rm` get a `gold_rm.interface.Gold`."""

from __future__ import annotations

from gold_rm.gold import GoldConfig, GoldRM
from gold_rm.interface import Gold
from gold_rm.learned import load_learned
from gold_rm.world import World


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
