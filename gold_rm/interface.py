"""The `Gold` interface: what the study asks of a gold reward model, and the one place that builds one.

A gold scores token arrays (prompt ++ response, `core/tokens.py`'s layout):
  score(tokens, response_mask) -> float[B]
  components(tokens, response_mask) -> {name: float[B]} with "score" among them (raw components)
  terms(tokens, response_mask) -> {name: float[B]}: "score" and the weighted terms that add up to it
and, where one exists, a jittable scorer for compiled programs:
  scorer(centre) -> (pure function compared by value, params)   (`jittable(gold)` says whether it has one)
Implementations: the hand-written gold (`gold_rm.gold.GoldRM`, kind "formula") and a PyTorch reward model
(`gold_rm.torch_adapter.TorchGoldRM`: its only term is its score; no jittable scorer). The learned gold of
issue 31 is a further implementation. `study/` builds its gold only through `make_gold`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from gold_rm.gold import GoldConfig, GoldRM
from gold_rm.world import World


@runtime_checkable
class Gold(Protocol):
    def score(self, tokens, response_mask): ...

    def components(self, tokens, response_mask) -> dict: ...

    def terms(self, tokens, response_mask) -> dict: ...


def jittable(gold) -> bool:
    """Whether `gold` offers `scorer(centre)` for compiled programs (PPO's evaluation needs it)."""
    return callable(getattr(gold, "scorer", None))


def make_gold(world: World, cfg: GoldConfig) -> Gold:
    """The study's gold for `cfg`: today the hand-written one (`GoldRM`)."""
    return GoldRM(world, cfg)
