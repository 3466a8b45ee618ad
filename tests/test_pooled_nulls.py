"""The pooled verdict's tests (criteria.pooled_stats) against references (scipy, enumeration, loops), and
their false-positive rates under the null by simulation (criteria.power's simulators, which call the
verdict's own functions): at most the level within Monte Carlo error (3 SE)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats
from scipy.stats import page_trend_test

from criteria import power
from criteria.pooled_stats import ols_slopes, page_l, page_p, split_drops, t_replicates, tost
from criteria.pooled_trends import tost_margin
from criteria.registered import load

S = 20_000
REG = load()


def mc_max(rate: float, S: int = S) -> float:
    """The level plus 3 Monte Carlo SEs."""
    return rate + 3 * math.sqrt(rate * (1 - rate) / S)


@pytest.mark.parametrize("m,n", [(2, 3), (3, 4), (5, 4), (4, 5), (3, 7)])
def test_page_matches_scipy_exact(m, n):
    rng = np.random.default_rng(m * 10 + n)
    for _ in range(5):
        y = rng.normal(size=(m, n)) + 0.4 * np.arange(n)
        ours, ref = page_l(y), page_trend_test(y, method="exact")
        assert float(ours["L"]) == pytest.approx(ref.statistic)
        assert float(ours["p"]) == pytest.approx(ref.pvalue, rel=1e-9)


def test_page_p_by_enumeration():
    """Two blocks of 3: every pair of orderings enumerated; p = P(L' >= L)."""
    perms = list(itertools.permutations([1, 2, 3]))
    Ls = [sum(j * (a[j - 1] + b[j - 1]) for j in (1, 2, 3)) for a in perms for b in perms]
    for L in range(min(Ls), max(Ls) + 2):
        assert float(page_p(L, 2, 3)) == pytest.approx(np.mean([v >= L for v in Ls]))


def test_page_one_block_is_spearman_permutation():
    """K = 1: L is linear in Spearman's rho; p is the exact permutation p of rho."""
    perms = np.array(list(itertools.permutations(range(5))))
    y = np.array([0.1, 0.5, 0.3, 0.9, 1.2])
    rho = stats.spearmanr(np.arange(5), y).statistic
    ref = np.mean([stats.spearmanr(np.arange(5), y[p]).statistic >= rho - 1e-12 for p in perms])
    assert float(page_l(y[None])["p"]) == pytest.approx(ref)


def test_page_normal_beyond_exact():
    rng = np.random.default_rng(3)
    y = rng.normal(size=(4, 10)) + 0.3 * np.arange(10)
    assert page_l(y)["method"] == "normal"
    assert float(page_l(y)["p"]) == pytest.approx(page_trend_test(y, method="asymptotic").pvalue, rel=1e-9)


def test_t_replicates_matches_scipy():
    x = np.array([0.3, -0.1, 0.5, 0.2])
    r = t_replicates(x)
    ref = stats.ttest_1samp(x, 0.0, alternative="greater")
    assert float(r["t"]) == pytest.approx(ref.statistic) and float(r["p"]) == pytest.approx(ref.pvalue)
    ci = stats.ttest_1samp(x, 0.0).confidence_interval(0.95)
    assert (float(r["interval"][0]), float(r["interval"][1])) == pytest.approx((ci.low, ci.high))
    assert math.isnan(float(t_replicates(x[:1])["p"]))


def test_tost_matches_two_scipy_tests():
    x, m = np.array([0.01, -0.02, 0.015, 0.005]), 0.05
    lo = stats.ttest_1samp(x, -m, alternative="greater").pvalue
    hi = stats.ttest_1samp(x, m, alternative="less").pvalue
    assert float(tost(x, m)["p"]) == pytest.approx(max(lo, hi))


def test_ols_slopes_match_polyfit():
    rng = np.random.default_rng(0)
    x, y = np.log10([1e3, 1e4, 1e5, 1e6]), rng.normal(size=(3, 4))
    assert ols_slopes(x, y) == pytest.approx([np.polyfit(x, row, 1)[0] for row in y])


def test_tost_margin_is_a_lower_bound():
    y = np.array([[1.0, 1.1, 0.9, 1.0], [1.2, 1.1, 1.3, 1.2], [0.8, 0.9, 0.8, 0.7]])
    means = y.mean(axis=1)
    lower = means.mean() - stats.t.ppf(0.95, 2) * means.std(ddof=1) / math.sqrt(3)
    assert float(tost_margin(y, REG)) == pytest.approx(0.2 * lower)


def split_drops_loop(c: np.ndarray) -> np.ndarray:
    """Reference: a plain loop over split_drops' definition."""
    K, T = c.shape
    sel = [t for t in range(T) if t % 2 != (T - 1) % 2]
    pooled = c[:, sel].mean(axis=0)
    sm = [np.mean(pooled[max(j - 1, 0) : j + 2]) for j in range(len(sel))]
    i = sel[int(np.argmax(sm))]
    region = [t for t in (i - 1, i + 1) if 0 <= t < T]
    return np.array([np.mean(c[k, region]) - c[k, -1] for k in range(K)])


@pytest.mark.parametrize("T", [7, 8, 15])
def test_split_drops_match_loop(T):
    rng = np.random.default_rng(T)
    for _ in range(20):
        c = rng.normal(size=(3, T)) + np.sin(np.linspace(0, 3, T))
        assert split_drops(c) == pytest.approx(split_drops_loop(c))


@pytest.mark.parametrize("K", [1, 3, 5])
def test_page_null_rate(K):
    rate = power.page_rate(K, 0.0, S, np.random.default_rng(K), REG.p_max)
    assert rate <= mc_max(REG.p_max)
    assert power.page_rate(K, 1.0, 4000, np.random.default_rng(K), REG.p_max) > 0.3  # it can reject


@pytest.mark.parametrize("K", [3, 5])
def test_t_null_rate(K):
    assert power.t_rate(K, 0.0, S, np.random.default_rng(K), REG.p_max) <= mc_max(REG.p_max)


@pytest.mark.parametrize("K", [3, 5])
def test_slope_null_rate(K):
    """The slope passes when its two-sided interval excludes 0 on the claimed side: at most (1 - level)/2."""
    rate = power.slope_rate(K, 0.0, S, np.random.default_rng(K), REG.slope_ci)
    assert rate <= mc_max((1 - REG.slope_ci) / 2)


@pytest.mark.parametrize("K", [3, 5])
def test_tost_null_rate(K):
    """TOST's null is a slope at the margin: equivalence claimed at most p_max of the time."""
    assert power.tost_rate(K, 1.0, 0.5, S, np.random.default_rng(K), REG) <= mc_max(REG.p_max)
    assert power.tost_rate(K, -1.0, 0.5, S, np.random.default_rng(K + 9), REG) <= mc_max(REG.p_max)


@pytest.mark.parametrize("K", [3, 5])
def test_fall_null_rate(K):
    assert power.fall_rate(K, 0.0, S, np.random.default_rng(K), REG.p_max) <= mc_max(REG.p_max)


def test_own_peak_fall_is_biased():
    """The simulation can fail: each replicate's fall from its own peak rejects a flat null far too often."""
    assert power.own_peak_fall_rate(3, 4000, np.random.default_rng(0), REG.p_max) > 0.3
