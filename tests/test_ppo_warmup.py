"""PPO's learning-rate warm-up (`PPOConfig.warmup`) against a hand-scheduled reference: the program with no warm-up,
stepped one update at a time with Adam's lr set to lr * min(1, (u + 1) / warmup) for update u (Adam's step is
proportional to its lr, so both are the same steps), and the first update against the analytic 1 / warmup of the
constant-lr step. The probe task and policy are tests/ppo_probe.py's."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ppo_probe import CFG, GOLD, REWARD, make_bank

from core.errors import UsageError
from rl import program
from rl.ppo_config import PPOConfig

WARM = dataclasses.replace(CFG, eval_every=1, updates=6, warmup=4, epochs=1, minibatches=1)  # one Adam step an update
BASE = dataclasses.replace(WARM, warmup=0)
GRID = [(0.0, 3)]


def _single(policy, cfg):
    prog = program.build(policy, REWARD, GOLD, make_bank(), cfg, GRID)
    pick = lambda tree: jax.tree.map(lambda x: x[0], tree)
    h = pick(prog.hyper)
    return prog, prog.fns.init(pick(prog.policy_states), h, prog.seeds[0]), h


def _update(prog, state, h):
    state, _ = prog.fns.chunk(state, h, prog.ref_state, prog.bank, *prog.scorer_params)  # one update a chunk
    return state


def _params(state):
    return [np.asarray(x, np.float64) for x in jax.tree.leaves(state.params)]


def test_warmup_equals_a_hand_scheduled_lr(probe_policy):
    prog_w, warm, h_w = _single(probe_policy, WARM)
    prog_b, ref, h_b = _single(probe_policy, BASE)
    start = _params(ref)
    for u in range(WARM.updates):
        warm = _update(prog_w, warm, h_w)
        lr = np.float32(BASE.lr * min(1.0, (u + 1) / WARM.warmup))
        ref = _update(prog_b, ref, h_b._replace(lr=jnp.float32(lr)))
        if u == 0:  # the first update's step is 1 / warmup of the constant-lr step (same rollout, same gradients)
            const = _update(*_single(probe_policy, BASE)[:2], h_b)
            for a, b, s in zip(_params(warm), _params(const), start, strict=True):
                np.testing.assert_allclose(a - s, (b - s) / WARM.warmup, rtol=1e-3, atol=1e-7)
    for a, b in zip(_params(warm), _params(ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    # and it is not the constant-lr run: 6 updates at full lr land elsewhere
    const = _single(probe_policy, BASE)[1]
    for _ in range(WARM.updates):
        const = _update(prog_b, const, h_b)
    assert max(np.abs(a - b).max() for a, b in zip(_params(warm), _params(const), strict=True)) > 1e-3


def test_no_warmup_is_the_program_of_before():
    assert BASE.static().warmup == 0 and "warmup" not in BASE.hyper()._fields
    with pytest.raises(UsageError, match="warmup"):
        PPOConfig(warmup=-1)
    with pytest.raises(UsageError, match="warmup"):
        PPOConfig(warmup=True)
