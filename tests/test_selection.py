"""Selection rules on a pool (bon/selection.py) against independent references.

References: enumeration of every n-tuple of draws with replacement (itertools.product) with the
rule applied to each tuple; Monte Carlo draws of the selection procedure itself;
`bon.estimator.bon_kl_estimate` for best-of-n's exact KL; Poisson mixtures of best-of-(k+1); finite
differences for the parameter derivatives; the rules' limits.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.stats import poisson

from bon.estimator import bon_kl_estimate
from bon.kl_estimators import bound_gap, kl_beirami, kl_beirami_pool, kl_bound, kl_bound_inverse
from bon.selection import (
    expected,
    kl_exact,
    max_probs,
    poisson_probs,
    regularized_probs,
    regularized_score,
    rule_curve,
    selection_probs,
    soft_probs,
    tie_blocks,
)
from core.errors import UsageError

# small discrete pools with ties: a block at the top, one at the bottom, one in the middle, distinct
POOLS = [
    np.array([0.0, 1.0, 1.0, 2.0, 3.0]),
    np.array([2.0, 2.0, 2.0, 0.5, -1.0]),
    np.array([1.0, 0.0, 0.0, 3.0, 3.0]),
    np.array([0.3, -0.2, 1.7, 0.9]),
]


def _enumerate(scores, n, pick):
    """Exact selection probabilities by enumeration: pick(tuple of indices) -> prob per position."""
    N = len(scores)
    p = np.zeros(N)
    for tup in itertools.product(range(N), repeat=n):
        q = pick(np.array(tup))
        np.add.at(p, np.array(tup), q)
    return p / N**n


def _pick_max(scores):
    def pick(tup):
        v = scores[tup]
        top = v == v.max()
        return top / top.sum()  # uniform over the tuple positions holding the maximum

    return pick


def _pick_soft(scores, T):
    def pick(tup):
        w = np.exp((scores[tup] - scores.max()) / T)
        return w / w.sum()

    return pick


def _kl_ref(p):
    nz = p > 0
    return float(np.sum(p[nz] * np.log(p[nz] * len(p))))


@pytest.mark.parametrize("scores", POOLS)
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_max_matches_enumeration_and_bon_kl_estimate(scores, n):
    ref = _enumerate(scores, n, _pick_max(scores))
    p = max_probs(scores, n)[0]
    np.testing.assert_allclose(p, ref, atol=1e-14)
    assert kl_exact(p[None])[0] == pytest.approx(_kl_ref(ref), abs=1e-13)
    assert kl_exact(p[None])[0] == pytest.approx(bon_kl_estimate(scores, [n])[0, 0], abs=1e-13)


def test_max_kl_exact_equals_bon_kl_estimate_on_large_pools_with_ties():
    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=(6, 300)), 1)  # about 60 distinct values: many ties
    ns = [1, 2, 5, 17, 64, 300]
    ours = np.stack([kl_exact(max_probs(scores, n)) for n in ns], axis=1)
    np.testing.assert_allclose(ours, bon_kl_estimate(scores, ns), rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("scores", POOLS)
@pytest.mark.parametrize("n", [2, 3, 4])
@pytest.mark.parametrize("T", [0.05, 0.4, 3.0])
def test_soft_matches_enumeration(scores, n, T):
    ref = _enumerate(scores, n, _pick_soft(scores, T))
    p = soft_probs(scores, n, T)[0]
    np.testing.assert_allclose(p, ref, atol=1e-13)
    assert kl_exact(p[None])[0] == pytest.approx(_kl_ref(ref), abs=1e-12)


@pytest.mark.parametrize("scores", POOLS[:3])
@pytest.mark.parametrize("mu", [0.3, 1.5])
def test_poisson_matches_enumeration_of_the_poisson_mixture(scores, mu):
    k_max = 5  # n = 1 + k up to 6: 5^6 tuples
    ref = sum(poisson.pmf(k, mu) * _enumerate(scores, k + 1, _pick_max(scores)) for k in range(k_max + 1))
    tail = poisson.sf(k_max, mu)  # the mass left out: each p_i is off by at most this
    p = poisson_probs(scores, mu)[0]
    assert np.all(p >= ref - 1e-14) and np.all(p <= ref + tail + 1e-14)
    assert abs(kl_exact(p[None])[0] - _kl_ref(ref)) < 40 * tail + 1e-12


@pytest.mark.parametrize("scores", POOLS)
@pytest.mark.parametrize("n", [2, 3])
def test_regularized_matches_enumeration_on_the_penalised_score(scores, n):
    rng = np.random.default_rng(len(scores) + n)
    ref_logprob = np.round(-3 * rng.random(len(scores)), 1)
    beta = 0.7
    modified = scores + beta * ref_logprob  # proxy - beta * (-log pi_ref)
    ref = _enumerate(scores, n, _pick_max(modified))
    p = regularized_probs(scores, ref_logprob, n, beta)[0]
    np.testing.assert_allclose(p, ref, atol=1e-14)
    assert kl_exact(p[None])[0] == pytest.approx(_kl_ref(ref), abs=1e-13)


def test_soft_and_poisson_match_monte_carlo():
    rng = np.random.default_rng(3)
    scores = np.round(rng.normal(size=12), 1)
    scores[:3] = scores[3]  # a tie block
    N, M = len(scores), 200_000

    # soft: M selections of n = 5 draws, one picked with probability proportional to exp(s / T)
    n, T = 5, 0.3
    idx = rng.integers(0, N, size=(M, n))
    w = np.exp((scores[idx] - scores.max()) / T)
    cum = np.cumsum(w / w.sum(axis=1, keepdims=True), axis=1)
    pos = np.minimum((cum < rng.random((M, 1))).sum(axis=1), n - 1)
    freq = np.bincount(idx[np.arange(M), pos], minlength=N) / M
    p = soft_probs(scores, n, T)[0]
    assert np.all(np.abs(freq - p) < 5 * np.sqrt(p * (1 - p) / M) + 1e-12)

    # poisson: n = 1 + Poisson(mu) draws, keep the best (ties broken uniformly at random)
    mu = 2.5
    ns = 1 + rng.poisson(mu, size=M)
    idx = rng.integers(0, N, size=(M, ns.max()))
    valid = np.arange(ns.max())[None, :] < ns[:, None]
    key = np.where(valid, scores[idx] + 1e-9 * rng.random(idx.shape), -np.inf)  # random tie-break
    freq = np.bincount(idx[np.arange(M), key.argmax(axis=1)], minlength=N) / M
    p = poisson_probs(scores, mu)[0]
    assert np.all(np.abs(freq - p) < 5 * np.sqrt(p * (1 - p) / M) + 1e-12)


def test_poisson_gold_is_the_poisson_mixture_of_best_of_k_plus_1():
    rng = np.random.default_rng(4)
    scores = np.round(rng.normal(size=(3, 40)), 1)
    gold = scores + rng.normal(size=scores.shape)
    for mu in (0.5, 3.0, 12.0):
        ks = np.arange(int(mu + 20 * np.sqrt(mu) + 30))  # tail below 1e-16
        mix = sum(poisson.pmf(k, mu) * expected(max_probs(scores, k + 1), gold) for k in ks)
        np.testing.assert_allclose(expected(poisson_probs(scores, mu), gold), mix, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize(
    ("rule", "param", "kw"),
    [
        ("max", 3.7, {}),
        ("max", 1.0, {}),
        ("poisson", 2.2, {}),
        ("poisson", 0.0, {}),
        ("soft", 0.6, {"n": 6}),
        ("soft", 0.08, {"n": 40}),
        ("soft", 0.004, {"n": 5}),  # (max - min) / T above 709: exp(t w) overflows on the grid
        ("regularized", 5.5, {"beta": 0.4}),
    ],
)
def test_derivatives_match_finite_differences(rule, param, kw):
    rng = np.random.default_rng(5)
    scores = np.round(rng.normal(size=(2, 30)), 1)
    if rule == "regularized":
        kw = {**kw, "ref_logprob": np.round(-4 * rng.random(scores.shape), 1)}
    p, dp = selection_probs(rule, scores, param, grad=True, **kw)
    f = lambda x: selection_probs(rule, scores, x, **kw)
    h = 1e-6 * max(param, 1.0)
    if param - h < (1.0 if rule in ("max", "regularized") else 0.0):  # one-sided, second order
        fd = (-3 * f(param) + 4 * f(param + h) - f(param + 2 * h)) / (2 * h)
    else:
        fd = (f(param + h) - f(param - h)) / (2 * h)
    np.testing.assert_allclose(dp, fd, atol=1e-7 * max(1.0, np.abs(dp).max()))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(dp.sum(axis=1), 0.0, atol=1e-9)


def test_limits():
    rng = np.random.default_rng(6)
    scores = np.round(rng.normal(size=(2, 25)), 1)
    scores[:, :4] = scores[:, [4]]  # ties
    uniform = np.full(scores.shape, 1 / 25)
    for n in (1, 4, 30):
        best = max_probs(scores, n)
        # soft: T -> 0 is best-of-n (gap 0.1 / T = 5000: the max path), also through the integral (gap / T = 30)
        np.testing.assert_allclose(soft_probs(scores, n, 2e-5), best, atol=1e-15)
        np.testing.assert_allclose(soft_probs(scores, n, 0.0), best, atol=1e-15)
        np.testing.assert_allclose(soft_probs(scores, n, 0.1 / 30), best, atol=10 * n * np.exp(-30) + 1e-14)
        # soft: T -> inf is the base
        np.testing.assert_allclose(soft_probs(scores, n, 1e7), uniform, atol=1e-7 * n)
        np.testing.assert_array_equal(soft_probs(scores, n, np.inf), uniform)
        # regularized: beta = 0 is max; a tiny beta on distinct scores too
        lp = -rng.random(scores.shape)
        np.testing.assert_array_equal(regularized_probs(scores, lp, n, 0.0), best)
        distinct = scores + 1e-3 * np.arange(25)
        np.testing.assert_allclose(regularized_probs(distinct, lp, n, 1e-9), max_probs(distinct, n), atol=1e-15)
    np.testing.assert_allclose(max_probs(scores, 1), uniform, atol=1e-16)
    np.testing.assert_allclose(soft_probs(scores, 1, 0.3), uniform, atol=1e-16)
    # poisson: mu = 0 is the base, mu -> inf the top block, mu = n - 1 between best-of-1 and best-of-inf
    np.testing.assert_allclose(poisson_probs(scores, 0.0), uniform, atol=1e-16)
    np.testing.assert_allclose(poisson_probs(scores, 1e4), max_probs(scores, 1e6), atol=1e-12)
    assert np.all(kl_exact(poisson_probs(scores, 1e-9)) < 1e-8)


def test_probabilities_follow_the_entries_and_regularized_score():
    rng = np.random.default_rng(7)
    scores = np.round(rng.normal(size=(1, 9)), 1)
    perm = rng.permutation(9)
    for rule, param, kw in [("max", 3, {}), ("poisson", 2.0, {}), ("soft", 0.5, {"n": 3})]:
        p = selection_probs(rule, scores, param, **kw)
        np.testing.assert_allclose(selection_probs(rule, scores[:, perm], param, **kw), p[:, perm], atol=1e-15)
    lp = -rng.random((1, 9))
    np.testing.assert_allclose(regularized_score(scores, lp, 2.0), scores + 2.0 * lp)
    F, Fm, size = tie_blocks(np.array([1.0, 0.0, 1.0, 2.0]))
    np.testing.assert_array_equal(F, [[0.75, 0.25, 0.75, 1.0]])
    np.testing.assert_array_equal(Fm, [[0.25, 0.0, 0.25, 0.75]])
    np.testing.assert_array_equal(size, [[2, 1, 2, 1]])


def test_rule_curve_means_and_extras():
    rng = np.random.default_rng(8)
    scores = rng.normal(size=(5, 20))
    gold = scores - 0.3 * scores**2
    curve = rule_curve("poisson", scores, gold, [0.0, 1.0, 8.0], extra={"len": np.abs(scores)})
    assert curve.param == "mu" and curve.per_prompt["gold"].shape == (5, 3)
    assert curve.kl_exact[0] == pytest.approx(0.0, abs=1e-12)
    assert np.all(np.diff(curve.kl_exact) > 0)
    np.testing.assert_allclose(curve.gold[0], gold.mean())
    np.testing.assert_allclose(curve.per_prompt["len"][:, 2], expected(poisson_probs(scores, 8.0), np.abs(scores)))
    np.testing.assert_allclose(curve.gold_se, curve.per_prompt["gold"].std(axis=0, ddof=1) / np.sqrt(5))


def test_bad_inputs():
    s = np.zeros((2, 4))
    with pytest.raises(UsageError, match="unknown selection rule"):
        selection_probs("best", s, 2)
    with pytest.raises(UsageError, match="ref_logprob"):
        selection_probs("regularized", s, 2, beta=1.0)
    with pytest.raises(UsageError, match="needs n"):
        selection_probs("soft", s, 1.0)
    with pytest.raises(UsageError, match="temperature"):
        soft_probs(s, 2, -1.0)
    with pytest.raises(UsageError, match="n must be"):
        max_probs(s, 0.5)
    with pytest.raises(UsageError, match="too small"):
        soft_probs(np.array([0.0, 1e-9, 1.0]), 3, 1e-5)  # (max - min) / T = 1e5, gap / T = 1e-4


# ---- KL of best-of-n three ways (bon/kl_estimators.py) ----


def test_kl_beirami_lies_between_zero_and_the_bound():
    n = np.array([1, 1.5, 2, 3, 10, 100, 1e4, 1e8])[:, None]
    eps = np.concatenate([[0.0, 1e-300, 1e-12], np.linspace(0, 1, 1001)[1:], [1 - 1e-12]])[None, :]
    k = kl_beirami(n, eps)
    assert np.all(k >= 0) and np.all(k <= kl_bound(n))
    np.testing.assert_allclose(k[:, 0], kl_bound(n[:, 0]), rtol=1e-12)  # eps -> 0: the bound
    np.testing.assert_array_equal(k[:, -2], 0.0)  # eps = 1: a point mass, KL 0
    np.testing.assert_array_equal(k[0], 0.0)  # n = 1
    assert np.all(np.diff(k[3, 3:-1]) <= 1e-15)  # more mass on the atom, less KL


@pytest.mark.parametrize(("n", "eps"), [(2, 0.3), (5, 0.05), (16, 0.2), (64, 0.01)])
def test_kl_beirami_is_the_kl_of_best_of_n_with_one_atom_at_the_top(n, eps):
    # continuous base (uniform on [0, 1 - eps]) plus an atom of mass eps above it, by quadrature
    body, _ = quad(lambda u: n * u ** (n - 1) * np.log(n * u ** (n - 1)), 0, 1 - eps, epsabs=1e-13, limit=200)
    atom = 1 - (1 - eps) ** n
    assert kl_beirami(n, eps) == pytest.approx(body + atom * np.log(atom / eps), abs=1e-10)
    # and the same world as a large pool: distinct scores, then a tie block of share eps at the top
    N = 40_000
    m = round(eps * N)
    pool = np.concatenate([np.arange(N - m, dtype=np.float64), np.full(m, float(N))])
    assert kl_exact(max_probs(pool, n))[0] == pytest.approx(kl_beirami(n, eps), abs=2e-3 * n / 16 + 1e-3)


def test_kl_beirami_pool_in_range_and_eps_sources():
    rng = np.random.default_rng(9)
    scores = np.round(rng.normal(size=(4, 50)), 1)
    ref_logprob = np.log(rng.dirichlet(np.ones(50), size=4))
    ns = [1, 2, 8, 50, 400]
    for kw in ({}, {"ref_logprob": ref_logprob}, {"sample_ids": rng.integers(0, 20, size=(4, 50))}):
        k = kl_beirami_pool(scores, ns, **kw)
        assert k.shape == (4, 5) and np.all(k >= 0) and np.all(k <= kl_bound(np.array(ns)) + 1e-15)
        np.testing.assert_array_equal(k[:, 0], 0.0)
    # by hand: eps from the tie blocks, averaged over best-of-n's selection
    p = max_probs(scores, 8)
    _, _, size = tie_blocks(scores)
    np.testing.assert_allclose(kl_beirami_pool(scores, [8])[:, 0], (p * kl_beirami(8, size / 50)).sum(axis=1))
    np.testing.assert_allclose(
        kl_beirami_pool(scores, [8], ref_logprob=ref_logprob)[:, 0], (p * kl_beirami(8, np.exp(ref_logprob))).sum(1)
    )
    with pytest.raises(UsageError, match="<= 0"):
        kl_beirami_pool(scores, [2], ref_logprob=-ref_logprob)


def test_kl_bound_inverse_round_trips():
    for n in (1.0, 1 + 1e-6, 1.5, 2.0, 37.0, 4096.0, 1e9):
        assert kl_bound_inverse(kl_bound(n)) == pytest.approx(n, rel=1e-9)
    assert kl_bound_inverse(0.0) == 1.0
    with pytest.raises(UsageError):
        kl_bound_inverse(-1.0)


def test_bound_gap_flags_low_entropy_prompts():
    rng = np.random.default_rng(10)
    N = 2000
    distinct = rng.normal(size=N)
    few = rng.choice([0.0, 1.0, 2.0], size=N, p=[0.5, 0.3, 0.2])  # three values: entropy ~1 nat
    d = bound_gap(np.stack([distinct, few]), [2, 8, 64, 16_000], threshold=0.1)
    np.testing.assert_allclose(
        d.kl_exact, np.stack([kl_exact(max_probs(r[None], n)) for n in d.ns for r in (distinct, few)]).reshape(4, 2).T
    )
    assert not d.loose[0, :3].any() and d.loose[0, 3]  # tie-free: loose only once n exceeds N (saturation)
    assert d.loose[1, 1:].all() and d.any_loose.all()
    np.testing.assert_allclose(d.tie_gap[0], 0.0, atol=1e-12)  # a tie-free pool has no tie gap
    assert np.all(d.tie_gap[1, 1:] > 0.1) and np.all(np.diff(d.tie_gap[1]) > 0)
    assert d.entropy[0] == pytest.approx(np.log(N)) and d.entropy[1] < 1.1
    assert d.tie_fraction[0] == 0.0 and d.tie_fraction[1] == 1.0
    np.testing.assert_allclose(d.gap, d.kl_bound[None, :] - d.kl_exact)
