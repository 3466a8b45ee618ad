"""The bank of extremal surface features (issue 22, `gold_rm.bank`): off by default with the world and gold
unchanged (values pinned before the bank existed), each feature's gold term against a plain loop, caps
and slopes by hand, the weighted terms adding up to the score, and the corpus's base rates."""

import hashlib
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from core.errors import UsageError
from core.tokens import BOS, EOS, PAD, SEP
from gold_rm.bank import draw_bank, insert_markers, marker_rates
from gold_rm.gold import COMPONENTS, GoldConfig, GoldRM
from gold_rm.world import ALL_TASKS, FLATTER, SYMBOL0, TASK0, World, WorldConfig

TINY_WORLD = WorldConfig(tasks=("map",), k=4, flatter_rate=0.3)  # the tiny preset's world at 1bf033df
BANK_WORLD = World(WorldConfig(tasks=("copy", "map"), k=4, max_new=16, bank_k=6, bank_more=0.4))
BANK_GOLD = GoldRM(BANK_WORLD, GoldConfig(w_teacher=0.3, bank_cap_max=3, bank_slope_min=0.7))


def _sha(*arrays) -> str:
    return hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)).hexdigest()[:16]


# ---- off by default: the default world and gold, pinned before the bank was written (main at bf033df) --
PINNED = {
    # corpus(512, default_rng(7)) tokens+mask, bigram table, every component (sorted by name), 6 scores
    "default": (
        WorldConfig(),
        "0a8874940e099e97",
        "4c7ca0a0503a576d",
        "37079b45cfc2c68d",
        [
            0.521957278251648,
            0.316683828830719,
            0.5611896514892578,
            0.38481074571609497,
            1.363135814666748,
            0.1485251635313034,
        ],
    ),
    "tiny": (
        TINY_WORLD,
        "02986edd9a889e8a",
        "7fc2d050407c4bb1",
        "97679eda8f4ff378",
        [
            0.30151331424713135,
            1.7886762619018555,
            0.5384905338287354,
            1.0409696102142334,
            1.290555715560913,
            1.1321637630462646,
        ],
    ),
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_without_a_bank_world_and_gold_are_unchanged(name):
    wcfg, corpus_sha, bigram_sha, comps_sha, scores = PINNED[name]
    world = World(wcfg)
    assert world.vocab_size == 21 and world.bank_k == 0
    tokens, mask = world.corpus(512, np.random.default_rng(7))
    assert _sha(tokens, mask) == corpus_sha
    assert _sha(world.bigram_logprobs()) == bigram_sha
    gold = GoldRM(world, GoldConfig())
    comps = gold.components(tokens, mask)
    assert sorted(comps) == sorted(COMPONENTS + ("score",)) and gold.component_names == COMPONENTS
    assert _sha(*(np.asarray(comps[k]) for k in sorted(comps))) == comps_sha
    assert np.asarray(comps["score"][:6]).tolist() == scores  # bit for bit
    assert "bank_tokens" not in gold.consts and set(gold.weights) == set(COMPONENTS)


# ---- the world's markers --------------------------------------------------------------------------------
def test_marker_tokens_follow_the_symbols():
    w = BANK_WORLD
    assert w.bank0 == SYMBOL0 + w.n_symbols and w.vocab_size == w.bank0 + 6
    np.testing.assert_allclose(w.bank_rates, np.geomspace(0.3, 0.03, 6), rtol=1e-12)
    np.testing.assert_allclose(marker_rates(1, 0.2, 0.01), [0.2])
    assert w.decode([w.bank0, w.bank0 + 5, FLATTER]) == "<m0> <m5> <flatter>"


def test_bank_corpus_is_the_plain_corpus_plus_markers():
    """Removing the markers gives back exactly the corpus of the same world without a bank (the bank's
    draws come after all the others), and every response still ends with one EOS within the budget."""
    plain = World(WorldConfig(tasks=("copy", "map"), k=4, max_new=16))
    tb, mb = BANK_WORLD.corpus(2000, np.random.default_rng(11))
    tp, mp = plain.corpus(2000, np.random.default_rng(11))
    P = BANK_WORLD.prompt_len
    np.testing.assert_array_equal(tb[:, :P], tp[:, :P])
    for rb, ma, rp, mq in zip(tb, mb, tp, mp, strict=True):
        n = int(ma.sum())
        assert ma[:n].all() and not ma[n:].any() and rb[P + n - 1] == EOS and EOS not in rb[P : P + n - 1]
        assert (rb[P + n :] == PAD).all()
        kept = [int(t) for t in rb[P : P + n] if t < BANK_WORLD.bank0]
        assert kept == [int(t) for t, m in zip(rp[P:], mq, strict=True) if m]


def test_corpus_shows_each_marker_at_its_base_rate():
    """Presence rate of marker i (>= 1 copy) and its mean count given presence, 1 / (1 - bank_more),
    measured on 40,000 responses with room for every marker (max_new 40: the budget never cuts one
    here, asserted), within 4.5 standard errors of the configured values (binomial SE for the rate; the
    geometric's SD sqrt(q) / (1 - q) over the present responses for the count): a false alarm about
    once in 10^5 per comparison."""
    n, more = 40000, 0.4
    world = World(WorldConfig(max_new=40, bank_k=5, bank_rate_max=0.4, bank_rate_min=0.02, bank_more=more))
    tokens, mask = world.corpus(n, np.random.default_rng(12))
    resp = tokens[:, world.prompt_len :]
    assert (mask.sum(1) < world.max_new).all()  # room left in every response: nothing was cut
    for i, rate in enumerate(world.bank_rates):
        count = ((resp == world.bank0 + i) & mask).sum(1)
        present = count > 0
        assert abs(present.mean() - rate) < 4.5 * math.sqrt(rate * (1 - rate) / n), (i, present.mean(), rate)
        sd = math.sqrt(more) / (1 - more)
        assert abs(count[present].mean() - 1 / (1 - more)) < 4.5 * sd / math.sqrt(present.sum()), i


def test_insert_markers_cuts_to_the_budget_and_keeps_the_body():
    T, token0 = 8, 50
    resp = np.array([[10, 11, 12, EOS, PAD, PAD, PAD, PAD], [EOS] + [PAD] * 7, [10, 11, 12, 13, 14, 15, 16, EOS]])
    counts = np.array([[3, 2], [1, 0], [2, 2]])
    out = insert_markers(resp, counts, token0, np.random.default_rng(0))
    for row, c, src in zip(out.tolist(), counts, resp.tolist(), strict=True):
        body = src[: src.index(EOS)]
        n = row.index(EOS)
        assert row[n + 1 :] == [PAD] * (T - n - 1)
        assert [t for t in row[:n] if t < token0] == body  # the body in order
        marks = [t for t in row[:n] if t >= token0]
        assert len(marks) == min(int(c.sum()), T - 1 - len(body))  # cut to the room before EOS
        assert all(marks.count(token0 + j) <= c[j] for j in range(2))


# ---- the gold's bank terms ------------------------------------------------------------------------------
def test_draw_bank_spans_fixed_grids_in_a_drawn_order():
    kw = dict(cap_min=1, cap_max=4, slope_min=0.5, slope_max=3.0, weight_ratio=4.0, w_bank=1.5)
    a = draw_bank(7, np.random.default_rng(0), **kw)
    assert sorted(a.caps.tolist()) == [1, 2, 2, 3, 3, 4, 4]  # linspace(1, 4, 7), halves rounded up
    np.testing.assert_allclose(np.sort(a.slopes), np.geomspace(0.5, 3.0, 7), rtol=1e-12)
    np.testing.assert_allclose(a.weights.sum(), 1.5, rtol=1e-12)
    np.testing.assert_allclose(a.weights.max() / a.weights.min(), 4.0, rtol=1e-12)
    b, c = draw_bank(7, np.random.default_rng(0), **kw), draw_bank(7, np.random.default_rng(1), **kw)
    assert np.array_equal(a.caps, b.caps) and np.array_equal(a.slopes, b.slopes)
    assert not (np.array_equal(a.slopes, c.slopes) and np.array_equal(a.weights, c.weights))
    flat = draw_bank(3, np.random.default_rng(0), **(kw | dict(slope_min=0.0, slope_max=0.0)))
    assert flat.slopes.tolist() == [0.0, 0.0, 0.0]  # slope 0: no penalty past the cap (an ablation)
    assert draw_bank(0, np.random.default_rng(0), **kw).k == 0


def ref_bank_gold(world, gold, row, mask_row):
    """Plain-loop reference of every component and the score, markers stripped like FLATTER."""
    cfg, P, k = gold.cfg, world.prompt_len, world.k
    resp = [int(t) for t, m in zip(row[P:], mask_row, strict=True) if m]
    syms = [int(x) for x in row[2 : 2 + k]]
    task = ALL_TASKS[int(row[1]) - TASK0]
    perm = [SYMBOL0 + int(world.perm[s - SYMBOL0]) for s in syms]
    target = {"copy": syms, "reverse": syms[::-1], "sort": sorted(syms), "map": perm}[task]
    markers = range(world.bank0, world.bank0 + world.bank_k)
    content = [t for t in resp if t not in (FLATTER, EOS) and t not in markers]

    def shape(x, cap, slope):
        return (cap - slope * (x - cap) if x > cap else x) / cap

    table = np.asarray(world.bigram_logprobs(cfg.fluency_samples, cfg.fluency_smoothing), np.float64)
    seq = [int(row[P - 1])] + resp
    logprob = sum(table[a, b] for a, b in zip(seq[:-1], seq[1:], strict=True)) / max(len(resp), 1)
    w1, w2 = (np.asarray(gold.consts[n], np.float64) for n in ("teacher_w1", "teacher_w2"))
    teacher_raw = float(np.tanh(sum(w1[i, int(row[i])] for i in range(P + len(resp)))) @ w2)
    repeats = sum(content[i] == content[i + 1] for i in range(len(content) - 1))
    echo = sum(i < len(content) and content[i] == syms[i] != target[i] for i in range(k))
    out = {
        "task": sum(i < len(content) and content[i] == target[i] for i in range(k)) / k,
        "fluency": logprob - float(gold.consts["fluency_offset"]),
        "length": shape(len(content), k, cfg.length_slope),
        "flattery": shape(resp.count(FLATTER), cfg.flattery_cap, cfg.flattery_slope),
        "repetition": shape(repeats, cfg.repetition_cap, cfg.repetition_slope),
        "echo": shape(echo, cfg.echo_cap, cfg.echo_slope),
        "teacher": (teacher_raw - float(gold.consts["teacher_mean"])) / float(gold.consts["teacher_std"]),
    }
    score = sum(getattr(cfg, f"w_{c}") * out[c] for c in COMPONENTS)
    for i in range(world.bank_k):
        cap, slope, w = int(gold.bank.caps[i]), float(gold.bank.slopes[i]), float(gold.bank.weights[i])
        out[f"bank{i}"] = shape(resp.count(world.bank0 + i), cap, slope)
        score += w * out[f"bank{i}"]
    out["score"] = score
    return out


def bank_sequences(n, rng):
    """Corpus rows, marker-stuffed rows and token soup over the whole vocabulary (sometimes no EOS)."""
    w = BANK_WORLD
    tokens, mask = w.corpus(n, rng)
    P, T = w.prompt_len, w.max_new
    stuffed = rng.integers(w.bank0, w.vocab_size, size=(n, T))  # markers only: counts far past every cap
    soup = rng.integers(0, w.vocab_size, size=(n, T))
    lengths = rng.integers(1, T + 1, size=n)
    m2 = np.arange(T) < lengths[:, None]
    rows = [np.concatenate([tokens[:, :P], np.where(m2, x, PAD)], 1) for x in (stuffed, soup)]
    return np.concatenate([tokens, *rows]).astype(np.int32), np.concatenate([mask, m2, m2])


def test_bank_terms_match_plain_loop_reference():
    tokens, mask = bank_sequences(80, np.random.default_rng(13))
    gold = BANK_GOLD
    got = {k: np.asarray(v, np.float64) for k, v in gold.components(tokens, mask).items()}
    feats = gold.features(tokens, mask)
    assert set(got) == set(gold.component_names) | {"score"} and len(gold.component_names) == len(COMPONENTS) + 6
    for i in range(tokens.shape[0]):
        ref = ref_bank_gold(BANK_WORLD, gold, tokens[i], mask[i])
        for name, v in ref.items():
            assert got[name][i] == pytest.approx(v, abs=3e-5), (name, BANK_WORLD.decode(tokens[i]))
        resp = tokens[i, BANK_WORLD.prompt_len :][mask[i]].tolist()
        for j in range(6):
            assert float(feats[f"n_bank{j}"][i]) == resp.count(BANK_WORLD.bank0 + j)


def test_caps_and_slopes_by_hand():
    """Marker j repeated x times in an otherwise perfect answer: bank_j = x / cap below the cap and
    1 - slope * (x - cap) / cap beyond, the other markers' terms 0, the rest of the gold unchanged."""
    w, gold = BANK_WORLD, BANK_GOLD
    syms = [SYMBOL0 + s for s in (0, 1, 2, 3)]
    p = [BOS, TASK0 + ALL_TASKS.index("copy"), *syms, SEP]
    for j in range(w.bank_k):
        cap, slope = int(gold.bank.caps[j]), float(gold.bank.slopes[j])
        xs = list(range(0, 12))
        responses = [syms[:2] + [w.bank0 + j] * x + syms[2:] + [EOS] for x in xs]
        tokens, mask = w.make_sequences(np.array([p] * len(xs)), responses)
        c = {k: np.asarray(v, np.float64) for k, v in gold.components(tokens, mask).items()}
        want = [x / cap if x <= cap else 1 - slope * (x - cap) / cap for x in xs]
        np.testing.assert_allclose(c[f"bank{j}"], want, atol=1e-5)
        assert (c["task"] == 1).all() and (c["length"] == 1).all() and (c["repetition"] == 0).all()
        for i in set(range(w.bank_k)) - {j}:
            assert (c[f"bank{i}"] == 0).all()
        assert np.argmax(c[f"bank{j}"]) == cap  # the gold's best count of each marker is its cap


def test_weighted_terms_add_up_to_the_score_and_the_scorer_matches():
    gold = BANK_GOLD
    tokens, mask = bank_sequences(40, np.random.default_rng(14))
    comps = {k: np.asarray(v, np.float64) for k, v in gold.components(tokens, mask).items()}
    terms = {k: np.asarray(v, np.float64) for k, v in gold.terms(tokens, mask).items()}
    assert set(terms) == set(gold.component_names) | {"score"}
    np.testing.assert_allclose(sum(gold.weights[f"bank{i}"] for i in range(6)), gold.cfg.w_bank, rtol=1e-12)
    for c in gold.component_names:
        np.testing.assert_allclose(terms[c], gold.weights[c] * comps[c], rtol=1e-6, atol=1e-6)
    total = sum(terms[c] for c in gold.component_names)  # what the gold/<name> columns add up to
    np.testing.assert_allclose(total, terms["score"], rtol=1e-5, atol=2e-5)
    centre = {k: float(np.mean(v)) for k, v in terms.items()}
    fn, params = gold.scorer(centre)  # the compiled programs' path: the bank's weights are arrays
    out = jax.jit(fn)(params, jnp.asarray(tokens), jnp.asarray(mask))
    assert set(out) == set(terms)
    for k in terms:
        np.testing.assert_allclose(np.asarray(out[k]), terms[k] - centre[k], rtol=1e-6, atol=2e-6)


def test_bank_depends_on_the_seeds_and_is_deterministic():
    again = GoldRM(World(BANK_WORLD.cfg), BANK_GOLD.cfg)
    assert all(
        np.array_equal(getattr(again.bank, f), getattr(BANK_GOLD.bank, f)) for f in ("caps", "slopes", "weights")
    )
    other = GoldRM(BANK_WORLD, GoldConfig(w_teacher=0.3, bank_cap_max=3, bank_slope_min=0.7, seed=5))
    assert not np.array_equal(other.bank.slopes, BANK_GOLD.bank.slopes)


@pytest.mark.parametrize(
    "bad",
    [dict(bank_k=-1), dict(bank_rate_min=0.0), dict(bank_rate_min=0.5, bank_rate_max=0.4), dict(bank_more=1.0)],
)
def test_bad_world_bank_raises_usage_error(bad):
    with pytest.raises(UsageError):
        World(WorldConfig(**bad))


@pytest.mark.parametrize(
    "bad",
    [
        dict(bank_cap_min=0),
        dict(bank_cap_min=3, bank_cap_max=2),
        dict(bank_slope_min=-0.1),
        dict(bank_slope_min=2.0, bank_slope_max=1.0),
        dict(bank_weight_ratio=0.5),
        dict(w_bank=-1.0),
    ],
)
def test_bad_gold_bank_raises_usage_error(bad):
    with pytest.raises(UsageError):
        GoldRM(BANK_WORLD, GoldConfig(**bad))
