"""Scanned GAE against a plain Python double loop in float64; whiten against NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rl.gae import gae, whiten


def _gae_loop(rewards, values, lengths, gamma, lam):
    """The textbook recursion over each row's valid tokens, float64, nothing bootstrapped past the end."""
    adv = np.zeros(rewards.shape)
    for b, length in enumerate(lengths):
        last = 0.0
        for t in reversed(range(length)):
            next_value = values[b, t + 1] if t + 1 < length else 0.0
            delta = rewards[b, t] + gamma * next_value - values[b, t]
            last = delta + gamma * lam * last
            adv[b, t] = last
    ret = np.zeros(rewards.shape)
    for b, length in enumerate(lengths):
        ret[b, :length] = adv[b, :length] + values[b, :length]
    return adv, ret


def _batch(seed, batch=6, steps=9):
    rng = np.random.default_rng(seed)
    rewards = rng.normal(size=(batch, steps))
    values = rng.normal(size=(batch, steps))
    lengths = np.array([0, steps, 1, *rng.integers(0, steps + 1, batch - 3)])
    mask = np.arange(steps)[None, :] < lengths[:, None]
    # garbage past the end must not leak in
    rewards[~mask] = 1e3
    values[~mask] = -1e3
    return rewards, values, mask, lengths


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 0.5), (0.99, 1.0), (1.0, 0.0)])
def test_gae_equals_double_loop_in_float64(gamma, lam):
    rewards, values, mask, lengths = _batch(0)
    ref_adv, ref_ret = _gae_loop(rewards, values, lengths, gamma, lam)
    with jax.enable_x64(True):
        adv, ret = jax.jit(gae)(jnp.asarray(rewards), jnp.asarray(values), jnp.asarray(mask), gamma, lam)
        assert adv.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(adv), ref_adv, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(np.asarray(ret), ref_ret, rtol=1e-12, atol=1e-12)


def test_gae_float32_and_vmap_over_lam():
    rewards, values, mask, lengths = _batch(1)
    lams = jnp.array([0.0, 0.95, 1.0], dtype=jnp.float32)
    r32, v32 = rewards.astype(np.float32), values.astype(np.float32)
    fn = jax.jit(jax.vmap(lambda lam: gae(r32, v32, mask, 1.0, lam)))
    advs, rets = fn(lams)
    assert advs.dtype == jnp.float32 and advs.shape == (3, *rewards.shape)
    for k, lam in enumerate([0.0, 0.95, 1.0]):
        ref_adv, ref_ret = _gae_loop(rewards, values, lengths, 1.0, lam)
        np.testing.assert_allclose(np.asarray(advs[k]), ref_adv, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.asarray(rets[k]), ref_ret, rtol=1e-5, atol=1e-5)


def test_lam_one_gamma_one_gives_reward_to_go_minus_value():
    rewards, values, mask, lengths = _batch(2)
    adv, ret = gae(rewards.astype(np.float32), values.astype(np.float32), mask, 1.0, 1.0)
    to_go = np.where(mask, np.cumsum(np.where(mask, rewards, 0.0)[:, ::-1], axis=1)[:, ::-1], 0.0)
    np.testing.assert_allclose(np.asarray(ret), to_go, rtol=1e-5, atol=1e-4)


def test_a_hole_in_the_mask_ends_the_trajectory():
    rng = np.random.default_rng(3)
    rewards, values = rng.normal(size=(2, 1, 5))
    mask = np.array([[True, True, False, True, True]])
    adv, _ = gae(rewards, values, mask, 0.9, 0.8)
    head, _ = _gae_loop(rewards[:, :2], values[:, :2], [2], 0.9, 0.8)
    tail, _ = _gae_loop(rewards[:, 3:], values[:, 3:], [2], 0.9, 0.8)
    np.testing.assert_allclose(np.asarray(adv), np.concatenate([head, [[0.0]], tail], axis=1), rtol=1e-5)


@pytest.mark.parametrize("shift_mean", [True, False])
def test_whiten_matches_numpy(shift_mean):
    rewards, _, mask, _ = _batch(4)
    x = rewards.astype(np.float32)
    got = np.asarray(jax.jit(whiten, static_argnames="shift_mean")(x, mask, shift_mean=shift_mean))
    sel = rewards[mask]
    ref = (rewards - sel.mean()) / np.sqrt(sel.var() + 1e-8)
    if not shift_mean:
        ref = ref + sel.mean()
    np.testing.assert_allclose(got[mask], ref[mask], rtol=1e-5, atol=1e-5)
    assert np.all(got[~mask] == 0.0)
    if shift_mean:
        assert abs(got[mask].mean()) < 1e-5 and got[mask].std() == pytest.approx(1.0, rel=1e-4)
