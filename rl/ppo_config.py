"""PPO settings: `PPOConfig` and its split into the compiled program's static fields (`Static`), the
traced hyperparameters (`Hyper`, vmappable over a grid) and the Python loop's fields (`LOOP_FIELDS`)."""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass
from typing import Literal

import jax.numpy as jnp

from core.errors import UsageError


@dataclass(frozen=True)
class PPOConfig:
    """PPO settings. Static fields fix shapes and control flow (a new value compiles a new program);
    traced fields only change numbers (they are arrays inside the program, vmappable over a grid)."""

    # --- static: the compiled program ---
    batch_size: int = 64
    """prompts (= responses) per rollout, one update each (Gao: 256)."""
    max_new: int = 16
    """response tokens sampled per prompt (T)."""
    epochs: int = 4
    """passes over each rollout batch."""
    minibatches: int = 4
    """minibatches per epoch; must divide batch_size."""
    eval_every: int = 10
    """updates per compiled chunk; evaluation, logging and a checkpoint follow every chunk."""
    eval_batch: int = 128
    """fresh samples per evaluation."""
    kl_penalty: Literal["k1", "k2", "k3"] = "k1"
    """KL estimator in the per-token penalty (Schulman's k1, k2, k3; rl.kl)."""
    kl_log: Literal["k1", "k2", "k3"] = "k3"
    """a second estimator, logged as objective/kl_<name> beside objective/kl (always k1)."""
    kl_controller: Literal["fixed", "adaptive"] = "fixed"
    """fixed kl_coef, or Ziegler et al.'s adaptive controller towards kl_target."""
    fast_compile: bool = False
    """XLA backend optimisations off: about half the compile time, slower steps (tiny CPU runs, tests)."""
    # --- static: the Python loop only ---
    updates: int = 100
    """PPO updates in the run; a multiple of eval_every."""
    bleu_sample: int = 64
    """evaluation responses subsampled for self-BLEU."""
    # --- traced ---
    lr: float = 1e-4
    """Adam learning rate (constant)."""
    adam_eps: float = 1e-5
    """Adam epsilon."""
    clip: float = 0.2
    """policy ratio clip range (Gao: 0.2)."""
    vf_clip: float = 0.2
    """value clip range around the rollout values."""
    gamma: float = 1.0
    """discount."""
    lam: float = 0.95
    """GAE lambda (Gao: 0.95)."""
    kl_coef: float = 0.0
    """KL penalty coefficient (Gao: 0 except in the penalty sweep); the start value when adaptive."""
    ent_coef: float = 0.0
    """entropy bonus coefficient."""
    vf_coef: float = 0.1
    """value loss coefficient."""
    grad_clip: float = 1.0
    """global gradient-norm clip."""
    temperature: float = 1.0
    """sampling temperature; policy and reference log-probs use the same one."""
    kl_target: float = 6.0
    """adaptive controller: target sequence KL in nats."""
    kl_horizon: float = 10000.0
    """adaptive controller: horizon in episodes."""

    def __post_init__(self):
        for name in ("batch_size", "max_new", "epochs", "minibatches", "eval_every", "eval_batch", "updates"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise UsageError(f"PPOConfig.{name} must be a positive integer, got {v!r}")
        if self.batch_size % self.minibatches:
            raise UsageError(f"PPOConfig.minibatches={self.minibatches} must divide batch_size={self.batch_size}")
        if self.updates % self.eval_every:
            raise UsageError(f"PPOConfig.updates={self.updates} must be a multiple of eval_every={self.eval_every}")
        for name in ("kl_penalty", "kl_log"):
            if getattr(self, name) not in ("k1", "k2", "k3"):
                raise UsageError(f"PPOConfig.{name} must be k1, k2 or k3, got {getattr(self, name)!r}")
        if self.kl_controller not in ("fixed", "adaptive"):
            raise UsageError(f"PPOConfig.kl_controller must be fixed or adaptive, got {self.kl_controller!r}")
        if not self.temperature > 0 or not self.lr > 0 or self.clip <= 0 or self.kl_coef < 0:
            raise UsageError("PPOConfig: temperature, lr and clip must be > 0 and kl_coef >= 0")

    def static(self) -> Static:
        """The fields that define the compiled program (hashable: a jit static argument)."""
        return Static(*(getattr(self, f) for f in Static._fields))

    def hyper(self, kl_coef: float | None = None) -> Hyper:
        """The traced fields as float32 scalars (kl_coef overridden when given)."""
        vals = {f: getattr(self, f) for f in Hyper._fields}
        if kl_coef is not None:
            vals["kl_coef"] = kl_coef
        return Hyper(**{k: jnp.float32(v) for k, v in vals.items()})


Static = namedtuple(
    "Static",
    [
        "batch_size",
        "max_new",
        "epochs",
        "minibatches",
        "eval_every",
        "eval_batch",
        "kl_penalty",
        "kl_log",
        "kl_controller",
        "fast_compile",
    ],
)
Hyper = namedtuple(
    "Hyper",
    [
        "lr",
        "adam_eps",
        "clip",
        "vf_clip",
        "gamma",
        "lam",
        "kl_coef",
        "ent_coef",
        "vf_coef",
        "grad_clip",
        "temperature",
        "kl_target",
        "kl_horizon",
    ],
)
LOOP_FIELDS = ("updates", "bleu_sample")
