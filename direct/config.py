"""Direct alignment settings: `DirectConfig` and its split into the compiled program's static fields
(`DStatic`) and the traced ones (`DHyper`, vmappable over a grid of (beta, seed) points)."""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass

import jax.numpy as jnp

from core.errors import UsageError
from direct.losses import LOSSES

__all__ = ["DHyper", "DStatic", "DirectConfig", "eval_steps"]


@dataclass(frozen=True)
class DirectConfig:
    """Settings of one direct-alignment run (DPO, IPO or SLiC) over a grid of (beta, seed) points."""

    # --- static: the compiled program ---
    loss: str = "dpo"
    """the pairwise loss: dpo, ipo or slic (direct.losses)."""
    batch_size: int = 32
    """comparisons per update."""
    max_new: int = 16
    """response tokens sampled per prompt at evaluation (T; the comparisons' own length)."""
    eval_batch: int = 128
    """fresh samples per evaluation."""
    fast_compile: bool = False
    """XLA backend optimisations off (tiny CPU runs, tests)."""
    # --- the Python loop ---
    epochs: int = 2
    """passes over the training comparisons."""
    evals_per_epoch: int = 4
    """evaluations spread evenly over each epoch (besides step 0): the curve within and across epochs."""
    max_pairs: int | None = None
    """use at most this many training comparisons (the first of the split); None: all of them."""
    # --- traced ---
    beta: float = 0.1
    """the loss's beta (DPO's KL coefficient); a grid point's own beta overrides it."""
    lr: float = 1e-4
    """Adam learning rate (constant)."""
    adam_eps: float = 1e-8
    """Adam epsilon."""
    grad_clip: float = 1.0
    """global gradient-norm clip."""
    temperature: float = 1.0
    """sampling temperature at evaluation; policy and reference log-probs use the same one."""

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise UsageError(f"DirectConfig.loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        for name in ("batch_size", "max_new", "eval_batch", "epochs", "evals_per_epoch"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise UsageError(f"DirectConfig.{name} must be a positive integer, got {v!r}")
        if self.max_pairs is not None and (not isinstance(self.max_pairs, int) or self.max_pairs < 1):
            raise UsageError(f"DirectConfig.max_pairs must be None or a positive integer, got {self.max_pairs!r}")
        if not (self.beta > 0 and self.lr > 0 and self.temperature > 0 and self.grad_clip > 0):
            raise UsageError("DirectConfig: beta, lr, temperature and grad_clip must be > 0")

    def static(self) -> DStatic:
        return DStatic(*(getattr(self, f) for f in DStatic._fields))

    def hyper(self, beta: float | None = None) -> DHyper:
        vals = {f: getattr(self, f) for f in DHyper._fields}
        if beta is not None:
            vals["beta"] = beta
        return DHyper(**{k: jnp.float32(v) for k, v in vals.items()})


DStatic = namedtuple("DStatic", ["loss", "batch_size", "max_new", "eval_batch", "fast_compile"])
DHyper = namedtuple("DHyper", ["beta", "lr", "adam_eps", "grad_clip", "temperature"])
LOOP_FIELDS = ("epochs", "evals_per_epoch", "max_pairs")


def eval_steps(cfg: DirectConfig, steps_per_epoch: int) -> list[int]:
    """The update counts after which a run evaluates (step 0 too): evals_per_epoch evenly spaced steps in
    each epoch, the epoch's end among them. Sorted, distinct, the last one epochs * steps_per_epoch."""
    k = cfg.evals_per_epoch
    steps = {e * steps_per_epoch + round(j * steps_per_epoch / k) for e in range(cfg.epochs) for j in range(1, k + 1)}
    return sorted({0} | {s for s in steps if s > 0})
