"""Best-of-n estimator and BoN KL against independent references: enumeration, Monte Carlo, binomials."""

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from scipy.special import comb

from bon import estimator as bon
from bon.estimator import bon_kl_analytic, bon_kl_estimate, bon_points, bon_weights, expected_best_of_n
from core.errors import UsageError
from proxy_rm.ensemble import objective


def _strict_orders(scores):
    """Every strict ranking consistent with `scores` (ties permuted every way): dicts item -> rank."""
    blocks = [list(np.flatnonzero(scores == v)) for v in np.unique(scores)]
    for perms in itertools.product(*(itertools.permutations(b) for b in blocks)):
        yield {item: r for r, item in enumerate(itertools.chain(*perms))}


def _enumerated_bon(rank, values, n):
    """Per-prompt E[value of the top-ranked of a uniform n-subset], averaged over every tie order."""
    out = []
    for r, v in zip(rank, values, strict=True):
        total, count = 0.0, 0
        for pos in _strict_orders(r):
            for subset in itertools.combinations(range(len(r)), n):
                total += v[max(subset, key=pos.__getitem__)]
                count += 1
        out.append(total / count)
    return np.array(out)


def _tied_pool(rng, prompts, size, levels):
    return rng.integers(0, levels, size=(prompts, size)).astype(float)


@pytest.mark.parametrize("ties", [False, True])
def test_estimator_equals_subset_enumeration(ties):
    rng = np.random.default_rng(1 + ties)
    prompts, size = 3, 7
    rank = _tied_pool(rng, prompts, size, 3) if ties else rng.normal(size=(prompts, size))
    gold = rng.normal(size=(prompts, size))
    ns = np.arange(1, size + 1)
    est = expected_best_of_n(rank, gold, ns)
    ref = np.stack([_enumerated_bon(rank, gold, n) for n in ns], axis=1)  # [P, len(ns)]
    np.testing.assert_allclose(est.per_prompt["gold"], ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(est.gold, ref.mean(axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(est.gold_se, ref.std(axis=0, ddof=1) / math.sqrt(prompts), rtol=1e-10)
    proxy_ref = np.stack([_enumerated_bon(rank, rank, n) for n in ns], axis=1)
    np.testing.assert_allclose(est.proxy, proxy_ref.mean(axis=0), rtol=1e-12, atol=1e-12)


def test_ties_matter_and_are_not_broken_by_position():
    # all tied: every n gives the pool mean, whatever order the pool is stored in
    gold = np.array([[5.0, 0.0, 0.0, 0.0]])
    est = expected_best_of_n(np.zeros((1, 4)), gold, [1, 2, 4])
    np.testing.assert_allclose(est.gold, [1.25, 1.25, 1.25])


def test_ensemble_ranking_permutes_gold_and_extras():
    rng = np.random.default_rng(3)
    prompts, size = 2, 7
    members = rng.normal(size=(3, prompts, size))
    gold = rng.normal(size=(prompts, size))
    length = rng.normal(size=(prompts, size))
    rank = objective("min", members)
    assert not any(np.array_equal(np.argsort(rank, 1), np.argsort(m, 1)) for m in members)
    ns = [1, 2, 3, 5, 7]
    est = expected_best_of_n(rank, gold, ns, extra={"length": length})
    for j, n in enumerate(ns):
        assert est.gold[j] == pytest.approx(_enumerated_bon(rank, gold, n).mean(), abs=1e-12)
        assert est.extra["length"][j] == pytest.approx(_enumerated_bon(rank, length, n).mean(), abs=1e-12)
        assert est.proxy[j] == pytest.approx(_enumerated_bon(rank, rank, n).mean(), abs=1e-12)
    single = expected_best_of_n(members[0], gold, ns)
    assert not np.allclose(single.gold[1:], est.gold[1:])


def test_extras_are_linear_like_gold():
    rng = np.random.default_rng(4)
    rank = _tied_pool(rng, 4, 50, 6)
    a, b = rng.normal(size=(2, 4, 50))
    est = expected_best_of_n(rank, a + b, [1, 3, 10, 50], extra={"a": a, "b": b})
    np.testing.assert_allclose(est.gold, est.extra["a"] + est.extra["b"], atol=1e-12)


def test_monte_carlo_of_actual_draws():
    rng = np.random.default_rng(5)
    size, draws = 300, 10_000
    rank = rng.normal(size=size)
    gold = 0.5 * rank + rng.normal(size=size)
    for n in (5, 60):
        keys = rng.random((draws, size))
        subsets = np.argpartition(keys, n, axis=1)[:, :n]  # uniform n-subsets without replacement
        winners = np.take_along_axis(subsets, np.argmax(rank[subsets], axis=1)[:, None], axis=1)[:, 0]
        sample = gold[winners]
        est = expected_best_of_n(rank, gold, [n]).gold[0]
        assert abs(est - sample.mean()) < 4.5 * sample.std(ddof=1) / math.sqrt(draws)


def test_n_one_is_pool_mean_and_n_pool_is_argmax():
    rng = np.random.default_rng(6)
    rank, gold = rng.normal(size=(2, 5, 40))
    est = expected_best_of_n(rank, gold, [1, 40])
    np.testing.assert_allclose(est.per_prompt["gold"][:, 0], gold.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(est.per_prompt["gold"][:, 1], gold[np.arange(5), rank.argmax(axis=1)])
    # a tied maximum: n = N gives the mean gold of the tied best
    tied = np.array([[0.0, 2.0, 1.0, 2.0]])
    assert expected_best_of_n(tied, [[9.0, 4.0, 7.0, 6.0]], [4]).gold[0] == pytest.approx(5.0)


def test_weights_equal_exact_binomials():
    size = 50
    ns = np.arange(1, size + 1)
    w = bon_weights(size, ns)
    direct = np.array(
        [
            [float(comb(i - 1, n - 1, exact=True)) / float(comb(size, n, exact=True)) for i in range(1, size + 1)]
            for n in ns
        ]
    )
    np.testing.assert_allclose(w, direct, rtol=1e-11, atol=0)


def test_weights_at_65536_are_finite_normalised_and_exact():
    size = 65_536
    ns = [1, 2, 100, 1000, 30_000, size]
    w = bon_weights(size, ns)
    assert np.all(np.isfinite(w)) and np.all(w >= 0)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-8)
    for j, n in enumerate(ns):
        for i in (n, n + 7, 40_000, size):
            if i <= size:
                exact = float(Fraction(math.comb(i - 1, n - 1), math.comb(size, n)))
                assert w[j, i - 1] == pytest.approx(exact, rel=1e-8, abs=1e-300)


def test_chunking_over_ns_gives_the_same_answer(monkeypatch):
    rng = np.random.default_rng(7)
    rank, gold = rng.normal(size=(2, 3, 64))
    ns = np.arange(1, 65)
    whole = expected_best_of_n(rank, gold, ns)
    monkeypatch.setattr(bon, "_CHUNK_ELEMS", 3 * 64)
    chunked = expected_best_of_n(rank, gold, ns)
    np.testing.assert_allclose(whole.gold, chunked.gold, rtol=1e-13, atol=1e-15)  # BLAS blocking differs


def _brute_force_bon_kl(scores, n, ids=None):
    """KL(best-of-n || pool) by enumerating all N^n ordered draws with replacement; ties split evenly."""
    size = len(scores)
    ids = np.arange(size) if ids is None else np.asarray(ids)
    outcomes = np.unique(ids)
    outcome_score = {o: scores[ids == o].mean() for o in outcomes}
    mass = {o: np.mean(ids == o) for o in outcomes}
    win = dict.fromkeys(outcomes, 0.0)
    for draw in itertools.product(range(size), repeat=n):
        best = max(outcome_score[ids[k]] for k in draw)
        tied = [k for k in draw if outcome_score[ids[k]] == best]
        for k in tied:  # uniform choice among the draws holding the best score
            win[ids[k]] += 1.0 / len(tied) / size**n
    return sum(win[o] * math.log(win[o] / mass[o]) for o in outcomes if win[o] > 0)


@pytest.mark.parametrize("levels", [None, 2, 3])
def test_kl_estimate_equals_brute_force(levels):
    rng = np.random.default_rng(8)
    scores = rng.normal(size=6) if levels is None else rng.integers(0, levels, 6).astype(float)
    ns = [1, 2, 3, 4]
    est = bon_kl_estimate(scores, ns)
    assert est.shape == (1, 4)
    np.testing.assert_allclose(est[0], [_brute_force_bon_kl(scores, n) for n in ns], rtol=1e-10, atol=1e-14)


def test_kl_estimate_per_prompt_with_mixed_tie_patterns():
    rng = np.random.default_rng(12)
    pools = np.array([rng.normal(size=6), [0, 1, 1, 2, 2, 2], [5, 7, 7, 9, 9, 9], [3, 3, 1, 1, 2, 0.5]])
    est = bon_kl_estimate(pools, [2, 3])
    ref = [[_brute_force_bon_kl(row, n) for n in (2, 3)] for row in pools]
    np.testing.assert_allclose(est, ref, rtol=1e-10)


def test_kl_estimate_merges_identical_responses():
    scores = np.array([0.3, 1.0, 1.0 + 1e-9, 0.7, 2.0])
    ids = np.array([10, 11, 11, 12, 13])  # one response sampled twice, scored with float noise
    ns = [2, 3]
    merged = bon_kl_estimate(scores, ns, sample_ids=ids)[0]
    np.testing.assert_allclose(merged, [_brute_force_bon_kl(scores, n, ids) for n in ns], rtol=1e-10)
    assert not np.allclose(merged, bon_kl_estimate(scores, ns)[0])
    # responses that already share a score: merging them changes nothing
    even = np.array([0.3, 1.0, 1.0, 0.7, 2.0])
    np.testing.assert_allclose(bon_kl_estimate(even, ns, sample_ids=ids), bon_kl_estimate(even, ns))


def test_analytic_kl_matches_estimate_without_ties():
    rng = np.random.default_rng(9)
    ns = np.array([1, 2, 4, 8, 16, 64])
    est = bon_kl_estimate(rng.normal(size=(2, 8192)), ns)
    analytic = np.array([math.log(n) - (n - 1) / n for n in ns])
    np.testing.assert_allclose(bon_kl_analytic(ns), analytic, rtol=1e-14)
    np.testing.assert_allclose(est, np.broadcast_to(analytic, est.shape), atol=2e-4)
    assert bon_kl_analytic(1) == 0.0


def test_kl_estimate_is_below_the_bound_and_far_below_with_ties():
    rng = np.random.default_rng(10)
    ns = np.array([2, 16, 256, 1024])
    for pool in (rng.normal(size=(3, 1024)), _tied_pool(rng, 3, 1024, 5)):
        est = bon_kl_estimate(pool, ns)
        assert np.all(est <= bon_kl_analytic(ns) + 1e-12) and np.all(est >= 0)
        assert np.all(est <= math.log(1024) + 1e-12)
    heavy = bon_kl_estimate(_tied_pool(rng, 3, 1024, 5), ns)
    assert np.all(heavy[:, 1:] < bon_kl_analytic(ns[1:]) - 0.3)
    assert np.all(heavy[:, 2:] < bon_kl_analytic(ns[2:]) - 2.5)
    # the top block of about 1/5 caps the KL near log 5
    assert np.all(heavy[:, -1] < math.log(5.5))


def test_points_rows():
    rng = np.random.default_rng(11)
    rank, gold, comp = rng.normal(size=(3, 4, 32))
    est = expected_best_of_n(rank, gold, [1, 4, 32], extra={"length": comp, "proxy/m0": comp})
    df = bon_points(est, rm_params=1234, seed=0, objective="mean")
    assert list(df["n"]) == [1, 4, 32] and set(df["method"]) == {"bon"}
    np.testing.assert_allclose(df["kl"], [0.0, math.log(4) - 0.75, math.log(32) - 31 / 32])
    for col in ["kl_exact", "kl_exact_se", "gold", "gold_se", "proxy", "proxy_se"]:
        np.testing.assert_array_equal(df[col], getattr(est, col))
    np.testing.assert_array_equal(df["gold/length"], est.extra["length"])
    assert "gold/length_se" in df and "proxy/m0" in df
    assert set(df["rm_params"]) == {1234} and set(df["objective"]) == {"mean"}
    with pytest.raises(UsageError):
        bon_points(est, gold=1.0)


@pytest.mark.parametrize(
    "call",
    [
        lambda: expected_best_of_n(np.zeros((2, 4)), np.zeros((2, 4)), [0]),
        lambda: expected_best_of_n(np.zeros((2, 4)), np.zeros((2, 4)), [5]),
        lambda: expected_best_of_n(np.zeros((2, 4)), np.zeros((2, 4)), [1.5]),
        lambda: expected_best_of_n(np.zeros((2, 4)), np.zeros((2, 5)), [1]),
        lambda: expected_best_of_n(np.full((2, 4), np.nan), np.zeros((2, 4)), [1]),
        lambda: expected_best_of_n(np.zeros((2, 4)), np.zeros((2, 4)), [1], extra={"gold": np.zeros((2, 4))}),
        lambda: bon_kl_estimate(np.zeros((2, 4)), [1], sample_ids=np.zeros((2, 3))),
        lambda: bon_kl_analytic(0),
    ],
)
def test_bad_input_is_a_usage_error(call):
    with pytest.raises(UsageError):
        call()
