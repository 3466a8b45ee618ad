"""Several surface forms per symbol (`WorldConfig.variants`): the vocabulary layout, the corpus's choice of form,
and a gold that never sees which form (every term equal to the canonical response's, checked term by term)."""

import numpy as np
import pytest

from core.errors import UsageError
from core.tokens import EOS
from gold_rm.gold import GoldConfig, GoldRM
from gold_rm.world import SYMBOL0, World, WorldConfig

W1 = dict(global_exploits=False, n_symbols=8, k=4, max_new=12, tasks=("copy", "reverse", "sort", "map"))


def test_layout_and_canon():
    one, three = World(WorldConfig(**W1)), World(WorldConfig(**W1, variants=3))
    assert three.vocab_size == one.vocab_size + 2 * 8 and three.variant0 == one.vocab_size
    # form v of symbol j, written by a loop
    for v in (1, 2):
        for j in range(8):
            t = three.variant0 + (v - 1) * 8 + j
            assert three.canon[t] == SYMBOL0 + j
            assert three.token_name(t) == f"{chr(ord('a') + j)}~{v}"
    assert np.array_equal(three.canon[: one.vocab_size], np.arange(one.vocab_size))
    assert np.array_equal(one.canon, np.arange(one.vocab_size))


def test_one_form_is_the_old_corpus():
    a = World(WorldConfig(**W1)).corpus(500, np.random.default_rng(3))
    b = World(WorldConfig(**W1, variants=1)).corpus(500, np.random.default_rng(3))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_corpus_writes_forms_uniformly_and_canonically_equal():
    base, w = World(WorldConfig(**W1)), World(WorldConfig(**W1, variants=4))
    (t1, m1), (t4, m4) = base.corpus(4000, np.random.default_rng(5)), w.corpus(4000, np.random.default_rng(5))
    assert np.array_equal(m1, m4) and np.array_equal(w.canon[t4], t1)  # the same corpus, forms aside
    resp = t4[:, w.prompt_len :][m4]
    syms = resp[(w.canon[resp] >= SYMBOL0) & (w.canon[resp] < SYMBOL0 + 8)]
    form = np.where(syms < w.variant0, 0, (syms - w.variant0) // 8 + 1)
    frac = np.bincount(form, minlength=4) / len(form)
    assert np.abs(frac - 0.25).max() < 4 * np.sqrt(0.25 * 0.75 / len(form))
    assert not np.isin(resp, [EOS]).all()


def test_gold_ignores_forms():
    w = World(WorldConfig(**W1, variants=3))
    gold = GoldRM(w, GoldConfig(w_task=3.0, w_teacher=0.5))
    tokens, mask = w.corpus(600, np.random.default_rng(7))
    canon = w.canon[tokens]
    assert (canon != tokens).any()
    a, b = gold.components(tokens, mask), gold.components(canon, mask)
    for name in gold.component_names + ("score",):
        np.testing.assert_array_equal(np.asarray(a[name]), np.asarray(b[name]), err_msg=name)
    # and another draw of forms for the same responses scores the same
    again = w.write_forms(canon, np.random.default_rng(8).integers(0, 3, size=canon.shape))
    again[:, : w.prompt_len] = canon[:, : w.prompt_len]
    np.testing.assert_array_equal(np.asarray(gold.score(again, mask)), np.asarray(a["score"]))
    # a different symbol is not a form: the gold sees it
    swapped = canon.copy()
    first = swapped[:, w.prompt_len]
    is_sym = (first >= SYMBOL0) & (first < SYMBOL0 + 8)
    swapped[is_sym, w.prompt_len] = SYMBOL0 + (first[is_sym] - SYMBOL0 + 1) % 8
    assert (np.asarray(gold.score(swapped, mask)) != np.asarray(a["score"])).any()


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_bad_variants(bad):
    with pytest.raises(UsageError, match="variants"):
        World(WorldConfig(**W1, variants=bad))


def test_group_logprobs_against_a_loop():
    from flax import nnx

    from lm import model as gpt

    w = World(WorldConfig(**W1, variants=3))
    graphdef, state = gpt.init(gpt.ModelConfig(w.vocab_size, w.seq_len, 1, 16, 2), 0)
    tokens, _ = w.corpus(6, np.random.default_rng(2))
    got = np.asarray(gpt.response_group_logprobs(graphdef, state, tokens, w.canon, w.prompt_len))
    _, log_probs, _ = gpt.response_forward(nnx.merge(graphdef, state), tokens, w.prompt_len)
    lp = np.asarray(log_probs, np.float64)
    P = w.prompt_len
    for i in range(tokens.shape[0]):
        for t in range(w.max_new):
            tok = tokens[i, P + t]
            if tok == 0:  # PAD
                assert got[i, t] == 0.0
                continue
            members = [v for v in range(w.vocab_size) if w.canon[v] == w.canon[tok]]
            want = np.log(np.sum(np.exp(lp[i, t, members])))
            assert got[i, t] == pytest.approx(want, abs=2e-5), (i, t)
    # singleton groups: the token's own log-prob
    own = gpt.response_group_logprobs(graphdef, state, tokens, np.arange(w.vocab_size), P)
    plain = gpt.response_logprobs(graphdef, state, tokens, P)
    np.testing.assert_allclose(np.asarray(own), np.asarray(plain), atol=2e-6)


def test_kl_split_form_part_against_a_loop():
    from probes.kl_split import kl_split

    w = World(WorldConfig(**W1, variants=2))
    tokens, mask = w.corpus(40, np.random.default_rng(4))
    rng = np.random.default_rng(9)
    lp, lq = rng.normal(-1, 0.4, mask.shape), rng.normal(-1.1, 0.4, mask.shape)
    gp, gq = lp + rng.uniform(0, 0.7, mask.shape), lq + rng.uniform(0, 0.7, mask.shape)  # a group holds more
    got = kl_split(lp, lq, tokens, mask, w, gp, gq)
    want = dict.fromkeys(("task", "extra", "form", "eos"), 0.0)
    P, n = w.prompt_len, len(tokens)
    for i in range(n):
        seen = 0
        for t in range(w.max_new):
            if not mask[i, t]:
                continue
            if tokens[i, P + t] == EOS:
                want["eos"] += (lp[i, t] - lq[i, t]) / n
                continue
            want["task" if seen < w.k else "extra"] += (gp[i, t] - gq[i, t]) / n
            want["form"] += ((lp[i, t] - gp[i, t]) - (lq[i, t] - gq[i, t])) / n
            seen += 1
    for c, v in want.items():
        assert got[c] == pytest.approx(v), c
    assert got["total"] == pytest.approx(got["judged"] + got["rest"])
    assert "form" not in kl_split(lp, lq, tokens, mask, World(WorldConfig(**W1)))
