"""Constrained PPO (Moskovitz et al. 2023, "Confronting reward model overoptimization with constrained RLHF"):
PPO whose proxy reward is held below a threshold, the "proxy point" (the proxy score past which gold falls),
by a Lagrange multiplier updated by dual ascent. On the optimizer interface (rl.optimizer) as algo
"ppo_constrained", run by the same resumable grid runner (rl.runner) over (kl_coef, seed) points.

The problem and its Lagrangian, with J(pi) the mean proxy score of the policy's samples and theta the threshold:
    max_pi  J(pi) - kl_coef * KL(pi || ref)   subject to  J(pi) <= theta
    L(pi, lambda) = (1 - lambda) J(pi) - kl_coef * KL + lambda * theta,   lambda >= 0.
The primal step is one PPO update whose reward is (1 - lambda) * score (the KL penalty unchanged); the dual
step, after it, is projected gradient descent of the dual on lambda (`dual_ascent`):
    lambda <- max(0, lambda + dual_lr * (J_batch - theta))
with J_batch the mean proxy score of that update's rollout batch. The multiplier lives in the runner state
(the optimizer state is the pair (Adam state, lambda), so checkpoints and resume carry it); each training row
logs `constraint/lambda` (the multiplier the update used), `constraint/proxy` (J_batch) and `constraint/gap`
(J_batch - theta); each evaluation row and points row carries the current multiplier (`constraint_lambda`)
and the threshold (`constraint_threshold`).

theta is in the reward's own units: the proxy's recentred score (0 = the initial policy's mean)."""

from __future__ import annotations

import functools
from collections import namedtuple
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from core.errors import UsageError
from rl.optimizer import Fns, Optimizer, RunnerState, grid_jit
from rl.ppo import init_policies, ppo_functions
from rl.ppo_config import Hyper, PPOConfig, Static

__all__ = ["PPO_CONSTRAINED", "CHyper", "ConstrainedPPOConfig", "Constraint", "dual_ascent", "make_ppo_constrained"]

CHyper = namedtuple("CHyper", [*Hyper._fields, "threshold", "dual_lr", "lambda_init"])
"""PPO's traced fields and the constraint's: all vmappable over a grid."""


@dataclass(frozen=True)
class Constraint:
    """The constraint's settings alone (a study's `rl.constraint`; PPO's come from `rl.ppo`)."""

    threshold: float = 1.0
    """theta, the proxy point: the bound on the mean recentred proxy score of the policy's samples."""
    dual_lr: float = 0.05
    """the dual step size on lambda (per update)."""
    lambda_init: float = 0.0
    """the multiplier's starting value (>= 0)."""


@dataclass(frozen=True)
class ConstrainedPPOConfig(PPOConfig):
    """PPOConfig's fields (the same static/traced split) and the constraint's traced fields."""

    threshold: float = 1.0
    """theta, the proxy point: the bound on the mean (recentred) proxy score of the policy's samples."""
    dual_lr: float = 0.05
    """the dual step size on lambda (per update)."""
    lambda_init: float = 0.0
    """the multiplier's starting value (>= 0)."""

    def __post_init__(self):
        super().__post_init__()
        if not self.dual_lr > 0 or not self.lambda_init >= 0:
            got = f"{self.dual_lr}, {self.lambda_init}"
            raise UsageError(f"ConstrainedPPOConfig: dual_lr must be > 0 and lambda_init >= 0, got {got}")

    def hyper(self, kl_coef: float | None = None) -> CHyper:
        """The traced fields as float32 scalars (kl_coef overridden when given)."""
        h = PPOConfig.hyper(self, kl_coef)
        return CHyper(*h, *(jnp.float32(getattr(self, f)) for f in ("threshold", "dual_lr", "lambda_init")))


def dual_ascent(lam, value, threshold, lr):
    """One projected dual step for the constraint value <= threshold: max(0, lam + lr * (value - threshold))."""
    return jnp.maximum(lam + lr * (value - threshold), 0.0)


@functools.lru_cache(maxsize=32)
def make_ppo_constrained(
    graphdef, ref_graphdef, reward_fn: Callable, gold_fn: Callable, static: Static, prompt_len: int
) -> Fns:
    """The jitted programs of constrained PPO (arguments as `rl.ppo.make_ppo`'s). Its `state_metrics` gives
    each grid point's current multiplier for the evaluation rows."""
    ppo_init, ppo_update, evaluate = ppo_functions(graphdef, ref_graphdef, reward_fn, gold_fn, static, prompt_len)

    def init(policy_state, h: CHyper, seed):
        r = ppo_init(policy_state, h, seed)
        return r._replace(opt_state=(r.opt_state, jnp.copy(h.lambda_init)))

    def update(runner: RunnerState, h: CHyper, ref_state, bank, reward_params):
        adam, lam = runner.opt_state
        out, m = ppo_update(runner._replace(opt_state=adam), h, ref_state, bank, reward_params, 1.0 - lam)
        proxy = m["objective/scores"]
        m = {**m, "constraint/lambda": lam, "constraint/proxy": proxy, "constraint/gap": proxy - h.threshold}
        return out._replace(opt_state=(out.opt_state, dual_ascent(lam, proxy, h.threshold, h.dual_lr))), m

    def chunk(runner, h, ref_state, bank, reward_params, gold_params):
        del gold_params
        return jax.lax.scan(
            lambda r, _: update(r, h, ref_state, bank, reward_params), runner, None, length=static.eval_every
        )

    fns = grid_jit(init, chunk, evaluate, static.fast_compile)
    return fns._replace(state_metrics=_state_metrics)


def _state_metrics(runner: RunnerState, hyper: CHyper) -> dict:
    return {"constraint/lambda": runner.opt_state[1], "constraint/threshold": hyper.threshold}


PPO_CONSTRAINED = Optimizer(
    "ppo_constrained", "ppo_constrained", ConstrainedPPOConfig, init_policies, make_ppo_constrained
)
"""Constrained PPO on the optimizer interface: algo "ppo_constrained", config key "ppo_constrained"."""
