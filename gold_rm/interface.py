"""The `Gold` interface: what labels, best-of-n pools and PPO evaluation need from a gold reward model.

Implementations: `gold_rm.gold.GoldRM` (the hand-written formula, `GoldConfig.kind` "formula"),
`gold_rm.learned.LearnedGold` (a transformer reward model trained on the formula's preferences, "learned") and a
PyTorch reward model (`gold_rm.torch_adapter.TorchGoldRM`: its only term is its score; no jittable scorer).
Every caller above this layer builds its gold through `gold_rm.factory.make_gold`.

The contract (tests/test_gold_interface.py and tests/test_gold.py check the implementations):
  score(tokens, mask)       f32[B], the gold score of prompt ++ response sequences (tokens int[B, P+T'],
                            mask bool[B, T'] with T' <= the world's max_new).
  components(tokens, mask)  name -> f32[B]: every named component and "score".
  terms(tokens, mask)       name -> f32[B]: "score" and the weighted terms, which add up to the score.
and, where one exists (`jittable(gold)`):
  scorer(centre)            (fn, params): `fn(params, tokens, mask)` is `terms` minus `centre` (name -> the
                            value that becomes 0), a pure jittable function compared by value (equal golds
                            share compiled programs; `rl.ppo.Scorer(fn, params)`).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Gold(Protocol):
    """A gold reward model (see the module docstring for the contract)."""

    def score(self, tokens, response_mask): ...

    def components(self, tokens, response_mask) -> dict: ...

    def terms(self, tokens, response_mask) -> dict: ...


def jittable(gold) -> bool:
    """Whether `gold` offers `scorer(centre)` for compiled programs (PPO's evaluation needs it)."""
    return callable(getattr(gold, "scorer", None))
