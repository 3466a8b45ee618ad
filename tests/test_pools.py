"""Best-of-n pools: sampling + gold scoring, storage round trip, points for a proxy and its ensemble."""

from __future__ import annotations

import numpy as np
import pytest

from bon.estimator import expected_best_of_n
from bon.pools import BonConfig, Pool, bon_points_for_proxy, load_pool, n_grid, save_pool


@pytest.fixture
def pool(bon_pool):
    """The session's pool (conftest.bon_pool): (world, gold RM, pool, BonConfig); read-only."""
    return bon_pool


def test_n_grid():
    g = n_grid(1024)
    assert g[0] == 1 and g[-1] == 1024 and np.all(np.diff(g) > 0)
    assert {2, 4, 8, 16, 32, 64, 128, 256, 512} <= set(g.tolist())
    assert n_grid(10)[-1] == 10


def test_pool_gold_terms_add_up_and_match_the_gold_rm(pool):
    world, gold, p, _ = pool
    assert p.tokens.shape == (3 * 32, world.seq_len)
    direct = np.asarray(gold.score(p.tokens.astype(np.int32), p.mask))
    np.testing.assert_allclose(p.gold["score"], direct, rtol=1e-6, atol=1e-6)
    terms = sum(v for k, v in p.gold.items() if k != "score")
    np.testing.assert_allclose(terms, p.gold["score"], rtol=1e-5, atol=1e-5)


def test_save_load_round_trip(pool, tmp_path):
    _, _, p, _ = pool
    save_pool(tmp_path / "pool.npz", p)
    q = load_pool(tmp_path / "pool.npz")
    np.testing.assert_array_equal(p.tokens, q.tokens)
    np.testing.assert_array_equal(p.mask, q.mask)
    assert p.gold.keys() == q.gold.keys() and (q.n_prompts, q.pool_size) == (3, 32)


def test_sample_ids_identify_equal_responses(pool):
    _, _, p, _ = pool
    ids = p.sample_ids()
    resp = p.tokens[:, p.prompt_len :].reshape(3, 32, -1)
    for i in range(3):
        for a in range(32):
            for b in range(a + 1, 32):
                assert (ids[i, a] == ids[i, b]) == bool(np.all(resp[i, a] == resp[i, b]))


def test_points_for_single_and_ensemble(pool):
    _, _, p, cfg = pool
    rng = np.random.default_rng(0)
    members = rng.normal(size=(3, p.tokens.shape[0]))
    df = bon_points_for_proxy(p, members, cfg, rm_params=123, rm_name="x")
    assert set(df["objective"]) == {"single", "mean", "min", "median", "uwo"}
    single = df[df.objective == "single"]
    est = expected_best_of_n(members[0].reshape(3, 32), p.gold["score"].reshape(3, 32), n_grid(32))
    np.testing.assert_allclose(single["gold"], est.gold)
    worst = df[df.objective == "min"]
    est_min = expected_best_of_n(members.min(0).reshape(3, 32), p.gold["score"].reshape(3, 32), n_grid(32))
    np.testing.assert_allclose(worst["gold"], est_min.gold)
    assert (df["rm_params"] == 123).all() and "gold/task" in df and "gold/flattery" in df


def _beirami_reference(scores, ids, n):
    """E[KL_n(eps)] of one prompt by a plain loop: p_i from the tie blocks, eps_i the id's share of the pool."""
    size = len(scores)
    total = 0.0
    for i in range(size):
        upto = sum(s <= scores[i] for s in scores) / size
        below = sum(s < scores[i] for s in scores) / size
        tied = sum(s == scores[i] for s in scores)
        p = (upto**n - below**n) / tied
        eps = sum(j == ids[i] for j in ids) / size
        a = (1 - eps) ** n
        first = a * (np.log(n) + (n - 1) * np.log(1 - eps) - (n - 1) / n) if a > 0 else 0.0
        second = (1 - a) * np.log((1 - a) / eps)
        total += p * (first + second)
    return total


def test_points_carry_kl_beirami_within_the_bound_and_equal_to_a_direct_computation():
    rng = np.random.default_rng(3)
    n_prompts, size = 2, 24
    # responses drawn from a few distinct ones: repeated responses share an id and a score
    resp = rng.integers(0, 9, size=(n_prompts, size))
    tokens = np.concatenate([np.zeros((n_prompts * size, 2), np.uint8), resp.reshape(-1, 1).astype(np.uint8)], 1)
    p = Pool(tokens, np.ones((n_prompts * size, 1), bool), {"score": rng.normal(size=n_prompts * size)}, 2, 2, size)
    value = rng.normal(size=(n_prompts, 9))
    members = np.take_along_axis(value, resp, axis=1).reshape(1, -1)
    df = bon_points_for_proxy(p, members, BonConfig(n_prompts=2, pool_size=size))
    cols = list(df.columns)
    assert cols.index("kl_beirami") == cols.index("kl_exact_se") + 1
    assert (df["kl_beirami"] >= 0).all() and (df["kl_beirami"] <= df["kl"] + 1e-12).all()
    ids = p.sample_ids()
    for row in df.itertuples():
        ref = np.mean([_beirami_reference(members.reshape(2, size)[k], ids[k], row.n) for k in range(2)])
        assert row.kl_beirami == pytest.approx(ref, rel=1e-10, abs=1e-12)
    assert df["kl_beirami"].iloc[-1] < df["kl"].iloc[-1] - 0.2  # repeated responses: below the bound
