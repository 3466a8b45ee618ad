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
