"""Labelling: hard labels follow gold order, Bradley-Terry frequencies follow the logistic, flips within
binomial tolerance; the comparisons dataset round-trips through Parquet."""

import math

import numpy as np
import pandas as pd
import pytest

from core.errors import UsageError
from gold_rm import (
    GoldConfig,
    GoldRM,
    comparison_arrays,
    label_pairs,
    make_comparisons,
    read_comparisons,
    write_comparisons,
)
from gold_rm.world import World, WorldConfig


def within_binomial(count, n, p, z=4.5):
    return abs(count / n - p) <= z * math.sqrt(max(p * (1 - p), 1e-12) / n) + 1e-12


def test_hard_labels_follow_gold_order():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=5000), rng.normal(size=5000)
    lab = label_pairs(a, b, mode="hard", rng=np.random.default_rng(1))
    assert lab.dtype == np.int8
    assert all(int(l) == int(x > y) for l, x, y in zip(lab, a, b, strict=True))


def test_hard_ties_are_fair_coins():
    n = 4000
    lab = label_pairs(np.zeros(n), np.zeros(n), mode="hard", rng=np.random.default_rng(2))
    assert within_binomial(int(lab.sum()), n, 0.5)


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_bt_label_frequency_matches_logistic(temperature):
    rng = np.random.default_rng(3)
    m = 4000
    for diff in (-2.0, -0.5, 0.0, 0.3, 1.5):
        lab = label_pairs(np.full(m, diff), np.zeros(m), mode="bt", temperature=temperature, rng=rng)
        p = 1.0 / (1.0 + math.exp(-diff / temperature))
        assert within_binomial(int(lab.sum()), m, p), (diff, lab.mean(), p)


def test_flipped_fraction_within_binomial_tolerance():
    rng = np.random.default_rng(4)
    n = 20000
    a, b = rng.normal(size=n), rng.normal(size=n)
    lab = label_pairs(a, b, mode="hard", flip_frac=0.25, rng=rng)
    flipped = int(np.sum(lab != (a > b)))
    assert within_binomial(flipped, n, 0.25)
    # flips on Bradley-Terry labels: P(a) = p (1 - f) + (1 - p) f
    m = 20000
    lab = label_pairs(np.full(m, 1.0), np.zeros(m), mode="bt", flip_frac=0.25, rng=rng)
    p = 1.0 / (1.0 + math.exp(-1.0))
    assert within_binomial(int(lab.sum()), m, p * 0.75 + (1 - p) * 0.25)


def test_labels_deterministic_for_a_seed():
    a, b = np.linspace(-1, 1, 100), np.zeros(100)
    one = label_pairs(a, b, mode="bt", flip_frac=0.1, rng=np.random.default_rng(5))
    two = label_pairs(a, b, mode="bt", flip_frac=0.1, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize(
    "kwargs",
    [dict(mode="soft"), dict(mode="bt", temperature=0.0), dict(flip_frac=1.5), dict(flip_frac=-0.1)],
)
def test_bad_labelling_input_raises_usage_error(kwargs):
    with pytest.raises(UsageError):
        label_pairs(np.zeros(3), np.ones(3), rng=np.random.default_rng(0), **kwargs)


def test_bad_scores_raise_usage_error():
    with pytest.raises(UsageError):
        label_pairs(np.zeros(3), np.ones(4), rng=np.random.default_rng(0))
    with pytest.raises(UsageError):
        label_pairs(np.array([np.nan]), np.ones(1), rng=np.random.default_rng(0))


@pytest.fixture(scope="module")
def world_gold():
    world = World(WorldConfig())
    return world, GoldRM(world, GoldConfig())


def pairs(world, n, seed):
    """Two responses per prompt: the corpus response and another corpus response under the same prompt."""
    rng = np.random.default_rng(seed)
    ta, ma = world.corpus(n, rng)
    tb, mb = world.corpus(n, rng)
    tb[:, : world.prompt_len] = ta[:, : world.prompt_len]
    return ta, ma, tb, mb


def test_make_comparisons_scores_labels_and_round_trips(world_gold, tmp_path):
    world, gold = world_gold
    ta, ma, tb, mb = pairs(world, 300, 6)
    ta[1], ma[1], tb[1], mb[1] = ta[0], ma[0], tb[0], mb[0]  # a repeated prompt shares its prompt id
    df = make_comparisons(
        gold, ta, ma, tb, mb, prompt_len=world.prompt_len, rng=np.random.default_rng(7), batch_size=128
    )
    assert len(df) == 300
    ga, gb = np.asarray(gold.score(ta, ma), np.float64), np.asarray(gold.score(tb, mb), np.float64)
    np.testing.assert_allclose(df["gold_a"], ga, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(df["gold_b"], gb, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(df["gold_a/task"], np.asarray(gold.components(ta, ma)["task"]), atol=1e-7)
    decided = ga != gb
    assert (df["label"].to_numpy()[decided] == (ga > gb)[decided]).all()
    first_seen: dict = {}
    ref_ids = [first_seen.setdefault(tuple(row[: world.prompt_len]), len(first_seen)) for row in ta.tolist()]
    assert df["prompt_id"].tolist() == ref_ids and ref_ids[1] == 0
    path = tmp_path / "cmp" / "comparisons.parquet"
    write_comparisons(path, df)
    back = read_comparisons(path)
    arrays = comparison_arrays(back)
    for name, ref in (("tokens_a", ta), ("mask_a", ma), ("tokens_b", tb), ("mask_b", mb)):
        np.testing.assert_array_equal(arrays[name], ref)
        assert arrays[name].dtype == ref.dtype
    np.testing.assert_array_equal(arrays["label"], df["label"].to_numpy())
    pd.testing.assert_series_equal(back["gold_a"], df["gold_a"])


def test_make_comparisons_flip_and_bt(world_gold):
    world, gold = world_gold
    ta, ma, tb, mb = pairs(world, 300, 8)
    df = make_comparisons(
        gold,
        ta,
        ma,
        tb,
        mb,
        prompt_len=world.prompt_len,
        mode="bt",
        temperature=0.2,
        flip_frac=0.25,
        rng=np.random.default_rng(9),
    )
    z = (df["gold_a"] - df["gold_b"]) / 0.2
    np.testing.assert_allclose(df["p_a"], 1 / (1 + np.exp(-z)), rtol=1e-9)
    assert set(np.unique(df["label"])) <= {0, 1}


def test_make_comparisons_rejects_mismatched_prompts(world_gold):
    world, gold = world_gold
    ta, ma, tb, mb = pairs(world, 8, 10)
    tb[0, 2] = ta[0, 2] + 1 if ta[0, 2] + 1 < world.vocab_size else ta[0, 2] - 1
    with pytest.raises(UsageError):
        make_comparisons(gold, ta, ma, tb, mb, prompt_len=world.prompt_len, rng=np.random.default_rng(0))
    with pytest.raises(UsageError):
        make_comparisons(gold, ta[:4], ma[:4], tb, mb, prompt_len=world.prompt_len, rng=np.random.default_rng(0))
