"""Both golds satisfy gold_rm.interface.Gold: terms add up to the score (checked in float64), the compiled
scorer equals the eager terms minus the centre, components carry every term's name; the learned gold's score
is a * r + b of its network's raw scalar (computed here through lm.reward_train directly), survives a save and
load, and make_gold builds each kind."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from gold_rm.factory import make_gold
from gold_rm.gold import GoldConfig, GoldRM
from gold_rm.interface import Gold
from gold_rm.learned import RESIDUAL, LearnedGold, load_learned
from gold_rm.world import World, WorldConfig
from lm.model import ModelConfig
from lm.reward_train import init_states, score

WORLD = World(WorldConfig(tasks=("map",), k=4, flatter_rate=0.3))
CFG = GoldConfig(fluency_samples=2000, calib_samples=512)


@pytest.fixture(scope="module")
def golds():
    formula = GoldRM(WORLD, CFG)
    mcfg = ModelConfig(WORLD.vocab_size, WORLD.seq_len, 1, 16, 2)
    graphdef, states = init_states(mcfg, [3])
    learned = LearnedGold(formula, mcfg, graphdef, states, scale=0.7, offset=0.1, pool="sum")
    tokens, mask = WORLD.corpus(70, np.random.default_rng(1))  # 70: not a bucket size (padding is exercised)
    return {"formula": formula, "learned": learned}, (tokens, mask)


@pytest.mark.parametrize("kind", ["formula", "learned"])
def test_terms_add_up_and_the_compiled_scorer_equals_them(golds, kind):
    gold, (tokens, mask) = golds[0][kind], golds[1]
    assert isinstance(gold, Gold)
    terms = {k: np.asarray(v, np.float64) for k, v in gold.terms(tokens, mask).items()}
    total = sum(v for k, v in terms.items() if k != "score")
    np.testing.assert_allclose(total, terms["score"], atol=1e-5)
    np.testing.assert_allclose(terms["score"], np.asarray(gold.score(tokens, mask), np.float64), atol=1e-6)
    assert set(gold.components(tokens, mask)) == set(terms)
    centre = {k: float(np.mean(v)) for k, v in terms.items()}
    fn, params = gold.scorer(centre)
    got = jax.jit(fn)(params, tokens, mask)
    assert set(got) == set(terms)
    for k in terms:
        np.testing.assert_allclose(np.asarray(got[k], np.float64), terms[k] - centre[k], atol=2e-5, err_msg=k)
    fn2, _ = gold.scorer({k: 0.0 for k in terms})
    assert fn2 == fn and hash(fn2) == hash(fn)  # compared by value: one compiled program


def test_learned_score_is_the_calibrated_network_and_keeps_the_formula_terms(golds, tmp_path):
    (g, (tokens, mask)) = golds[0], golds[1]
    formula, learned = g["formula"], g["learned"]
    raw = score(learned.graphdef, learned.states, tokens, mask, WORLD.prompt_len, pool="sum")[0].astype(np.float64)
    np.testing.assert_allclose(np.asarray(learned.score(tokens, mask), np.float64), 0.7 * raw + 0.1, atol=1e-5)
    lt, ft = learned.terms(tokens, mask), formula.terms(tokens, mask)
    for k in ft:
        if k != "score":
            np.testing.assert_array_equal(lt[k], ft[k])
    np.testing.assert_allclose(lt[RESIDUAL], 0.7 * raw + 0.1 - np.asarray(ft["score"], np.float64), atol=1e-5)
    learned.save(tmp_path / "g")
    back = make_gold(WORLD, dataclasses.replace(CFG, kind="learned"), learned_dir=tmp_path / "g", formula=formula)
    np.testing.assert_array_equal(back.score(tokens, mask), learned.score(tokens, mask))
    assert load_learned(tmp_path / "g", formula).scale == pytest.approx(0.7)
    assert isinstance(make_gold(WORLD, CFG, formula=formula), GoldRM)
    with pytest.raises(ValueError, match="trained run"):
        make_gold(WORLD, dataclasses.replace(CFG, kind="learned"), formula=formula)
    with pytest.raises(ValueError, match="positive"):
        LearnedGold(formula, learned.model_cfg, learned.graphdef, learned.states, -1.0, 0.0, "sum")
