"""GRPO settings: `GRPOConfig` and its split into the compiled program's static fields (`GStatic`), the traced
hyperparameters (`GHyper`, vmappable over a grid) and the Python loop's fields (`LOOP_FIELDS`, the same as
PPO's: the runner's evaluation schedule and stopping rule, `rl.ppo_config.eval_steps` / `stop_rule`)."""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass
from typing import Literal

import jax.numpy as jnp

from core.errors import UsageError
from rl.ppo_config import LOOP_FIELDS

__all__ = ["LOOP_FIELDS", "GHyper", "GRPOConfig", "GStatic"]


@dataclass(frozen=True)
class GRPOConfig:
    """GRPO settings (Shao et al. 2024). Static fields fix shapes and control flow (a new value compiles a new
    program); traced fields only change numbers (arrays inside the program, vmappable over a grid)."""

    # --- static: the compiled program ---
    batch_size: int = 64
    """responses per update: batch_size / group_size prompts, group_size responses each."""
    group_size: int = 8
    """G: responses sampled per prompt; each one's advantage is relative to its group (>= 2)."""
    max_new: int = 16
    """response tokens sampled per prompt (T)."""
    epochs: int = 2
    """passes over each rollout batch (GRPO's mu; with 1 pass and 1 minibatch the ratio is 1 and the clip idle)."""
    minibatches: int = 2
    """minibatches per epoch; must divide batch_size."""
    eval_every: int = 10
    """updates per compiled chunk (as PPOConfig.eval_every)."""
    eval_batch: int = 128
    """fresh samples per evaluation (one per prompt, as PPO's)."""
    kl_log: Literal["k1", "k2", "k3"] = "k3"
    """a second estimator, logged as objective/kl_<name> beside objective/kl (always k1)."""
    fast_compile: bool = False
    """XLA backend optimisations off (tiny CPU runs, tests)."""
    # --- static: the Python loop only (as PPOConfig's) ---
    updates: int = 100
    """GRPO updates in the run; a multiple of eval_every."""
    bleu_sample: int = 64
    """evaluation responses subsampled for self-BLEU."""
    eval_schedule: Literal["every", "log"] = "every"
    """when to evaluate: every chunk, or log-spaced (`rl.ppo_config.eval_steps`)."""
    n_evals: int = 16
    """with eval_schedule "log": evaluations after step 0, at most."""
    stop_kl: float | None = None
    """optional early stop at this evaluation KL (every grid point); None: the update budget only."""
    # --- traced ---
    lr: float = 1e-4
    """Adam learning rate (constant)."""
    adam_eps: float = 1e-5
    """Adam epsilon."""
    clip: float = 0.2
    """policy ratio clip range."""
    kl_coef: float = 0.04
    """beta: coefficient of the per-token k3 KL to the reference in the loss (Shao et al.: 0.04); a grid's
    values override it."""
    adv_eps: float = 1e-4
    """eps in the group-relative advantage (r - mean) / (std + eps)."""
    grad_clip: float = 1.0
    """global gradient-norm clip."""
    temperature: float = 1.0
    """sampling temperature; policy and reference log-probs use the same one."""

    def __post_init__(self):
        for name in (
            "batch_size",
            "group_size",
            "max_new",
            "epochs",
            "minibatches",
            "eval_every",
            "eval_batch",
            "updates",
            "n_evals",
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise UsageError(f"GRPOConfig.{name} must be a positive integer, got {v!r}")
        if self.group_size < 2 or self.batch_size % self.group_size:
            raise UsageError(
                f"GRPOConfig.group_size={self.group_size} must be >= 2 and divide batch_size={self.batch_size}"
            )
        if self.batch_size % self.minibatches:
            raise UsageError(f"GRPOConfig.minibatches={self.minibatches} must divide batch_size={self.batch_size}")
        if self.updates % self.eval_every:
            raise UsageError(f"GRPOConfig.updates={self.updates} must be a multiple of eval_every={self.eval_every}")
        if self.kl_log not in ("k1", "k2", "k3"):
            raise UsageError(f"GRPOConfig.kl_log must be k1, k2 or k3, got {self.kl_log!r}")
        if self.eval_schedule not in ("every", "log"):
            raise UsageError(f"GRPOConfig.eval_schedule must be every or log, got {self.eval_schedule!r}")
        if self.stop_kl is not None and not (isinstance(self.stop_kl, (int, float)) and self.stop_kl > 0):
            raise UsageError(f"GRPOConfig.stop_kl must be None or a number > 0, got {self.stop_kl!r}")
        if not self.temperature > 0 or not self.lr > 0 or self.clip <= 0 or self.kl_coef < 0 or self.adv_eps < 0:
            raise UsageError("GRPOConfig: temperature, lr and clip must be > 0; kl_coef and adv_eps >= 0")

    def static(self) -> GStatic:
        """The fields that define the compiled program (hashable: a jit static argument)."""
        return GStatic(*(getattr(self, f) for f in GStatic._fields))

    def hyper(self, kl_coef: float | None = None) -> GHyper:
        """The traced fields as float32 scalars (kl_coef overridden when given)."""
        vals = {f: getattr(self, f) for f in GHyper._fields}
        if kl_coef is not None:
            vals["kl_coef"] = kl_coef
        return GHyper(**{k: jnp.float32(v) for k, v in vals.items()})


GStatic = namedtuple(
    "GStatic",
    [
        "batch_size",
        "group_size",
        "max_new",
        "epochs",
        "minibatches",
        "eval_every",
        "eval_batch",
        "kl_log",
        "fast_compile",
    ],
)
GHyper = namedtuple("GHyper", ["lr", "adam_eps", "clip", "kl_coef", "adv_eps", "grad_clip", "temperature"])
