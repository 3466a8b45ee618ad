"""`Scorer`: a reward (or gold) model as a compiled optimizer program sees it, a pure function and its weights.

It lives below the optimizers (rl/, bon/ and any sibling optimizer package) so that each of them can take
one; `rl.ppo.Scorer` re-exports it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax.numpy as jnp


class Scorer(NamedTuple):
    """A reward (or gold) model as an optimizer's compiled program sees it.

    fn: (params, tokens int32[B, P+T], mask bool[B, T]) -> f32[B] (a reward) or a dict of f32[B] with
    "score" (the gold); pure and jittable, and hashed/compared by value (a frozen dataclass with
    `__call__`, or a module-level function): equal functions share one compiled program. With a left-padded
    prompt bank (`lm.sampling.PaddedBank`) the programs call it with `offsets=` int32[B] too, the prompts'
    padding widths (`padded`): a scorer of such a bank takes that keyword.
    params: a pytree of arrays, passed into the program as an argument (never baked into it).
    """

    fn: Callable
    params: Any


@dataclasses.dataclass(frozen=True)
class HostGold:
    """The compiled program's stand-in for a gold that cannot be compiled (a torch model): {"score": 0} for
    every row. The runner evaluates the real gold outside the program on the evaluation samples
    (`rl.runner.train_grid`'s `host_gold`) and replaces the evaluation's gold with it."""

    def __call__(self, params, tokens, mask, offsets=None):
        del params, mask, offsets
        return {"score": jnp.zeros(tokens.shape[0], jnp.float32)}


def padded(offsets) -> dict:
    """The keyword a `Scorer.fn` takes for left-padded prompts: {} (none: a plain bank), else {"offsets": ...}."""
    return {} if offsets is None else {"offsets": offsets}
