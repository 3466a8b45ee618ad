"""Bradley-Terry training of proxy reward models: the ladder's optimisation settings (`ProxyTrainConfig`) and
a trained ensemble's recentred score as a pure function for RL (`ProxyReward`). The training engine itself
(comparisons, the BT loss, the vmapped ensemble trainer, scoring) is `lm.reward_train`, shared with the
learned gold (`gold_rm.learned`); its names are re-exported here for the proxy ladder's callers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lm.model import ModelConfig, param_count
from lm.reward_train import (
    POOLS,
    Comparisons,
    bt_loss_and_acc,
    init_states,
    make_optimizer,
    member_scores,
    reward,
    score,
    train_ensemble,
)
from proxy_rm.ensemble import objective

__all__ = [
    "POOLS",
    "Comparisons",
    "ProxyReward",
    "ProxyTrainConfig",
    "bt_loss_and_acc",
    "init_states",
    "make_optimizer",
    "member_scores",
    "reward",
    "rm_params",
    "score",
    "train_ensemble",
]


@dataclass(frozen=True)
class ProxyTrainConfig:
    """How every proxy of the ladder is trained."""

    epochs: int = 1
    """passes over the training comparisons (Gao: 1; more epochs on the same data do not help)."""
    batch_size: int = 64
    """comparisons per optimiser step."""
    lr: float = 1e-3
    """peak AdamW learning rate (linear warm-up, cosine decay to 10%)."""
    warmup_frac: float = 0.05
    """fraction of steps spent warming up."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    grad_clip: float = 1.0
    """global-norm gradient clipping."""
    val_frac: float = 0.1
    """fraction of the comparisons held out for validation (Gao: 10k of 100k)."""
    pool: str = "last"
    """how the scalar head becomes a score: "last" (at the last response token, as Gao et al.), "sum"
    or "mean" over the response tokens (an additive head: count-like features add up linearly)."""


@dataclass(frozen=True)
class ProxyReward:
    """A proxy ensemble's recentred score as a pure function of its weights (the `fn` of an RL scorer).

    `__call__(params, tokens, mask, offsets=None)` (offsets: the prompts' left padding) with params = (states
    stacked over the k members [k, ...], offset f32[k]) returns f32[B]: member 0's score minus its offset when
    objective is "single", else the ensemble objective (proxy_rm.ensemble; `lam` for "uwo") of the recentred
    member scores. Frozen and hashed by value: proxies of one shape give equal functions (one compiled program,
    weights passed in).
    """

    graphdef: Any
    prompt_len: int
    pool: str
    objective: str = "single"
    lam: float = 1.0

    def __call__(self, params, tokens, mask, offsets=None):
        states, offset = params
        p, pool = self.prompt_len, self.pool
        raw = member_scores(self.graphdef, states, tokens, mask, prompt_len=p, pool=pool, offsets=offsets)
        scores = raw - offset[:, None]
        return scores[0] if self.objective == "single" else objective(self.objective, scores, lam=self.lam)


def rm_params(model_cfg: ModelConfig) -> int:
    """Exact parameter count of a proxy of this size (trunk + scalar head)."""
    return param_count(model_cfg, lm_head=False, scalar_head=True)
