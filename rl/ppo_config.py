"""PPO settings: `PPOConfig` and its split into the compiled program's static fields (`Static`), the
traced hyperparameters (`Hyper`, vmappable over a grid) and the Python loop's fields (`LOOP_FIELDS`);
the loop's evaluation schedule (`eval_steps`) and its recorded stopping rule (`stop_rule`)."""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass, field
from typing import Literal

import jax.numpy as jnp
import numpy as np

from core.errors import UsageError
from core.store import OMIT_DEFAULT


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
    """updates per compiled chunk; training rows are logged after every chunk, evaluation and a checkpoint
    after the chunks `eval_steps` schedules (all of them with eval_schedule "every")."""
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
    warmup: int = field(default=0, metadata=OMIT_DEFAULT)
    """updates of a linear learning-rate warm-up: update u (from 0) steps with lr * min(1, (u + 1) / warmup), the
    same factor for each of its minibatch steps (Adam's state is untouched: its step is scaled). 0: none, the
    program of before the knob. Adam's first steps are as large as any later one whatever the gradient's size."""
    # --- static: the Python loop only ---
    updates: int = 100
    """PPO updates in the run; a multiple of eval_every."""
    bleu_sample: int = 64
    """evaluation responses subsampled for self-BLEU."""
    eval_schedule: Literal["every", "log"] = "every"
    """when to evaluate (besides step 0): "every" chunk, or after the chunks ending at log-spaced update
    counts ("log": dense at low KL, where the gold curve rises; see `eval_steps`)."""
    n_evals: int = 16
    """with eval_schedule "log": evaluations after step 0, at most (rounding to chunks can merge some)."""
    stop_kl: float | None = None
    """optional early stop: stop the grid after the first evaluation at which every grid point's KL
    (objective/kl) is >= stop_kl. None (default): the update budget `updates` is the only stopping rule."""
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
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise UsageError(f"PPOConfig.warmup must be an integer >= 0 (updates), got {self.warmup!r}")
        for name in ("kl_penalty", "kl_log"):
            if getattr(self, name) not in ("k1", "k2", "k3"):
                raise UsageError(f"PPOConfig.{name} must be k1, k2 or k3, got {getattr(self, name)!r}")
        if self.eval_schedule not in ("every", "log"):
            raise UsageError(f"PPOConfig.eval_schedule must be every or log, got {self.eval_schedule!r}")
        if isinstance(self.n_evals, bool) or not isinstance(self.n_evals, int) or self.n_evals < 1:
            raise UsageError(f"PPOConfig.n_evals must be a positive integer, got {self.n_evals!r}")
        if self.stop_kl is not None and not (isinstance(self.stop_kl, (int, float)) and self.stop_kl > 0):
            raise UsageError(f"PPOConfig.stop_kl must be None or a number > 0, got {self.stop_kl!r}")
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
        "warmup",
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
LOOP_FIELDS = ("updates", "bleu_sample", "eval_schedule", "n_evals", "stop_kl")


def eval_steps(cfg: PPOConfig) -> list[int]:
    """The update counts after which the runner evaluates (step 0, the initial policy, is evaluated too).

    "every": every chunk, eval_every, 2 eval_every, ..., updates. "log": the distinct multiples of
    eval_every nearest (halves rounded up) to geomspace(eval_every, updates, n_evals), so the first chunk
    and `updates` are always among them; rounding merges neighbours where they are closer than a chunk,
    so there can be fewer than n_evals (updates=200, eval_every=1, n_evals=16 gives 15). n_evals=1 (or
    updates == eval_every) gives [updates]. Returns: sorted distinct ints, the last one `updates`.
    """
    e, u = cfg.eval_every, cfg.updates
    if cfg.eval_schedule == "every":
        return list(range(e, u + 1, e))
    if cfg.n_evals == 1:
        return [u]
    chunks = np.floor(np.geomspace(1.0, u / e, cfg.n_evals) + 0.5).astype(int)
    return sorted({int(c) * e for c in np.clip(chunks, 1, u // e)} | {u})


def stop_rule(cfg: PPOConfig) -> str:
    """The stopping rule, fixed before judging (a points column and in the run's DONE): e.g. "updates=200",
    or "updates=200|stop_kl=20" when the optional KL stop is on."""
    rule = f"updates={cfg.updates}"
    return rule if cfg.stop_kl is None else f"{rule}|stop_kl={cfg.stop_kl:g}"
