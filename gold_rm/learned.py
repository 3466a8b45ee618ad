"""The learned gold: a transformer reward model (lm.model's GPT with a scalar head) trained with Bradley-Terry on
the hand-written gold's preferences, then frozen and used as the gold everywhere (labels, best-of-n pools, PPO
evaluation). As in Gao et al., the gold is itself a reward model, larger than every proxy and trained on a
distribution broader than theirs (`gold_rm.learned_train`).

Its score is on the formula's scale: score = a * r + b, with r the network's raw (pooled) scalar and (a, b)
the least-squares fit of the formula's score on r over the training responses (a > 0, so every preference is
the network's own). Its terms keep the formula's weighted terms under their names (what was hacked still
explains), plus one more, `learned_residual` = score - the formula's score, the learned gold's disagreement with
the formula in score units; so the terms still add up to the score:
    score = sum_c w_c * component_c (the formula's terms) + learned_residual.
`components` likewise: the formula's (unweighted) components, learned_residual and score.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from core.checkpoint import load_state, save_state
from core.store import atomic_write_json
from gold_rm.gold import GoldRM, GoldTerms, _bucket
from lm.model import ModelConfig, abstract, param_count
from lm.reward_train import member_scores

RESIDUAL = "learned_residual"
META = "learned.json"
_CHUNK = 4096


class LearnedGold:
    """A frozen learned gold (the `gold_rm.interface.Gold` contract). `formula`: the hand-written gold it was
    trained on (its terms are reported alongside); `states`: the network's weights, stacked over one member."""

    def __init__(self, formula: GoldRM, model_cfg: ModelConfig, graphdef, states, scale: float, offset: float, pool):
        if not scale > 0:
            raise ValueError(f"the learned gold's scale must be positive, got {scale}")
        self.formula, self.model_cfg, self.graphdef, self.states = formula, model_cfg, graphdef, states
        self.scale, self.offset, self.pool = float(scale), float(offset), pool
        self.world, self.cfg = formula.world, formula.cfg
        self.prompt_len = formula.prompt_len

    @property
    def params(self) -> int:
        """Parameter count of the network (trunk + scalar head)."""
        return param_count(self.model_cfg, lm_head=False, scalar_head=True)

    @property
    def component_names(self) -> tuple[str, ...]:
        return self.formula.component_names + (RESIDUAL,)

    def raw(self, tokens, response_mask) -> np.ndarray:
        """The network's raw pooled scalar r, float32[B] (eager; batches padded to a few shapes)."""
        tokens, mask = np.asarray(tokens, np.int32), np.asarray(response_mask, bool)
        B = tokens.shape[0]
        if B == 0:
            return np.zeros(0, np.float32)
        chunk = min(_bucket(B), _CHUNK)
        idx = np.minimum(np.arange(-(-B // chunk) * chunk), B - 1)  # pad by repeating the last row
        out = [
            np.asarray(
                member_scores(
                    self.graphdef,
                    self.states,
                    jnp.asarray(tokens[idx[i : i + chunk]]),
                    jnp.asarray(mask[idx[i : i + chunk]]),
                    prompt_len=self.prompt_len,
                    pool=self.pool,
                )[0]
            )
            for i in range(0, len(idx), chunk)
        ]
        return np.concatenate(out)[:B]

    def score(self, tokens, response_mask):
        """The learned gold's score on the formula's scale, float32[B]: a * r + b."""
        return (self.scale * self.raw(tokens, response_mask) + self.offset).astype(np.float32)

    def components(self, tokens, response_mask) -> dict:
        """The formula's components, learned_residual (score - the formula's score) and "score" (learned)."""
        return self._with_score(self.formula.components(tokens, response_mask), tokens, response_mask)

    def terms(self, tokens, response_mask) -> dict:
        """The formula's weighted terms, learned_residual and "score" (learned): the terms add up to the score."""
        return self._with_score(self.formula.terms(tokens, response_mask), tokens, response_mask)

    def _with_score(self, formula: dict, tokens, mask) -> dict:
        score = self.score(tokens, mask)
        out = {k: np.asarray(v) for k, v in formula.items() if k != "score"}
        out[RESIDUAL] = (score - np.asarray(formula["score"], np.float32)).astype(np.float32)
        out["score"] = score
        return out

    def scorer(self, centre: dict) -> tuple[LearnedTerms, tuple]:
        """(fn, params) for compiled programs: `fn(params, tokens, mask)` is `terms` minus `centre`."""
        fn, fparams = self.formula.scorer({k: 0.0 for k in self.formula.component_names + ("score",)})
        ab = jnp.asarray([self.scale, self.offset], jnp.float32)
        params = (fparams, self.states, ab, {k: jnp.float32(v) for k, v in centre.items()})
        return LearnedTerms(fn, self.graphdef, self.prompt_len, self.pool), params

    def save(self, path) -> None:
        """The weights (an Orbax checkpoint) and a JSON sidecar (size, scale, offset, pool), written last."""
        path = Path(path)
        save_state(path / "state", self.states)
        meta = {"model_cfg": self.model_cfg.__dict__, "scale": self.scale, "offset": self.offset, "pool": self.pool}
        atomic_write_json(path / META, meta)


def load_learned(path, formula: GoldRM) -> LearnedGold:
    """The learned gold saved in run directory `path` (`LearnedGold.save`), on top of `formula`."""
    path = Path(path)
    meta = json.loads((path / META).read_text())
    mcfg = ModelConfig(**meta["model_cfg"])
    graphdef, abstract_state = abstract(mcfg, lm_head=False, scalar_head=True)
    stacked = jax.tree.map(lambda x: jax.ShapeDtypeStruct((1, *x.shape), x.dtype), abstract_state)
    states = load_state(path / "state", stacked)
    return LearnedGold(formula, mcfg, graphdef, states, meta["scale"], meta["offset"], meta["pool"])


@dataclass(frozen=True)
class LearnedTerms:
    """The learned gold's terms, recentred, as a pure function `(params, tokens, mask) -> dict of f32[B]` with
    params = (the formula's params, the network's stacked states, [a, b], centre). Compared by value."""

    formula: GoldTerms
    graphdef: Any
    prompt_len: int
    pool: str

    def __call__(self, params, tokens, mask):
        fparams, states, ab, centre = params
        terms = self.formula(fparams, tokens, mask)
        raw = member_scores(self.graphdef, states, tokens, mask, prompt_len=self.prompt_len, pool=self.pool)[0]
        score = ab[0] * raw + ab[1]
        out = {k: v for k, v in terms.items() if k != "score"}
        out[RESIDUAL] = score - terms["score"]
        out["score"] = score
        return {k: v - centre[k] for k, v in out.items()}
