"""Predicting the best n (bon/best_n.py): the fitted-law peak and the hedging root-finder.

References: data that follow Gao's best-of-n law exactly and scipy's curve_fit; finite differences
of the calibration objective; a fine grid search of expected gold on known gold curves; averages of
the Horvitz-Thompson estimate over many calibration draws.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import curve_fit

from bon.best_n import (
    calibration_mask,
    default_bounds,
    gao_bon_fit,
    hedge,
    hedge_objective,
    law_peak,
    realized_peak,
)
from bon.kl_estimators import kl_bound
from bon.selection import expected, selection_probs
from core.errors import UsageError

NS = np.array([1, 2, 3, 4, 6, 8, 11, 16, 23, 32, 45, 64, 91, 128, 181, 256, 512, 1024], dtype=float)


def test_law_peak_recovers_an_exact_law_from_small_n():
    alpha, beta = 1.3, 0.4
    d = np.sqrt(kl_bound(NS))
    gold = d * (alpha - beta * d)
    gold[NS > 32] = -5.0  # beyond n_small: must be ignored
    peak = law_peak(NS, gold, n_small=32)
    assert peak.alpha == pytest.approx(alpha, rel=1e-12) and peak.beta == pytest.approx(beta, rel=1e-12)
    assert peak.d_star == pytest.approx(alpha / (2 * beta))
    assert peak.gold_star == pytest.approx(alpha**2 / (4 * beta))
    assert kl_bound(peak.n_star) == pytest.approx(peak.d_star**2, rel=1e-12)
    assert peak.n_points == 10 and peak.n_small == 32
    # the predicted n maximises the law over a fine grid of n
    grid = np.geomspace(1, 1e4, 200_001)
    dg = np.sqrt(kl_bound(grid))
    assert peak.n_star == pytest.approx(grid[np.argmax(dg * (alpha - beta * dg))], rel=1e-3)


def test_gao_fit_matches_curve_fit_on_noisy_points():
    rng = np.random.default_rng(0)
    d = np.sqrt(kl_bound(NS[1:12]))
    gold = d * (0.9 - 0.3 * d) + 0.05 * rng.normal(size=d.shape)
    ref, _ = curve_fit(lambda x, a, b: x * (a - b * x), d, gold, p0=[1.0, 0.1])
    np.testing.assert_allclose(gao_bon_fit(d, gold), ref, rtol=1e-6)


def test_law_peak_without_a_peak_and_bad_input():
    d = np.sqrt(kl_bound(NS))
    peak = law_peak(NS, d * (0.5 + 0.1 * d))  # beta < 0: still accelerating
    assert peak.beta < 0 and np.isinf(peak.n_star) and np.isinf(peak.gold_star)
    with pytest.raises(UsageError, match="two points"):
        law_peak(NS, d, n_small=2)
    assert realized_peak([1, 2, 4], [0.0, 0.3, 0.1]) == (2.0, 0.3)


def _world(P=3, N=160, seed=1, ties=True):
    rng = np.random.default_rng(seed)
    s = rng.normal(size=(P, N))
    if ties:
        s = np.round(s, 1)
    gold = s - 0.35 * s**2 + 0.2 * rng.normal(size=(P, N))  # rises, then falls with the proxy
    return s, gold, -5 * rng.random((P, N))


RULE_KW = [("max", {}), ("poisson", {}), ("soft", {"n": 32}), ("regularized", {"beta": 0.3})]


@pytest.mark.parametrize(("rule", "kw"), RULE_KW)
def test_objective_derivative_matches_finite_differences(rule, kw):
    s, gold, lp = _world()
    if rule == "regularized":
        kw = {**kw, "ref_logprob": lp}
    lab = calibration_mask(s.shape, 40, seed=2)
    for x in {"max": (1.7, 9.0), "regularized": (2.5, 30.0), "poisson": (0.4, 12.0), "soft": (0.15, 1.1)}[rule]:
        J, dJ = hedge_objective(rule, s, gold, x, labelled=lab, **kw)
        h = 1e-5 * x
        fd = (
            hedge_objective(rule, s, gold, x + h, labelled=lab, **kw)[0]
            - hedge_objective(rule, s, gold, x - h, labelled=lab, **kw)[0]
        ) / (2 * h)
        assert dJ == pytest.approx(fd, rel=1e-5, abs=1e-8)
    # with every entry labelled J is the mean expected gold under the selection
    p = selection_probs(rule, s, x, **kw)
    assert hedge_objective(rule, s, gold, x, **kw)[0] == pytest.approx(expected(p, gold).mean(), rel=1e-12)


def test_calibration_estimate_is_unbiased():
    s, gold, _ = _world(P=2, N=30)
    full = hedge_objective("poisson", s, gold, 6.0)[0]
    draws = np.array(
        [
            hedge_objective("poisson", s, gold, 6.0, labelled=calibration_mask(s.shape, 5, seed=k))[0]
            for k in range(1500)
        ]
    )
    assert abs(draws.mean() - full) < 4 * draws.std(ddof=1) / np.sqrt(len(draws))


@pytest.mark.parametrize(("rule", "kw"), RULE_KW)
def test_hedge_root_matches_a_grid_search(rule, kw):
    s, gold, lp = _world(ties=rule != "soft")
    if rule == "regularized":
        kw = {**kw, "ref_logprob": lp}
    h = hedge(rule, s, gold, grid=9 if rule == "soft" else 17, **kw)
    assert h.kind == "root" and h.param == {"soft": "temperature", "poisson": "mu"}.get(rule, "n")
    assert h.dgold == pytest.approx(0.0, abs=1e-8)
    lo, hi = default_bounds(rule, s)
    xs = np.geomspace(lo, hi, 61 if rule == "soft" else 400)
    Js = np.array([hedge_objective(rule, s, gold, x, **kw)[0] for x in xs])
    k = int(np.argmax(Js))
    assert xs[max(k - 1, 0)] <= h.value <= xs[min(k + 1, len(xs) - 1)]  # the root sits at the grid's peak
    assert h.gold >= Js.max() - 1e-12  # and is at least as good as every grid point


def test_hedge_monotone_gold_returns_an_end_and_partial_labels():
    s, gold, _ = _world()
    assert hedge("max", s, s).kind == "upper"  # gold = proxy: more n is always better
    assert hedge("poisson", s, -s, bounds=(0.1, 50)).kind == "lower"
    lab = calibration_mask(s.shape, 50, seed=3)
    with_nan = np.where(lab, gold, np.nan)
    a = hedge("max", s, with_nan)
    b = hedge("max", s, gold, labelled=lab)
    assert a.value == b.value and a.n_labelled == b.n_labelled == 150
    full = hedge("max", s, gold)
    assert 0.3 < a.value / full.value < 3  # a third of the labels lands near the full-label root


def test_calibration_mask_and_bad_input():
    m = calibration_mask((4, 20), 7, seed=5)
    assert m.dtype == bool and np.all(m.sum(axis=1) == 7)
    np.testing.assert_array_equal(m, calibration_mask((4, 20), 7, seed=5))
    with pytest.raises(UsageError, match="calibration size"):
        calibration_mask((4, 20), 0)
    s, gold, _ = _world()
    with pytest.raises(UsageError, match="empty"):
        hedge_objective("max", s, np.full(s.shape, np.nan), 2.0)
    with pytest.raises(UsageError, match="unknown selection rule"):
        hedge("best", s, gold)
    with pytest.raises(UsageError, match="bounds"):
        hedge("max", s, gold, bounds=(5, 2))
