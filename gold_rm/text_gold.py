"""A reward model that scores text as the gold of the text world (`hf:PATH` or `torch:PATH`).

`TextGold` meets `gold_rm.interface.Gold` on the policy's token arrays: it decodes each row (prompt ++
response, `gold_rm.text_world.TextWorld.sequence_texts`) and scores the text with the reward model's own
tokenizer (`lm.hf.text_rm`). Its only term is its score. It has no `scorer`: a torch model cannot be compiled
into a JAX program, so it is evaluated outside, batched, on the rows it is given (the evaluation samples),
and `cost()` says what that took. An `hf:` gold is JAX, but it re-tokenizes text on the host, so it is served
the same way.
"""

from __future__ import annotations

import numpy as np

from gold_rm.text_world import TextWorld
from lm.hf.text_rm import TextRM


class TextGold:
    """A text reward model as the gold (see the module docstring)."""

    def __init__(self, rm: TextRM, world: TextWorld):
        self.rm, self.world = rm, world

    @property
    def ref(self) -> str:
        return self.rm.ref

    def score(self, tokens, response_mask) -> np.ndarray:
        tokens, mask = np.asarray(tokens), np.asarray(response_mask, bool)
        p = self.world.prompt_len
        if tokens.ndim != 2 or mask.ndim != 2 or tokens.shape != (mask.shape[0], p + mask.shape[1]):
            raise ValueError(f"tokens {tokens.shape} and mask {mask.shape} do not fit prompt_len {p}")
        return self.rm.score_texts(self.world.sequence_texts(tokens, mask))

    def components(self, tokens, response_mask) -> dict:
        return {"score": self.score(tokens, response_mask)}

    def terms(self, tokens, response_mask) -> dict:
        return self.components(tokens, response_mask)

    def cost(self) -> dict:
        """{"ref", "rows", "seconds"}: what scoring took so far."""
        return self.rm.cost()
