"""The optimizer interface every RL-style optimizer meets, so that one runner (rl.runner) serves them all.

An optimizer is a set of pure functions plus its config:
  - a config class (e.g. `PPOConfig`) with `static()` (the compiled program's shape fields, hashable) and
    `hyper(kl_coef)` (the traced fields as f32 scalars, a NamedTuple: vmappable over a grid), and the loop's
    fields `updates`, `eval_every`, `eval_schedule`, `n_evals`, `stop_kl`, `bleu_sample`, `temperature`,
    `max_new` (read by `rl.ppo_config.eval_steps` / `stop_rule` and the runner);
  - `init_policies(graphdef, state, seeds) -> (graphdef, states stacked [G, ...])`: each grid point's
    starting policy from the pretrained initial policy (PPO adds a value head; GRPO copies it);
  - `make(graphdef, ref_graphdef, reward_fn, gold_fn, static, prompt_len) -> Fns`: the jitted programs
    (`init`, a `chunk` of `eval_every` updates, `evaluate`, and their vmaps over a leading grid axis).

The programs share one signature and one runner state (`RunnerState`), and their metrics share names: a
chunk returns per-update metrics with `loss/finite` (the non-finite stop), `objective/kl`,
`objective/kl_coef`; `evaluate` returns `objective/kl` (k1 sequence KL), `objective/entropy`,
`proxy/score`, `gold/<component>` (with `gold/score`) and `eval/gold_se`, plus the evaluation's tokens and
mask. Rows and points name the optimizer by `Optimizer.name` (the points' `algo` column).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax


class RunnerState(NamedTuple):
    """Everything a run carries from one update to the next (what a checkpoint holds)."""

    params: Any  # nnx.State of the policy
    opt_state: Any  # Optax state
    key: Any  # uint32[2] PRNG key of the next update
    kl_coef: Any  # f32 current KL coefficient (moves only under PPO's adaptive controller)
    step: Any  # int32 updates done


class Fns(NamedTuple):
    """The jitted programs of one (policy graphdef, reward fn, gold fn, static config).

    `chunk` and `chunk_grid` donate the runner they are given: use only the runner they return.
    """

    init: Callable  # (policy_state, hyper, seed) -> RunnerState
    # (runner, hyper, ref_state, bank, reward_params, gold_params) -> (runner, metrics[eval_every])
    chunk: Callable
    # (params, hyper, seed, step, ref_state, bank, reward_params, gold_params) -> (metrics, tokens, mask)
    evaluate: Callable
    # the three above, vmapped over a leading grid axis of runner/hyper/seed (the rest shared)
    init_grid: Callable
    chunk_grid: Callable
    evaluate_grid: Callable
    # optional: (runner, hyper) -> dict of scalars per grid point (the runner state's own numbers, e.g. a
    # Lagrange multiplier), added to each evaluation row; None: nothing
    state_metrics: Callable | None = None


class Optimizer(NamedTuple):
    """One optimizer as the runner sees it (see the module docstring).

    name: the points' `algo` ("ppo", "grpo"); config_key: the key of its config in a run's config.json;
    config: its config class; init_policies and make: as in the module docstring.
    """

    name: str
    config_key: str
    config: type
    init_policies: Callable
    make: Callable


def grid_jit(init, chunk, evaluate, fast_compile: bool) -> Fns:
    """The jitted programs and their grid vmaps from the three pure functions of an optimizer.

    chunk donates its runner; the grid versions vmap runner, hyper and seed and share ref_state, bank and
    the scorers' params (one copy for the whole grid). fast_compile: XLA backend optimisations off."""
    opts = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
    jit = lambda f, **kw: jax.jit(f, compiler_options=opts if fast_compile else None, **kw)
    shared = (None,) * 4  # ref_state, bank, reward_params, gold_params
    return Fns(
        init=jit(init),
        chunk=jit(chunk, donate_argnums=0),
        evaluate=jit(evaluate),
        init_grid=jit(jax.vmap(init)),
        chunk_grid=jit(jax.vmap(chunk, in_axes=(0, 0, *shared)), donate_argnums=0),
        evaluate_grid=jit(jax.vmap(evaluate, in_axes=(0, 0, 0, None, *shared))),
    )
