"""scaling.nested.shared_alpha_f_test against hand-built designs, the t-test for G = 2, its size and power."""

import numpy as np
import pytest
from scipy import stats

from scaling.nested import shared_alpha_f_test


def basis_by_hand(law, d):
    """(b0, b1) written out here, not taken from scaling.laws: bon (d, -d^2), rl (d, -d log d)."""
    return (d, -d * d) if law == "bon" else (d, -d * np.log(d))


def make_curves(rng, law, alphas, beta=0.3, n_points=12, noise=0.05):
    curves = []
    for a in alphas:
        d = np.sort(rng.uniform(0.2, 4.0, n_points))
        b0, b1 = basis_by_hand(law, d)
        curves.append((d, a * b0 + beta * b1 + noise * rng.normal(size=n_points)))
    return curves


def reference_f(curves, law):
    """F and p from both designs built with explicit loops, np.linalg.lstsq and scipy.stats.f."""
    G = len(curves)
    rows_free, rows_shared, ys = [], [], []
    for g, (d, y) in enumerate(curves):
        for di, yi in zip(d, y):
            b0, b1 = basis_by_hand(law, np.array(di))
            free = [0.0] * (2 * G)
            free[2 * g], free[2 * g + 1] = float(b0), float(b1)
            shared = [float(b0)] + [0.0] * G
            shared[1 + g] = float(b1)
            rows_free.append(free)
            rows_shared.append(shared)
            ys.append(yi)
    Xf, Xs, y = np.array(rows_free), np.array(rows_shared), np.array(ys)
    rss = lambda X: float(np.sum((y - X @ np.linalg.lstsq(X, y, rcond=None)[0]) ** 2))
    rf, rs = rss(Xf), rss(Xs)
    n = len(y)
    F = ((rs - rf) / (G - 1)) / (rf / (n - 2 * G))
    return F, stats.f.sf(F, G - 1, n - 2 * G), rf, rs


@pytest.mark.parametrize("law", ["bon", "rl"])
@pytest.mark.parametrize("G,seed", [(2, 0), (3, 1), (5, 2)])
def test_matches_hand_built_designs(law, G, seed):
    rng = np.random.default_rng(seed)
    curves = make_curves(rng, law, alphas=rng.uniform(0.5, 1.5, G), noise=0.2)
    got = shared_alpha_f_test(curves, law)
    F, p, rf, rs = reference_f(curves, law)
    assert "reason" not in got
    assert got["F"] == pytest.approx(F, rel=1e-8)
    assert got["p"] == pytest.approx(p, rel=1e-6, abs=1e-15)
    assert got["rss_free"] == pytest.approx(rf, rel=1e-9) and got["rss_shared"] == pytest.approx(rs, rel=1e-9)
    assert (got["df1"], got["df2"], got["n"], got["groups"]) == (G - 1, 12 * G - 2 * G, 12 * G, G)
    for (d, y), a in zip(curves, got["alphas"]):  # free alphas are each curve's own OLS fit
        b0, b1 = basis_by_hand(law, d)
        assert a == pytest.approx(np.linalg.lstsq(np.stack([b0, b1], 1), y, rcond=None)[0][0], rel=1e-8)


@pytest.mark.parametrize("law", ["bon", "rl"])
def test_two_groups_is_the_squared_t_of_the_alpha_difference(law):
    # free model with a group interaction: y = a b0 + da [g=1] b0 + b_g b1; H0: da = 0; F = t(da)^2
    rng = np.random.default_rng(7)
    curves = make_curves(rng, law, alphas=[1.0, 1.1], n_points=9, noise=0.3)
    cols, y = [], []
    for g, (d, yy) in enumerate(curves):
        b0, b1 = basis_by_hand(law, d)
        cols.append(np.stack([b0, g * b0, (1 - g) * b1, g * b1], axis=1))
        y.append(yy)
    X, y = np.concatenate(cols), np.concatenate(y)
    coef = np.linalg.lstsq(X, y, rcond=None)[0]
    dof = len(y) - 4
    s2 = np.sum((y - X @ coef) ** 2) / dof
    t = coef[1] / np.sqrt(s2 * np.linalg.inv(X.T @ X)[1, 1])
    got = shared_alpha_f_test(curves, law)
    assert got["F"] == pytest.approx(t * t, rel=1e-8)
    assert got["p"] == pytest.approx(2 * stats.t.sf(abs(t), dof), rel=1e-6)
    assert got["alphas"][1] - got["alphas"][0] == pytest.approx(coef[1], rel=1e-8)


def test_null_size_by_simulation():
    # shared alpha, own betas, iid normal noise: the F-test rejects at its level
    rng = np.random.default_rng(11)
    sims, rejected = 1000, 0
    for i in range(sims):
        law = "bon" if i % 2 else "rl"
        curves = []
        for beta in (0.2, 0.35, 0.5):
            d = np.linspace(0.3, 3.0, 8)
            b0, b1 = basis_by_hand(law, d)
            curves.append((d, 1.0 * b0 + beta * b1 + 0.1 * rng.normal(size=8)))
        rejected += shared_alpha_f_test(curves, law)["p"] < 0.05
    assert 0.03 <= rejected / sims <= 0.07


@pytest.mark.parametrize("law", ["bon", "rl"])
def test_power_on_different_alphas(law):
    rng = np.random.default_rng(3)
    got = shared_alpha_f_test(make_curves(rng, law, alphas=[0.5, 1.0, 1.5], noise=0.05), law)
    assert got["p"] < 1e-6
    assert got["alphas"] == pytest.approx([0.5, 1.0, 1.5], abs=0.1)
    same = shared_alpha_f_test(make_curves(rng, law, alphas=[1.0, 1.0, 1.0], noise=0.05), law)
    assert same["alpha_shared"] == pytest.approx(1.0, abs=0.05)


def test_points_at_zero_are_dropped():
    rng = np.random.default_rng(5)
    curves = make_curves(rng, "rl", alphas=[1.0, 1.2], noise=0.1)
    padded = [(np.r_[0.0, d, np.nan], np.r_[0.0, y, 1.0]) for d, y in curves]  # R(0) = 0; a NaN point
    for law in ("rl", "bon"):
        base = shared_alpha_f_test(curves, law)
        got = shared_alpha_f_test(padded, law)
        assert got["n"] == base["n"] == 24 and got["F"] == pytest.approx(base["F"])


def test_cases_without_a_test():
    rng = np.random.default_rng(9)
    one = make_curves(rng, "bon", alphas=[1.0])
    cases = {
        "one group": (one, "bon"),
        "no groups": ([], "bon"),
        "not linear": (make_curves(rng, "bon", alphas=[1.0, 2.0]), "power"),
        "one parameter": (make_curves(rng, "bon", alphas=[1.0, 2.0]), "linear"),
        "df2 = 0": ([(d[:2], y[:2]) for d, y in make_curves(rng, "bon", alphas=[1.0, 2.0])], "bon"),
        "rank": ([(np.full(5, 2.0), np.ones(5)), one[0]], "bon"),
        "exact fit": ([(d, 1.0 * d - 0.3 * d * d) for d, _ in make_curves(rng, "bon", alphas=[1, 1])], "bon"),
    }
    for name, (curves, law) in cases.items():
        got = shared_alpha_f_test(curves, law)
        assert got["p"] is None and got["F"] is None, name
        assert isinstance(got["reason"], str) and got["reason"], name
        assert got["groups"] == len(curves), name
    with pytest.raises(KeyError):
        shared_alpha_f_test(one * 2, "nope")
