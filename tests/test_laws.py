"""Law forms and closed-form peaks, checked against numerical maximisation and finite differences."""

import math

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from scaling.laws import (
    DEFAULT_LAW,
    LAWS,
    bon_law,
    peak,
    power_jacobian,
    power_law,
    rl_law,
)


def numeric_peak(f, d_hi=1e4):
    """Maximum of f on (0, d_hi]: dense log grid, then a bounded Brent refinement around the best point."""
    d = np.geomspace(1e-6, d_hi, 200001)
    y = f(d)
    i = int(np.argmax(y))
    assert 0 < i < len(d) - 1, "maximum at the edge of the grid"
    res = minimize_scalar(
        lambda x: -float(f(np.array([x]))[0]), bounds=(d[i - 1], d[i + 1]), method="bounded", options={"xatol": 1e-12}
    )
    return res.x, -res.fun


PARAMS = [
    ("bon", {"alpha": 1.3, "beta": 0.4}),
    ("bon", {"alpha": 0.2, "beta": 0.9}),
    ("concave", {"alpha": 2.0, "beta": 0.25}),
    ("rl", {"alpha": 0.8, "beta": 0.3}),
    ("rl", {"alpha": -0.2, "beta": 0.5}),
    ("rl_log1p", {"alpha": 1.1, "beta": 0.35}),
    ("power", {"alpha": 1.0, "beta": 0.3, "gamma": 0.5}),
    ("power", {"alpha": 0.7, "beta": 0.2, "gamma": 1.7}),
]


@pytest.mark.parametrize("law,params", PARAMS)
def test_peak_matches_numerical_maximum(law, params):
    f = lambda d: LAWS[law].fn(d, *[params[p] for p in LAWS[law].params])
    d_num, y_num = numeric_peak(f)
    d_peak, gold_peak = peak(law, params)
    assert d_peak == pytest.approx(d_num, rel=1e-6)
    assert gold_peak == pytest.approx(y_num, rel=1e-9)


def test_peaks_against_papers_formulas():
    # DESIGN.md: BoN d* = alpha/(2 beta), height alpha^2/(4 beta); RL d* = exp(alpha/beta - 1), height beta d*
    assert peak("bon", {"alpha": 1.0, "beta": 0.25}) == pytest.approx((2.0, 1.0))
    d, h = peak("rl", {"alpha": 0.6, "beta": 0.3})
    assert d == pytest.approx(math.e) and h == pytest.approx(0.3 * math.e)


@pytest.mark.parametrize(
    "law,params",
    [
        ("bon", {"alpha": 1.0, "beta": 0.0}),
        ("bon", {"alpha": 1.0, "beta": -0.2}),
        ("bon", {"alpha": -1.0, "beta": 0.5}),
        ("rl", {"alpha": 1.0, "beta": 0.0}),
        ("rl", {"alpha": 1.0, "beta": -0.1}),
        ("rl", {"alpha": 800.0, "beta": 1.0}),
        ("rl_log1p", {"alpha": -0.5, "beta": 0.3}),
        ("power", {"alpha": 1.0, "beta": -0.3, "gamma": 0.5}),
        ("linear", {"alpha": 1.0}),
    ],
)
def test_no_peak(law, params):
    assert peak(law, params) == (None, None)


@pytest.mark.parametrize("name", [n for n, law in LAWS.items() if law.basis is not None])
def test_basis_reproduces_the_law(name):
    law = LAWS[name]
    d = np.array([0.0, 0.1, 0.5, 1.0, 2.5, 7.0])
    theta = np.array([0.9, 0.35][: len(law.params)])
    np.testing.assert_allclose(law.basis(d) @ theta, law.fn(d, *theta), rtol=1e-12, atol=1e-15)


def test_forms_by_hand():
    d = np.array([0.5, 2.0])
    np.testing.assert_allclose(bon_law(d, 1.0, 0.5), [0.5 * (1 - 0.25), 2.0 * (1 - 1.0)])
    expected = [0.5 * (1 - 0.5 * math.log(0.5)), 2.0 * (1 - 0.5 * math.log(2.0))]
    np.testing.assert_allclose(rl_law(d, 1.0, 0.5), expected)
    assert rl_law(np.array([0.0]), 1.0, 0.5)[0] == 0.0
    np.testing.assert_allclose(power_law(d, 1.0, 0.5, 1.0), bon_law(d, 1.0, 0.5))


def test_power_jacobian_against_finite_differences():
    d = np.array([0.0, 0.3, 1.0, 2.0, 5.0])
    theta = np.array([0.8, 0.3, 0.7])
    J = power_jacobian(d, *theta)
    h = 1e-6
    for j in range(3):
        e = np.zeros(3)
        e[j] = h
        fd = (power_law(d, *(theta + e)) - power_law(d, *(theta - e))) / (2 * h)
        np.testing.assert_allclose(J[:, j], fd, rtol=1e-6, atol=1e-9)


def test_default_laws_exist():
    assert DEFAULT_LAW["bon"] == "bon" and DEFAULT_LAW["rl"] == "rl"
    assert all(v in LAWS for v in DEFAULT_LAW.values())
    assert LAWS["rl"].drop_zero and not LAWS["bon"].drop_zero
