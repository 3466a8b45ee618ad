"""scaling.permutation.spearman_perm_test against scipy's permutation_test, analytic values and its size."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from scaling.permutation import spearman_perm_test


def scipy_spearman_p(x, y, alternative, n_resamples=np.inf, seed=0):
    """Reference: scipy.stats.permutation_test permuting y against fixed x, statistic spearmanr's rho."""

    rx = stats.rankdata(x)
    rx = rx - rx.mean()

    def statistic(yp, axis):  # vectorized: Pearson correlation of the (average) ranks along axis
        ry = stats.rankdata(np.moveaxis(yp, axis, -1), axis=-1)
        ry = ry - ry.mean(axis=-1, keepdims=True)
        return (ry @ rx) / np.sqrt((ry * ry).sum(axis=-1) * (rx @ rx))

    res = stats.permutation_test(
        (np.asarray(y, dtype=float),),
        statistic,
        permutation_type="pairings",
        alternative=alternative,
        n_resamples=n_resamples,
        vectorized=True,
        random_state=np.random.default_rng(seed),
    )
    return res.statistic, res.pvalue


def random_input(rng, n, ties):
    if ties:  # few distinct values in both: ties in x, in y and in rho
        return rng.integers(0, 3, n).astype(float), rng.integers(0, 3, n).astype(float)
    return rng.normal(size=n), rng.normal(size=n)


CASES = [(n, ties, seed) for n in range(3, 8) for ties in (False, True) for seed in (0, 1)]


@pytest.mark.parametrize("n,ties,seed", CASES)
def test_matches_scipy_permutation_test(n, ties, seed):
    rng = np.random.default_rng(100 * n + 10 * ties + seed)
    x, y = random_input(rng, n, ties)
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        x[0], y[-1] = 5.0, -5.0  # keep both non-constant
    for alternative in ("greater", "less"):
        ref_rho, ref_p = scipy_spearman_p(x, y, alternative)
        got = spearman_perm_test(x, y, alternative=alternative)
        assert got["exact"] is True and got["n"] == n
        assert got["rho"] == pytest.approx(ref_rho, abs=1e-12)
        assert got["rho"] == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
        assert got["p"] == pytest.approx(ref_p, abs=1e-12)


@pytest.mark.parametrize("n", [3, 4, 5, 6])
def test_perfect_and_reversed_order(n):
    x = np.arange(n) * 1.7 + 3.0
    y = np.exp(x)  # monotone, not linear: only ranks matter
    up = spearman_perm_test(x, y)
    assert up["rho"] == pytest.approx(1.0) and up["p"] == pytest.approx(1.0 / math.factorial(n))
    assert spearman_perm_test(x, -y)["p"] == 1.0  # reversed: every ordering has rho >= -1
    assert spearman_perm_test(x, -y, alternative="less")["p"] == pytest.approx(1.0 / math.factorial(n))
    assert spearman_perm_test(x, y, alternative="less")["p"] == 1.0


def test_analytic_small_values():
    assert spearman_perm_test([1, 2, 3, 4], [10, 20, 30, 40])["p"] == 1 / 24
    assert spearman_perm_test([1, 2, 3, 4, 5], [1, 2, 3, 4, 5])["p"] == 1 / 120
    assert spearman_perm_test([1, 2, 3], [1, 2, 3])["p"] == 1 / 6
    # n = 4, one swap at the top: rho = 0.8, reached by the identity and the 3 single adjacent swaps
    assert spearman_perm_test([1, 2, 3, 4], [1, 2, 4, 3])["p"] == pytest.approx(4 / 24)


def test_monte_carlo_path_matches_scipy():
    x = np.arange(11.0)
    y = np.array([2.0, 9.0, 0.0, 5.0, 1.0, 8.0, 3.0, 10.0, 7.0, 4.0, 6.0])
    got = spearman_perm_test(x, y)
    assert got["exact"] is False and got["n"] == 11
    ref_rho, ref_p = scipy_spearman_p(x, y, "greater", n_resamples=100_000, seed=1)
    assert 0.1 < ref_p < 0.3  # the input is in the interesting range, not at an edge
    assert got["rho"] == pytest.approx(ref_rho, abs=1e-12)
    assert abs(got["p"] - ref_p) < 0.01
    # the seed only moves p by Monte Carlo error; p is never 0 ((count + 1) / (n + 1))
    other = spearman_perm_test(x, y, seed=7)["p"]
    assert abs(other - got["p"]) < 0.01
    assert spearman_perm_test(x, x, n_resamples=1000)["p"] == pytest.approx(1 / 1001)


def null_tails(n):
    """The attainable p-values under the null without ties, P(rho >= r) for each value r of rho, by brute force."""
    x = np.arange(n)
    rhos = np.array([stats.spearmanr(x, p).statistic for p in itertools.permutations(range(n))])
    return np.array(sorted({float(np.mean(rhos >= r - 1e-12)) for r in rhos}))


def test_null_size_exact_enumeration():
    # y in each of its 6! orderings against x: the rejection rate P(p < 0.05) is exactly the largest
    # attainable tail mass below 0.05 (0.0292 at n = 6). A p counted with > instead of >= (too small)
    # gives 0.0514; a two-sided p gives 0.033; a p without the observed ordering rejects more
    target = max(t for t in null_tails(6) if t < 0.05)
    x = np.arange(6)
    for alternative in ("greater", "less"):
        ps = [spearman_perm_test(x, p, alternative=alternative)["p"] for p in itertools.permutations(range(6))]
        assert float(np.mean(np.array(ps) < 0.05)) == pytest.approx(target)
    assert 0.02 < target <= 0.05


def test_null_calibration_simulated():
    # continuous y independent of x: P(p <= t) = t at every attainable p-value t, so the rejection rate
    # at 0.05 is at most 0.05 (exactly 0.0292 at n = 6) and the p-values are uniform on their atoms
    rng = np.random.default_rng(2024)
    x, draws = np.arange(6.0), 2000
    res = [spearman_perm_test(x, rng.normal(size=6)) for _ in range(draws)]
    ps, rhos = np.array([r["p"] for r in res]), np.array([r["rho"] for r in res])
    sd = lambda t: np.sqrt(t * (1 - t) / draws)
    rate = float(np.mean(ps < 0.05))
    assert rate <= 0.05 + 0.01  # the level plus ~2 sd, whatever the atoms
    assert np.all(ps[rhos < 0] > 0.5)  # one-sided: a falling y is never evidence for "greater" (two-sided fails)
    tails = null_tails(6)
    for t in tails[tails < 0.3]:
        assert abs(float(np.mean(ps <= t + 1e-12)) - t) < 4 * sd(t) + 1e-9, t


@pytest.mark.parametrize(
    "x,y",
    [([1.0, 2.0], [3.0, 4.0]), ([1.0], [1.0]), ([], []), ([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]), ([1, 2, 3], [4, 4, 4])],
)
def test_undefined_cases(x, y):
    got = spearman_perm_test(x, y)
    assert got["rho"] is None and got["p"] is None and got["n"] == len(x)


def test_bad_arguments():
    with pytest.raises(ValueError, match="alternative"):
        spearman_perm_test([1, 2, 3], [1, 2, 3], alternative="two-sided")
    with pytest.raises(ValueError, match="length"):
        spearman_perm_test([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="finite"):
        spearman_perm_test([1, 2, np.nan], [1, 2, 3])
    with pytest.raises(ValueError, match="n_resamples"):
        spearman_perm_test(np.arange(12), np.arange(12), n_resamples=0)
