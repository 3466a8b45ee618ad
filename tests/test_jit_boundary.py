"""Weights cross the jit boundary as arguments, never as closed-over constants.

Two proxies of one shape with different weights must share one compiled PPO program (the same
`PPOFns` from `make_ppo`, the chunk and evaluation programs compiled once) and still give different
rewards; proxy scoring (`proxy_rm.train.score`) compiles once per batch shape, whatever the weights.
A reward function that closed over its weights would fail every count below.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from core.tokens import BOS, N_SPECIAL, SEP
from lm.model import ModelConfig, init
from proxy_rm.train import ProxyReward, init_states, member_scores, score
from rl.ppo import Scorer, init_policies, make_ppo
from rl.ppo_config import PPOConfig

V, P, T = 16, 4, 4
POLICY = ModelConfig(vocab_size=V, n_ctx=P + T, n_layer=1, d_model=16, n_head=2)
RM = ModelConfig(vocab_size=V, n_ctx=P + T, n_layer=1, d_model=8, n_head=2)
# a config no other test module uses, so the compile counts start from an empty cache
CFG = PPOConfig(
    batch_size=4,
    max_new=T,
    epochs=1,
    minibatches=1,
    eval_every=2,
    eval_batch=6,
    updates=2,
    fast_compile=True,
    bleu_sample=4,
)


def gold_fn(params, tokens, mask):
    del tokens
    return {"score": params * jnp.sum(mask, axis=1).astype(jnp.float32)}


def proxy(seed: int, offset) -> Scorer:
    """A two-member proxy ensemble with random weights, scored by its mean objective."""
    graphdef, states = init_states(RM, [seed, seed + 1])
    return Scorer(ProxyReward(graphdef, P, "last", objective="mean"), (states, jnp.asarray(offset, jnp.float32)))


def bank(n=8):
    b = np.random.default_rng(0).integers(N_SPECIAL, V, size=(n, P)).astype(np.int32)
    b[:, 0], b[:, -1] = BOS, SEP
    return jnp.asarray(b)


@pytest.fixture(scope="module")
def policy():
    pre = init(POLICY, 0)
    pg, stacked = init_policies(*pre, [0])
    return pre, pg, jax.tree.map(lambda x: x[0], stacked)


def test_two_proxies_share_one_compiled_ppo_program(policy):
    (pre_def, pre_state), pg, state = policy
    a, b = proxy(1, [0.0, 0.5]), proxy(7, [0.3, -0.2])
    assert a.fn == b.fn and hash(a.fn) == hash(b.fn)  # hashed by value: the cache key
    gold = Scorer(gold_fn, jnp.float32(2.0))
    fns = make_ppo(pg, pre_def, a.fn, gold.fn, CFG.static(), P)
    assert make_ppo(pg, pre_def, b.fn, gold.fn, CFG.static(), P) is fns
    h, data = CFG.hyper(), bank()
    scores, proxy_scores = [], []
    for r in (a, b, a):
        runner = fns.init(state, h, jnp.int32(0))
        out, m = fns.chunk(runner, h, pre_state, data, r.params, gold.params)
        assert all(x.is_deleted() for x in jax.tree.leaves(runner))  # donated
        assert not any(x.is_deleted() for x in jax.tree.leaves((state, h)))  # init's outputs alias no input
        scores.append(np.asarray(m["objective/scores"]))
        ev, tokens, mask = fns.evaluate(
            out.params, h, jnp.int32(0), jnp.int32(2), pre_state, data, r.params, gold.params
        )
        direct = np.asarray(r.fn(r.params, tokens, mask))  # the reward outside the program, same weights
        np.testing.assert_allclose(float(ev["proxy/score"]), direct.mean(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(float(ev["gold/score"]), 2.0 * np.asarray(mask).sum(1).mean(), rtol=1e-6)
        proxy_scores.append(float(ev["proxy/score"]))
    assert fns.chunk._cache_size() == 1 and fns.evaluate._cache_size() == 1  # one compile for both proxies
    # the first update's rollout is the same (same policy and key): only the weights differ
    assert not np.allclose(scores[0][0], scores[1][0])
    np.testing.assert_array_equal(scores[0], scores[2])  # the same weights again: the same numbers
    assert proxy_scores[0] == proxy_scores[2] != proxy_scores[1]


def test_proxy_score_compiles_once_per_shape():
    graphdef, one = init_states(RM, [3, 4])
    _, other = init_states(RM, [5, 6])
    rng = np.random.default_rng(1)
    tokens = rng.integers(N_SPECIAL, V, size=(10, P + T)).astype(np.int32)
    mask = np.ones((10, T), bool)
    before = member_scores._cache_size()
    s1 = score(graphdef, one, tokens, mask, P, batch_size=5)
    s2 = score(graphdef, other, tokens, mask, P, batch_size=5)
    assert member_scores._cache_size() == before + 1  # two ensembles, two batches each: one program
    assert s1.shape == s2.shape == (2, 10) and not np.allclose(s1, s2)
    score(graphdef, other, tokens[:7], mask[:7], P, batch_size=5)  # a last batch of 2 rows: one more shape
    assert member_scores._cache_size() == before + 2
    score(graphdef, one, tokens, mask, P, batch_size=5, pool="mean")  # pool is static
    assert member_scores._cache_size() == before + 3
