"""The synthetic world: prompts, targets, corpus spread and structure, bigram statistics (loop references)."""

import math

import numpy as np
import pytest

from core.errors import UsageError
from core.tokens import BOS, EOS, PAD, SEP
from gold_rm.world import ALL_TASKS, FLATTER, SYMBOL0, TASK0, World, WorldConfig, estimate_bigram

WORLD = World(WorldConfig())


def ref_target(world, prompt):
    """Target symbols of one prompt, by a plain loop."""
    task = ALL_TASKS[int(prompt[1]) - TASK0]
    s = [int(x) for x in prompt[2 : 2 + world.k]]
    if task == "copy":
        return s
    if task == "reverse":
        return s[::-1]
    if task == "sort":
        return sorted(s)
    return [SYMBOL0 + int(world.perm[x - SYMBOL0]) for x in s]


def ref_response(world, row, mask_row):
    return [int(t) for t, m in zip(row[world.prompt_len :], mask_row, strict=True) if m]


def ref_quality(world, row, mask_row):
    """Fraction of target positions matched by the response with FLATTER and EOS removed."""
    content = [t for t in ref_response(world, row, mask_row) if t not in (FLATTER, EOS)]
    target = ref_target(world, row)
    return sum(1 for i in range(world.k) if i < len(content) and content[i] == target[i]) / world.k


def test_sizes_and_token_layout():
    cfg = WORLD.cfg
    assert WORLD.prompt_len == cfg.k + 3
    assert WORLD.seq_len == WORLD.prompt_len + cfg.max_new
    assert WORLD.vocab_size == 4 + 1 + len(ALL_TASKS) + cfg.n_symbols
    assert sorted(WORLD.perm.tolist()) == list(range(cfg.n_symbols))


def test_prompts_are_well_formed_and_use_only_configured_tasks():
    world = World(WorldConfig(tasks=("sort", "map")))
    p = world.sample_prompts(np.random.default_rng(0), 2000)
    assert p.dtype == np.int32 and p.shape == (2000, world.prompt_len)
    assert (p[:, 0] == BOS).all() and (p[:, -1] == SEP).all()
    assert set(np.unique(p[:, 1]).tolist()) == {TASK0 + 2, TASK0 + 3}
    syms = p[:, 2:-1]
    assert syms.min() >= SYMBOL0 and syms.max() < world.vocab_size
    assert len(np.unique(syms)) == world.n_symbols


def test_targets_match_plain_loop():
    p = WORLD.sample_prompts(np.random.default_rng(1), 500)
    got = WORLD.targets(p)
    for row, t in zip(p, got, strict=True):
        assert t.tolist() == ref_target(WORLD, row)


def test_corpus_structure():
    tokens, mask = WORLD.corpus(3000, np.random.default_rng(2))
    P, T = WORLD.prompt_len, WORLD.max_new
    assert tokens.dtype == np.int32 and tokens.shape == (3000, P + T) and mask.shape == (3000, T)
    for row, m in zip(tokens, mask, strict=True):
        resp = row[P:].tolist()
        n = int(m.sum())
        assert m[:n].all() and not m[n:].any()  # mask is a prefix
        assert resp[n - 1] == EOS and EOS not in resp[: n - 1]  # exactly one EOS, at the end
        assert all(t == PAD for t in resp[n:])
        assert all(t == FLATTER or t >= SYMBOL0 for t in resp[: n - 1])


def test_corpus_spread_quality_length_flattery():
    n = 20000
    tokens, mask = WORLD.corpus(n, np.random.default_rng(3))
    q = np.array([ref_quality(WORLD, r, m) for r, m in zip(tokens, mask, strict=True)])
    k = WORLD.k
    counts = np.bincount(np.rint(q * k).astype(int), minlength=k + 1)
    assert (counts >= 0.03 * n).all(), counts  # every quality level 0, 1/k, ..., 1 is common
    assert 0.3 < q.mean() < 0.7
    resp = tokens[:, WORLD.prompt_len :]
    n_flat = ((resp == FLATTER) & mask).sum(1)
    rate = WORLD.cfg.flatter_rate
    assert abs((n_flat > 0).mean() - rate) < 4.5 * math.sqrt(rate * (1 - rate) / n)
    assert (n_flat >= 3).sum() > 20  # counts past the gold's cap exist
    content_len = (mask & (resp != FLATTER) & (resp != EOS)).sum(1)
    assert content_len.min() == 0 and content_len.max() >= k + 4
    assert (content_len > k).mean() > 0.15 and (content_len < k).mean() > 0.05
    assert (content_len == k).mean() > 0.4


def test_corpus_has_echo_and_repetition():
    tokens, mask = WORLD.corpus(5000, np.random.default_rng(4))
    P, k = WORLD.prompt_len, WORLD.k
    full_echo = repeats3 = 0
    for row, m in zip(tokens, mask, strict=True):
        content = [t for t in ref_response(WORLD, row, m) if t not in (FLATTER, EOS)]
        target = ref_target(WORLD, row)
        prompt_syms = row[2 : 2 + k].tolist()
        full_echo += content[:k] == prompt_syms and target != prompt_syms
        repeats3 += any(content[i] == content[i + 1] == content[i + 2] for i in range(len(content) - 2))
    assert full_echo > 50 and repeats3 > 200
    assert P == k + 3


def test_corpus_is_deterministic_for_a_seed():
    a = WORLD.corpus(500, np.random.default_rng(5))
    b = WORLD.corpus(500, np.random.default_rng(5))
    c = WORLD.corpus(500, np.random.default_rng(6))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])
    assert np.array_equal(World(WorldConfig(seed=0)).perm, WORLD.perm)
    assert not np.array_equal(World(WorldConfig(seed=1)).perm, WORLD.perm)


def test_estimate_bigram_matches_loop_counts():
    tokens, mask = WORLD.corpus(300, np.random.default_rng(7))
    V, P, alpha = WORLD.vocab_size, WORLD.prompt_len, 0.5
    counts = [[alpha] * V for _ in range(V)]
    for row, m in zip(tokens, mask, strict=True):
        seq = [int(row[P - 1])] + ref_response(WORLD, row, m)
        for a, b in zip(seq[:-1], seq[1:], strict=True):
            counts[a][b] += 1
    ref = np.log(np.array([[c / sum(r) for c in r] for r in counts]))
    got = estimate_bigram(tokens, mask, P, V, alpha)
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    table = WORLD.bigram_logprobs(2000, 0.1)
    np.testing.assert_allclose(np.exp(table).sum(1), 1.0, rtol=1e-12)
    assert table is WORLD.bigram_logprobs(2000, 0.1)  # cached


def test_make_sequences_and_decode():
    p = np.array([[BOS, TASK0, SYMBOL0, SYMBOL0 + 1, SYMBOL0 + 2, SYMBOL0 + 3, SYMBOL0 + 4, SEP]])
    tokens, mask = WORLD.make_sequences(p, [[SYMBOL0, FLATTER, EOS]])
    assert mask[0].tolist() == [True] * 3 + [False] * (WORLD.max_new - 3)
    assert WORLD.decode(tokens[0]) == "<bos> copy: a b c d e <sep> a <flatter> <eos>"
    assert WORLD.decode(tokens).count("\n") == 0
    with pytest.raises(UsageError):
        WORLD.make_sequences(p, [[SYMBOL0] * (WORLD.max_new + 1)])


@pytest.mark.parametrize(
    "bad",
    [
        dict(k=0),
        dict(n_symbols=1),
        dict(max_new=5),
        dict(tasks=("copy", "divide")),
        dict(tasks=()),
        dict(flatter_rate=1.5),
        dict(flatter_more=1.0),
        dict(corrupt_a=0.0),
        dict(long_max=0),
    ],
)
def test_bad_config_raises_usage_error(bad):
    with pytest.raises(UsageError):
        World(WorldConfig(**bad))


def test_bad_count_raises_usage_error():
    with pytest.raises(UsageError):
        WORLD.corpus(-1, np.random.default_rng(0))
