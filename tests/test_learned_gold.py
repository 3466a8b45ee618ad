"""The learned gold: the edits keep the token layout and do what they say; agreement against a plain loop; a
learned gold trained on a tiny config orders held-out pairs as the formula does well above chance (0.75
measured at 1x32, 2,700 pairs, 2 epochs; the test asks > 0.65); gold.kind = learned runs a micro study end to
end, with the labels, pool and rl ids depending on the gold run; bad knobs are one-line usage errors."""

from __future__ import annotations

import json

import jax
import numpy as np
import pandas as pd
import pytest
from micro import study_argv

from core.errors import UsageError
from core.tokens import EOS, PAD
from gold_rm.gold import GoldConfig, GoldRM
from gold_rm.learned_config import POOLS, LearnedGoldConfig
from gold_rm.learned_train import agreement, train_learned_gold
from gold_rm.perturb import EDITS, edit_content, perturb
from gold_rm.world import FLATTER, SYMBOL0, World, WorldConfig
from lm import reward_train
from lm.model import ModelConfig
from lm.pretrain import PretrainConfig, pretrain
from overopt.cli import main
from study import stages
from study.presets import resolve

WORLD = World(WorldConfig(tasks=("map",), k=4, flatter_rate=0.3))
LEARNED = [
    "gold.kind=learned",
    "gold.learned.n_layer=1",
    "gold.learned.d_model=32",
    "gold.learned.n_pairs=1000",
    "gold.learned.epochs=1",
    "gold.learned.eval_pairs=100",
]


def test_each_edit_does_what_it_says():
    rng = np.random.default_rng(0)
    c, syms = [SYMBOL0 + i for i in (3, 1, 4, 1)], [SYMBOL0 + i for i in (5, 9, 2, 6)]
    for _ in range(20):
        f = edit_content(c, "flattery", syms, 12, rng)
        assert len(f) == 5 and f.count(FLATTER) == 1 and [t for t in f if t != FLATTER] == c
        r = edit_content(c, "repetition", syms, 12, rng)
        i = next(j for j in range(4) if r[j] != c[j]) if r[:4] != c else 4  # first change
        assert len(r) == 5 and r[i] == r[i - 1] and r[:i] + r[i + 1 :] == c
        e = edit_content(c, "echo", syms, 12, rng)
        diff = [j for j in range(4) if e[j] != c[j]]
        assert len(e) == 4 and len(diff) <= 1 and all(e[j] == syms[j] for j in diff)
        t = edit_content(c, "truncation", syms, 12, rng)
        assert len(t) < 4 and t == c[: len(t)]
        s = edit_content(c, "substitution", syms, 12, rng)
        assert len(s) == 4 and sum(a != b for a, b in zip(s, c, strict=True)) <= 1
        assert all(SYMBOL0 <= x < SYMBOL0 + 12 for x in s)
    assert edit_content([], "truncation", syms, 12, rng) == []
    with pytest.raises(ValueError, match="unknown edit"):
        edit_content(c, "nonsense", syms, 12, rng)


def test_perturb_keeps_the_token_layout_and_leaves_unedited_rows():
    tokens, mask = WORLD.corpus(300, np.random.default_rng(2))
    n_edits = np.random.default_rng(3).integers(0, 5, size=300)
    t, m = perturb(
        tokens,
        mask,
        prompt_len=WORLD.prompt_len,
        k=WORLD.k,
        n_symbols=12,
        n_edits=n_edits,
        rng=np.random.default_rng(4),
    )
    P, T = WORLD.prompt_len, WORLD.max_new
    np.testing.assert_array_equal(t[:, :P], tokens[:, :P])
    for i in range(300):
        n = int(m[i].sum())
        assert m[i, :n].all() and not m[i, n:].any()
        assert (t[i, P + n :] == PAD).all()
        resp = t[i, P : P + n]
        assert EOS not in resp[:-1] and (resp[-1] == EOS or n == T)
        if n_edits[i] == 0:
            np.testing.assert_array_equal(t[i], tokens[i])
            np.testing.assert_array_equal(m[i], mask[i])
    assert (t != tokens).any(axis=1)[n_edits > 0].mean() > 0.8
    assert set(EDITS) == {"repetition", "echo", "truncation", "substitution", "flattery"}


class _Fixed:
    def __init__(self, a, b):
        self.s = {"a": a, "b": b}

    def score(self, tokens, mask):
        return self.s["a"] if tokens[0, 0] == 0 else self.s["b"]


def test_agreement_against_a_plain_loop():
    rng = np.random.default_rng(5)
    fa, fb = rng.normal(size=50), rng.normal(size=50)
    fb[:5] = fa[:5]  # ties of the formula
    la, lb = fa + rng.normal(size=50), fb + rng.normal(size=50)
    pairs = {"tokens_a": np.zeros((50, 1)), "mask_a": None, "tokens_b": np.ones((50, 1)), "mask_b": None}
    got = agreement(_Fixed(la, lb), _Fixed(fa, fb), pairs)
    judged = [i for i in range(50) if abs(fa[i] - fb[i]) >= 1e-6]
    ref = sum((la[i] > lb[i]) == (fa[i] > fb[i]) for i in judged) / len(judged)
    assert got["agreement"] == pytest.approx(ref) and got["n"] == 45 and got["ties"] == 5
    assert got["corr"] == pytest.approx(np.corrcoef(np.r_[fa, fb], np.r_[la, lb])[0, 1])
    assert POOLS == reward_train.POOLS


def test_a_trained_learned_gold_agrees_with_the_formula_well_above_chance():
    formula = GoldRM(WORLD, GoldConfig(fluency_samples=2000, calib_samples=512))
    tok, m = WORLD.corpus(2000, np.random.default_rng(0))
    loss_mask = np.zeros(tok.shape, bool)
    loss_mask[:, WORLD.prompt_len :] = m
    mc = ModelConfig(WORLD.vocab_size, WORLD.seq_len, 1, 32, 2)
    policy = pretrain(
        mc,
        PretrainConfig(steps=60, batch_size=64, lr=3e-3, warmup=10),
        tok,
        loss_mask,
        jax.random.PRNGKey(0),
        progress=False,
    )[:2]
    c = LearnedGoldConfig(n_layer=1, d_model=32, n_head=2, n_pairs=3000, epochs=2, eval_pairs=400)
    gold, rep = train_learned_gold(WORLD, formula, policy, c, 0)
    assert rep["n_train"] == 2700 and rep["n_heldout"] == 300
    assert rep["heldout"]["agreement"] > 0.65 and rep["heldout"]["corr"] > 0.5
    assert set(rep["off_distribution"]) == {"hotter", "stacked_edits", "top_of_pool"}
    assert all(a["agreement"] > 0.55 for a in rep["off_distribution"].values())
    assert 0.9 < rep["labels_agree_with_formula"] < 1.0  # 5% flipped
    assert gold.scale > 0


def test_learned_gold_micro_study_end_to_end(tmp_path):
    cfg = resolve("tiny-flattery", [*_micro(), *LEARNED])
    plan = {i.label: i for i in stages.plan(cfg)}
    gid = plan["gold"].id
    for label in ("labels", "pool", "rl:proxy[1]"):
        assert plan[label].inputs["gold"].id == gid
    more = resolve("tiny-flattery", [*_micro(), *LEARNED, "gold.learned.epochs=2"])
    other = {i.label: i.id for i in stages.plan(more)}
    assert other["gold"] != gid and all(other[k] != plan[k].id for k in ("labels", "pool", "rl:proxy[1]"))
    formula = {i.label for i in stages.plan(resolve("tiny-flattery", _micro()))}
    assert "gold" not in formula  # a formula gold makes no run
    out = tmp_path / "s"
    args = study_argv(out)
    for o in LEARNED:
        args += ["--set", o]
    assert main(args) == 0
    g = json.loads((out / "gold.json").read_text())
    assert g["run_id"] == gid and 0 <= g["heldout"]["agreement"] <= 1 and g["n_train"] == 900
    assert json.loads((out / "study.json").read_text())["gold"]["heldout"] == g["heldout"]
    assert (out / "runs" / gid / "DONE").exists()
    pts = pd.read_parquet(out / "points.parquet")
    terms = [c for c in pts.columns if c.startswith("gold/") and not c.endswith("_se")]
    assert "gold/learned_residual" in terms and "gold/flattery" in terms
    rows = pts.dropna(subset=terms)
    np.testing.assert_allclose(rows[terms].sum(axis=1), rows["gold"], atol=1e-4)
    assert "Learned gold" in (out / "report.md").read_text()


def test_bad_learned_gold_knobs_are_usage_errors(capsys):
    with pytest.raises(UsageError, match="larger than every proxy"):
        resolve("tiny", ["gold.kind=learned", "gold.learned.d_model=32"])
    with pytest.raises(UsageError, match="gold.learned.flip_frac"):
        resolve("tiny", ["gold.kind=learned", "gold.learned.flip_frac=0.7"])
    assert main(["study", "--preset", "tiny", "--set", "gold.kind=nope", "--print-config"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def _micro():
    from micro import MICRO

    return MICRO
