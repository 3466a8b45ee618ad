"""PPO's probe task at a tiny size (test_ppo, test_rl_schedule): reward 1 when the response holds TARGET,
a NaN reward for prompts holding POISON (the non-finite stop). Every user shares one compiled program
(the same policy graphdef, reward, gold and static config); `conftest` builds the policy and the
reference grid run once for the session. `fast_compile` trades step speed for compile time. `grid_point_vs_single`:
the "vmapped grid point = single run" check every optimizer of rl/optimizer.py shares."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from core.tokens import BOS, N_SPECIAL, SEP
from lm.model import ModelConfig, init
from rl import program
from rl.ppo import Scorer
from rl.ppo_config import PPOConfig

V, P, T = 16, 4, 8
TARGET = 7  # the probe: reward 1 when the response contains this token
POISON = 15  # a prompt holding this token gets a NaN reward (to test the non-finite stop)
CFG = PPOConfig(
    batch_size=32,
    max_new=T,
    epochs=2,
    minibatches=2,
    eval_every=10,
    eval_batch=64,
    updates=40,
    lr=1e-3,
    fast_compile=True,
    bleu_sample=16,
)
GRID = [(0.0, 0), (2.0, 1)]


def reward_fn(params, tokens, mask):
    del params
    hit = jnp.any((tokens[:, P:] == TARGET) & mask, axis=1).astype(jnp.float32)
    return jnp.where(jnp.any(tokens[:, :P] == POISON, axis=1), jnp.nan, hit)


def gold_fn(params, tokens, mask):
    del params
    hit = jnp.any((tokens[:, P:] == TARGET) & mask, axis=1).astype(jnp.float32)
    return {"score": hit, "target": hit, "length": jnp.sum(mask, axis=1).astype(jnp.float32)}


REWARD, GOLD = Scorer(reward_fn, ()), Scorer(gold_fn, ())


def make_bank(n=32, seed=0):
    bank = np.random.default_rng(seed).integers(N_SPECIAL, POISON, size=(n, P)).astype(np.int32)
    bank[:, 0], bank[:, -1] = BOS, SEP
    return bank


def make_policy():
    # Untied LM head: the policy must copy it besides the trunk (checked by KL = 0 at step 0).
    return init(ModelConfig(vocab_size=V, n_ctx=P + T, n_layer=1, d_model=32, n_head=2, tie_embeddings=False), 0)


def grid_point_vs_single(policy, cfg, grid, g: int = 1):
    """One chunk of the vmapped grid program against grid point `g` run alone (the optimizer of `cfg`, the
    probe's reward, gold and bank): every state leaf and every metric of point g equal (rtol 1e-4, atol 1e-5).
    Returns: (the program, the grid's input state (donated to the chunk), the single run's metrics)."""
    prog = program.build(policy, REWARD, GOLD, make_bank(), cfg, grid)
    grid_in = prog.fns.init_grid(prog.policy_states, prog.hyper, prog.seeds)
    grid_out, grid_m = prog.fns.chunk_grid(grid_in, prog.hyper, prog.ref_state, prog.bank, *prog.scorer_params)
    pick = lambda tree: jax.tree.map(lambda x: x[g], tree)
    single = prog.fns.init(pick(prog.policy_states), pick(prog.hyper), prog.seeds[g])
    out, m = prog.fns.chunk(single, pick(prog.hyper), prog.ref_state, prog.bank, *prog.scorer_params)
    for a, b in zip(jax.tree.leaves(pick(grid_out)), jax.tree.leaves(out), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
    for k in m:
        np.testing.assert_allclose(np.asarray(grid_m[k][g]), np.asarray(m[k]), rtol=1e-4, atol=1e-5, err_msg=k)
    return prog, grid_in, m
