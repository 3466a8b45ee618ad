"""Ensemble objectives against a plain-Python reference (the statistics module), NumPy and JAX paths."""

import statistics

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from core.errors import UsageError
from proxy_rm.ensemble import OBJECTIVES, objective, uwo


def _reference(name, column, lam=0.0, ddof=0):
    column = [float(x) for x in column]
    if name == "mean":
        return statistics.fmean(column)
    if name == "min":
        return min(column)
    if name == "median":
        return statistics.median(column)
    var = statistics.pvariance(column) if ddof == 0 else statistics.variance(column)
    return statistics.fmean(column) - lam * var


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("name", OBJECTIVES)
def test_numpy_matches_reference(name, k):
    rng = np.random.default_rng(k)
    scores = rng.normal(size=(k, 3, 4))
    got = objective(name, scores, lam=0.7)
    assert isinstance(got, np.ndarray) and got.shape == (3, 4) and got.dtype == np.float64
    ref = np.array([[_reference(name, scores[:, i, j], lam=0.7) for j in range(4)] for i in range(3)])
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


def test_uwo_sample_variance_option():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(4, 6))
    ref = [_reference("uwo", scores[:, j], lam=0.5, ddof=1) for j in range(6)]
    np.testing.assert_allclose(uwo(scores, lam=0.5, ddof=1), ref, rtol=1e-12)
    # population and sample penalties differ by k / (k - 1)
    pop = scores.mean(0) - uwo(scores, lam=1.0)
    np.testing.assert_allclose(scores.mean(0) - uwo(scores, lam=1.0, ddof=1), pop * 4 / 3, rtol=1e-12)


@pytest.mark.parametrize("name", OBJECTIVES)
def test_jax_path_is_jittable_and_matches(name):
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(4, 8)).astype(np.float32)
    fn = jax.jit(lambda s, lam: objective(name, s, lam=lam))
    got = fn(jnp.asarray(scores), 0.3)
    assert isinstance(got, jax.Array)
    ref = [_reference(name, scores[:, j], lam=0.3) for j in range(8)]
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-5, atol=1e-6)


def test_uwo_vmaps_over_lam():
    rng = np.random.default_rng(2)
    scores = jnp.asarray(rng.normal(size=(3, 5)).astype(np.float32))
    lams = jnp.array([0.0, 0.5, 2.0])
    got = jax.vmap(lambda lam: uwo(scores, lam=lam))(lams)
    s = np.asarray(scores, dtype=np.float64)
    ref = [[_reference("uwo", s[:, j], lam=float(lam)) for j in range(5)] for lam in lams]
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "call",
    [
        lambda: objective("max", np.zeros((2, 3))),
        lambda: objective("mean", np.zeros((0, 3))),
        lambda: objective("mean", np.float64(1.0)),
        lambda: uwo(np.zeros((1, 3)), ddof=1),
        lambda: uwo(np.zeros((2, 3)), lam=float("nan")),
    ],
)
def test_bad_input_is_a_usage_error(call):
    with pytest.raises(UsageError):
        call()
