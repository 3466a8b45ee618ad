"""KL estimators against the analytic KL of small categoricals (a float64 loop): exact expectations and Monte Carlo."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from core.errors import UsageError
from rl.kl import k1, k2, k3, kl_penalty, sequence_kl


def _kl_loop(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True) if pi > 0)


def _pair(seed, size=6):
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.ones(size)), rng.dirichlet(np.ones(size))


@pytest.mark.parametrize("estimator", [k1, k3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unbiased_estimators_by_exact_expectation(estimator, seed):
    p, q = _pair(seed)
    exact = float(np.sum(p * estimator(np.log(p), np.log(q))))  # E over the whole support, weighted
    assert exact == pytest.approx(_kl_loop(p, q), rel=1e-12)
    got_jax = jnp.sum(jnp.asarray(p, jnp.float32) * estimator(jnp.log(p), jnp.log(q)))
    assert float(got_jax) == pytest.approx(_kl_loop(p, q), rel=1e-5)


def test_k2_bias_is_as_documented():
    p, q = _pair(3)
    u = [math.log(qi / pi) for pi, qi in zip(p, q, strict=True)]
    expected_k2 = float(np.sum(p * k2(np.log(p), np.log(q))))
    predicted = -sum(pi * (math.exp(ui) - 1 - ui - ui * ui / 2) for pi, ui in zip(p, u, strict=True))
    assert expected_k2 - _kl_loop(p, q) == pytest.approx(predicted, rel=1e-10)


def _tilt(p, h, eps):
    q = p * np.exp(eps * h)
    return q / q.sum()


def test_k2_bias_is_third_order_and_of_either_sign():
    p, _ = _pair(4)
    h = np.array([3.0, 0.0, 0.0, 0.0, 0.0, -0.5])  # skewed under p, so E[u^3] != 0

    def bias(eps, sign=1.0):
        q = _tilt(p, sign * h, eps)
        return float(np.sum(p * k2(np.log(p), np.log(q)))) - _kl_loop(p, q)

    ratio = bias(0.02) / bias(0.01)
    assert 7.0 < ratio < 9.0  # halving the tilt divides the bias by about 2^3
    assert abs(bias(0.01)) < 1e-2 * _kl_loop(p, _tilt(p, h, 0.01))
    assert bias(0.05) * bias(0.05, sign=-1.0) < 0


def test_k3_has_lower_variance_than_k1_near_ref():
    p, _ = _pair(5)
    q = _tilt(p, np.linspace(-1, 1, 6), 0.1)
    lp, lq = np.log(p), np.log(q)
    var = {f.__name__: float(np.sum(p * f(lp, lq) ** 2) - np.sum(p * f(lp, lq)) ** 2) for f in (k1, k3)}
    assert var["k3"] < 0.1 * var["k1"]
    assert np.all(k3(lp, lq) >= 0) and np.all(k2(lp, lq) >= 0) and np.any(k1(lp, lq) < 0)


def test_k3_is_accurate_for_tiny_log_ratios():
    u = 1e-9  # k3 ~ u^2 / 2, lost entirely by a naive r - 1 - log r
    assert float(k3(np.float64(0.0), np.float64(u))) == pytest.approx(u * u / 2, rel=1e-6)


def test_monte_carlo_within_sampling_error():
    p, q = _pair(6)
    kl = _kl_loop(p, q)
    rng = np.random.default_rng(7)
    x = rng.choice(len(p), size=100_000, p=p)
    lp, lq = np.log(p)[x], np.log(q)[x]
    for name in ("k1", "k3"):
        est = kl_penalty(lp, lq, name)
        assert abs(est.mean() - kl) < 4.5 * est.std(ddof=1) / math.sqrt(len(x))
    est = kl_penalty(lp, lq, "k2")
    exact_k2 = float(np.sum(p * k2(np.log(p), np.log(q))))
    assert abs(est.mean() - exact_k2) < 4.5 * est.std(ddof=1) / math.sqrt(len(x))


def _two_step_world(seed):
    """pi and ref over sequences of up to 2 tokens from {0, 1, 2}; token 0 is EOS and ends a sequence."""
    rng = np.random.default_rng(seed)
    first = [rng.dirichlet(np.ones(3)) for _ in range(2)]  # [model] -> P(x1)
    second = [rng.dirichlet(np.ones(3), size=3) for _ in range(2)]  # [model][x1] -> P(x2 | x1)
    seqs = [(0,)] + [(a, b) for a in (1, 2) for b in range(3)]

    def prob(model, seq):
        pr = first[model][seq[0]]
        return pr * second[model][seq[0]][seq[1]] if len(seq) == 2 else pr

    def token_logprobs(model, seq):
        out = [math.log(first[model][seq[0]])]
        if len(seq) == 2:
            out.append(math.log(second[model][seq[0]][seq[1]]))
        return out

    return seqs, prob, token_logprobs


@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_sequence_kl_sums_are_unbiased_for_the_sequence_kl(estimator):
    seqs, prob, token_logprobs = _two_step_world(8)
    logp = np.full((len(seqs), 2), -np.inf)  # padding holds garbage the mask must hide
    logq = np.full((len(seqs), 2), np.nan)
    mask = np.zeros((len(seqs), 2), dtype=bool)
    for b, seq in enumerate(seqs):
        logp[b, : len(seq)] = token_logprobs(0, seq)
        logq[b, : len(seq)] = token_logprobs(1, seq)
        mask[b, : len(seq)] = True
    weights = np.array([prob(0, s) for s in seqs])
    joint_kl = _kl_loop(weights, [prob(1, s) for s in seqs])
    per_seq = sequence_kl(logp, logq, mask, estimator)
    assert np.all(np.isfinite(per_seq))
    assert float(np.sum(weights * per_seq)) == pytest.approx(joint_kl, rel=1e-12)
    fn = jax.jit(sequence_kl, static_argnames="estimator")
    got = fn(jnp.asarray(logp, jnp.float32), jnp.asarray(logq, jnp.float32), jnp.asarray(mask), estimator)
    np.testing.assert_allclose(np.asarray(got), per_seq, rtol=1e-5, atol=1e-6)
    grad = jax.grad(lambda lp: fn(lp, jnp.asarray(logq, jnp.float32), jnp.asarray(mask), estimator).sum())
    assert bool(jnp.all(jnp.isfinite(grad(jnp.asarray(logp, jnp.float32)))))


def test_sequence_kl_of_identical_policies_is_zero():
    rng = np.random.default_rng(9)
    lp = np.log(rng.uniform(0.1, 1.0, size=(4, 5)))
    mask = np.arange(5)[None, :] < np.array([[0], [2], [5], [3]])
    for name in ("k1", "k2", "k3"):
        np.testing.assert_array_equal(sequence_kl(lp, lp, mask, name), np.zeros(4))
    assert sequence_kl(lp, lp + 1.0, mask, "k1").tolist() == [0.0, -2.0, -5.0, -3.0]


def test_unknown_estimator_is_a_usage_error():
    with pytest.raises(UsageError):
        kl_penalty(np.zeros(3), np.zeros(3), "k4")
