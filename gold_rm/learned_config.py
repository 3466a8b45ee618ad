"""The learned gold's knobs (`GoldConfig.learned`, read only when `GoldConfig.kind` is "learned").

The learned gold (`gold_rm.learned`) is a scalar-head GPT (lm.model) trained with Bradley-Terry on pairs labelled
by the hand-written gold's preference (`gold_rm.labels.label_pairs` on the formula's scores, with label
noise), on a distribution broader than the proxies see: the initial policy's samples, hotter samples and
edited responses (`gold_rm.perturb`). Its seeds derive from `GoldConfig.seed` (no seed field of its own, so
`study.config.SEED_FIELDS` and every formula study's ids are unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import UsageError
from gold_rm.labels import MODES

POOLS = ("last", "sum", "mean")  # as lm.reward_train.POOLS (checked equal in tests/test_learned_gold.py)


@dataclass(frozen=True)
class LearnedGoldConfig:
    """Size, data, optimisation and label noise of the learned gold."""

    n_layer: int = 2
    """transformer layers of the learned gold (it must be larger than every proxy: `study.config.validate`)."""
    d_model: int = 96
    """its width."""
    n_head: int = 4
    """its attention heads."""
    n_pairs: int = 20000
    """labelled pairs drawn (training plus the held-out `val_frac`)."""
    val_frac: float = 0.1
    """fraction of the pairs held out: agreement on its own training distribution."""
    epochs: int = 3
    """passes over the training pairs."""
    batch_size: int = 64
    """pairs per optimiser step."""
    lr: float = 1e-3
    """peak AdamW learning rate (linear warm-up, cosine decay to 10%)."""
    warmup_frac: float = 0.05
    """fraction of steps spent warming up."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    grad_clip: float = 1.0
    """global-norm gradient clipping."""
    pool: str = "sum"
    """how the scalar head becomes a score: "last", "sum" or "mean" over the response (lm.reward_train)."""
    label_mode: str = "hard"
    """labels from the formula's scores: "hard" (higher wins) or "bt" (Bradley-Terry at `temperature`)."""
    temperature: float = 1.0
    """Bradley-Terry temperature of the labels (label_mode "bt" only)."""
    flip_frac: float = 0.05
    """probability that each training label is flipped (label noise)."""
    hot_temperature: float = 1.5
    """sampling temperature of the hotter samples."""
    hot_frac: float = 0.3
    """fraction of responses sampled hot."""
    perturb_frac: float = 0.3
    """fraction of responses that are edited initial-policy samples (the rest: plain initial samples)."""
    max_edits: int = 2
    """edits per perturbed response: 1 .. max_edits, each drawn from gold_rm.perturb.EDITS."""
    eval_pairs: int = 2000
    """pairs in each off-distribution check (gold.json): hotter, stacked edits, top of the pool."""


def validate_learned(c: LearnedGoldConfig) -> None:
    for name in ("n_layer", "d_model", "n_head", "n_pairs", "epochs", "batch_size", "max_edits", "eval_pairs"):
        if getattr(c, name) < 1:
            raise UsageError(f"learned.{name} must be at least 1, got {getattr(c, name)}")
    if c.d_model % c.n_head:
        raise UsageError(f"learned.d_model ({c.d_model}) must be divisible by n_head ({c.n_head})")
    if not 0.0 < c.val_frac < 1.0:
        raise UsageError(f"learned.val_frac must be in (0, 1), got {c.val_frac}")
    if not (c.hot_frac >= 0 and c.perturb_frac >= 0 and c.hot_frac + c.perturb_frac <= 1.0):
        raise UsageError("learned.hot_frac and perturb_frac must be >= 0 and sum to at most 1")
    if not 0.0 <= c.flip_frac < 0.5:
        raise UsageError(f"learned.flip_frac must be in [0, 0.5), got {c.flip_frac}")
    if c.pool not in POOLS:
        raise UsageError(f"learned.pool must be one of {list(POOLS)}, got {c.pool!r}")
    if c.label_mode not in MODES:
        raise UsageError(f"learned.label_mode must be one of {list(MODES)}, got {c.label_mode!r}")
    for name in ("lr", "temperature", "hot_temperature"):
        if not getattr(c, name) > 0:
            raise UsageError(f"learned.{name} must be positive, got {getattr(c, name)}")
    if c.n_pairs * c.val_frac < 1 or c.n_pairs * (1 - c.val_frac) < c.batch_size:
        raise UsageError("learned.n_pairs leaves no held-out pair or less than one training batch")
