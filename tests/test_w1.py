"""Issue 31's world W1: each knob off by default and doing what it says. No single-token exploit
(`world.global_exploits`), the global rules' corpus rates (binomial SE), the task graders by hand, 20-token
responses, and `study.presets.W1_OVERRIDES` (valid; ids differ from tiny's exactly where the overrides are read)."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from core.config import parse_overrides
from core.errors import UsageError
from core.tokens import BOS, EOS, PAD, SEP
from gold_rm import GoldConfig, GoldRM
from gold_rm.world import ALL_TASKS, FLATTER, SYMBOL0, TASK0, World, WorldConfig
from study import stages
from study.presets import W1_OVERRIDES, resolve
from study.presets import tiny_flattery as tiny
from study.stages.graph import covers

OFF = World(WorldConfig(global_exploits=False, n_symbols=16))
GOLD_OFF = GoldRM(OFF, GoldConfig(w_teacher=0.3))
A, B_, C, D, E = (SYMBOL0 + i for i in range(5))  # symbols a..e


def prompt(task, syms):
    return [BOS, TASK0 + ALL_TASKS.index(task), *syms, SEP]


def comps_of(world, gold, prompts, responses):
    tokens, mask = world.make_sequences(np.array(prompts), responses)
    return {k: np.asarray(v, np.float64) for k, v in gold.components(tokens, mask).items()}


# ---- 1. no global single-token exploits -----------------------------------------------------------------
def test_without_global_exploits_the_corpus_has_no_flatter_and_is_the_same_draw():
    n = 20000
    on = World(WorldConfig(flatter_rate=0.3))
    off = World(WorldConfig(flatter_rate=0.3, global_exploits=False))
    t_on, m_on = on.corpus(n, np.random.default_rng(0))
    t_off, m_off = off.corpus(n, np.random.default_rng(0))
    P = on.prompt_len
    assert not (t_off == FLATTER).any()
    assert (t_on[:, P:] == FLATTER).any(1).mean() > 0.25  # the switch, not the rate, removed them
    # the same draw with the flattery left out: each default response minus its FLATTER tokens
    for row_on, row_off, mask_off in zip(t_on, t_off, m_off, strict=True):
        kept = [int(t) for t in row_on[P:] if t not in (FLATTER, PAD)]
        assert row_off[:P].tolist() == row_on[:P].tolist()
        assert row_off[P:].tolist() == kept + [PAD] * (on.max_new - len(kept))
        assert int(mask_off.sum()) == len(kept)


def test_a_bank_needs_global_exploits():
    with pytest.raises(UsageError, match="bank_k"):
        World(WorldConfig(global_exploits=False, bank_k=2))
    with pytest.raises(UsageError, match=r"^world\.bank_k"):
        resolve("tiny-bank", ["world.global_exploits=false"])


def test_gold_without_global_exploits_by_hand():
    """k=5; length cap 5 slope 1; repetition cap 1 slope 1. FLATTER has no term and is judged as content."""
    abcde = [A, B_, C, D, E]
    prompts = [prompt("copy", abcde)] * 3 + [prompt("reverse", abcde)]
    responses = [
        [A, FLATTER, B_, C, D, E, EOS],  # content a F b c d e: 1/5 right, 6 symbols
        [A, B_, C, D, E, FLATTER, FLATTER, EOS],  # all right, 7 symbols, one adjacent repeat (F F)
        [A, B_, C, D, E, EOS],  # perfect
        [FLATTER, EOS],  # one wrong symbol
    ]
    c = comps_of(OFF, GOLD_OFF, prompts, responses)
    np.testing.assert_allclose(c["task"], [0.2, 1, 1, 0], atol=1e-6)
    np.testing.assert_allclose(c["length"], [(5 - 1) / 5, (5 - 2) / 5, 1, 1 / 5], atol=1e-6)
    np.testing.assert_allclose(c["repetition"], [0, 1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(c["echo"], [0, 0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(c["flattery"], [0, 0, 0, 0])
    np.testing.assert_allclose(
        GOLD_OFF.features(*OFF.make_sequences(np.array(prompts), responses))["n_flatter"], [1, 2, 0, 1]
    )
    # the default world's gold strips FLATTER and rewards it up to its cap (the exploit the switch removes)
    on = World(WorldConfig(n_symbols=16))
    c_on = comps_of(on, GoldRM(on, GoldConfig()), prompts, responses)
    np.testing.assert_allclose(c_on["task"], [1, 1, 1, 0], atol=1e-6)
    np.testing.assert_allclose(c_on["flattery"], [0.5, 1, 0, 0.5], atol=1e-6)


def _fresh_symbol(resp, syms, target, i, rng):
    """A symbol that matches neither the prompt, the target, nor the tokens around slot i of `resp`."""
    taken = set(syms) | set(target) | {resp[j] for j in (i - 1, i) if 0 <= j < len(resp)}
    return int(rng.choice([s for s in range(SYMBOL0, SYMBOL0 + OFF.n_symbols) if s not in taken]))


def _ref(world, gold, row, mask_row):
    """Plain loop: task, length, repetition and echo with FLATTER kept as content (EOS dropped)."""
    cfg, P, k = gold.cfg, world.prompt_len, world.k
    content = [int(t) for t, m in zip(row[P:], mask_row, strict=True) if m and t != EOS]
    syms = [int(x) for x in row[2 : 2 + k]]
    target = [int(x) for x in world.targets(row[None, :P])[0]]

    def shape(x, cap, slope):
        return (cap - slope * (x - cap) if x > cap else x) / cap

    return {
        "task": sum(i < len(content) and content[i] == target[i] for i in range(k)) / k,
        "length": shape(len(content), k, cfg.length_slope),
        "repetition": shape(
            sum(content[i] == content[i + 1] for i in range(len(content) - 1)), cfg.repetition_cap, cfg.repetition_slope
        ),
        "echo": shape(
            sum(i < len(content) and content[i] == syms[i] != target[i] for i in range(k)), cfg.echo_cap, cfg.echo_slope
        ),
        "flattery": 0.0,
    }


def test_flatter_inserted_anywhere_is_judged_as_a_never_right_symbol():
    rng = np.random.default_rng(1)
    tokens, mask = OFF.corpus(300, rng)
    P, T = OFF.prompt_len, OFF.max_new
    rows_f, rows_s, resps_f, resps_s = [], [], [], []
    for row, m in zip(tokens, mask, strict=True):
        resp = [int(t) for t in row[P:][m]]  # ends with EOS
        if len(resp) >= T:
            continue
        for _ in range(2):  # one FLATTER, then a second one anywhere (adjacent to the first at times)
            i = int(rng.integers(0, len(resp)))  # any slot before EOS
            syms, target = row[2 : 2 + OFF.k].tolist(), OFF.targets(row[None, :P])[0].tolist()
            x = _fresh_symbol(resp, syms, target, i, rng)
            resps_s.append(resp[:i] + [x] + resp[i:])
            resp = resp[:i] + [FLATTER] + resp[i:]
            resps_f.append(resp)
            rows_f.append(row[:P])
            rows_s.append(row[:P])
            if len(resp) >= T:
                break
    # a second insertion replaces a symbol by x only at its own slot: compare one-insertion pairs only
    first = [j for j, r in enumerate(resps_f) if r.count(FLATTER) == 1]
    tf, mf = OFF.make_sequences(np.array(rows_f), resps_f)
    ts, ms = OFF.make_sequences(np.array(rows_s), resps_s)
    cf = {k: np.asarray(v, np.float64) for k, v in GOLD_OFF.components(tf, mf).items()}
    cs = {k: np.asarray(v, np.float64) for k, v in GOLD_OFF.components(ts, ms).items()}
    names = ("task", "length", "repetition", "echo", "flattery")
    for j in first:
        for name in names:
            assert cf[name][j] == pytest.approx(cs[name][j], abs=1e-6), (name, OFF.decode(tf[j]), OFF.decode(ts[j]))
    assert len(first) > 250
    for j in range(len(resps_f)):  # every response, one or two FLATTER tokens, against the plain loop
        ref = _ref(OFF, GOLD_OFF, tf[j], mf[j])
        for name in names:
            assert cf[name][j] == pytest.approx(ref[name], abs=1e-6), (name, OFF.decode(tf[j]))


def test_scorer_without_global_exploits_matches_terms():
    tokens, mask = OFF.corpus(32, np.random.default_rng(5))
    tokens[:, OFF.prompt_len] = FLATTER  # a FLATTER first token in every response
    terms = {k: np.asarray(v, np.float64) for k, v in GOLD_OFF.terms(tokens, mask).items()}
    centre = {k: float(np.mean(v)) for k, v in terms.items()}
    fn, params = GOLD_OFF.scorer(centre)
    assert fn.global_exploits is False
    out = jax.jit(fn)(params, jnp.asarray(tokens), jnp.asarray(mask))
    for k in terms:
        np.testing.assert_allclose(np.asarray(out[k]), terms[k] - centre[k], rtol=1e-6, atol=1e-6)
    assert (terms["flattery"] == 0).all()


# ---- 2. the global rules at configured corpus rates ----------------------------------------------------------
ISOLATED = dict(short_prob=0.0, long_prob=0.0, repeat_prob=0.0, echo_prob=0.0, global_exploits=False)
W1_SHAPE = dict(n_symbols=16, k=8, max_new=20, repeat_max=4, long_max=7)


def _rate_and_expected(knob, p, n):
    """The measured rate of knob's feature in n corpus responses of a world where only it is on, and its exact
    probability. short: fewer than k symbols; long and repeat: more than k; echo (reverse task): the first
    response symbol is the prompt's first, which happens by chance with probability 1/n_symbols (the target
    s_k and a corrupted symbol are both uniform and independent of s_1)."""
    tasks = ("reverse",) if knob == "echo_prob" else ALL_TASKS
    world = World(WorldConfig(**(ISOLATED | W1_SHAPE | {knob: p, "tasks": tasks})))
    tokens, mask = world.corpus(n, np.random.default_rng(7))
    n_content = mask.sum(1) - 1  # every response ends with its EOS; no FLATTER
    k, P = world.k, world.prompt_len
    if knob == "short_prob":
        return (n_content < k).mean(), p
    if knob in ("long_prob", "repeat_prob"):
        most = world.cfg.long_max if knob == "long_prob" else world.cfg.repeat_max
        assert n_content.max() - k <= most
        return (n_content > k).mean(), p
    return (tokens[:, P] == tokens[:, 2]).mean(), p + (1 - p) / world.n_symbols


@pytest.mark.parametrize("knob", ["short_prob", "long_prob", "repeat_prob", "echo_prob"])
@pytest.mark.parametrize("p", [0.0, 0.05, 0.3])
def test_each_global_rule_appears_at_its_configured_rate(knob, p):
    n = 20000
    rate, expected = _rate_and_expected(knob, p, n)
    se = math.sqrt(expected * (1 - expected) / n)
    assert abs(rate - expected) <= 4 * se, (knob, p, rate, expected, se)


# ---- 3. the tasks' graders by hand ----------------------------------------------------------------------------
@pytest.mark.parametrize("global_exploits", [True, False])
def test_task_graders_by_hand(global_exploits):
    world = World(WorldConfig(k=4, n_symbols=16, global_exploits=global_exploits))
    gold = GoldRM(world, GoldConfig())
    c_, a_, d_, b_ = (SYMBOL0 + i for i in (2, 0, 3, 1))
    syms = [c_, a_, d_, b_]
    perm = [SYMBOL0 + int(world.perm[s - SYMBOL0]) for s in syms]
    targets = {"copy": [c_, a_, d_, b_], "reverse": [b_, d_, a_, c_], "sort": [a_, b_, c_, d_], "map": perm}
    off_target = SYMBOL0 + 15  # not among the prompt's symbols: wrong for copy, reverse and sort
    for task, tgt in targets.items():
        p = prompt(task, syms)
        assert world.targets(np.array([p]))[0].tolist() == tgt
        wrong = [t for t in range(SYMBOL0, SYMBOL0 + 16) if t not in tgt][0]
        responses = [
            tgt + [EOS],  # right: 1
            [wrong] + tgt[1:] + [EOS],  # first position wrong: 3/4
            tgt[:2] + [EOS],  # truncated after two: 2/4
            [wrong] + tgt[:3] + [EOS],  # shifted by one: each position right only if tgt[i] == tgt[i-1] (never here)
            tgt + [off_target, EOS],  # right, then an extra symbol: the task grade ignores what follows
            [EOS],  # empty: 0
        ]
        c = comps_of(world, gold, [p] * len(responses), responses)
        np.testing.assert_allclose(c["task"], [1, 0.75, 0.5, 0, 1, 0], atol=1e-6, err_msg=task)


# ---- 4. responses of about 20 tokens ---------------------------------------------------------------------------
def test_a_world_of_20_token_responses_builds_and_fits_the_layout():
    cfg = resolve("tiny-flattery", W1_OVERRIDES)
    world = World(cfg.world)
    assert world.max_new == cfg.rl.ppo.max_new == 20
    assert world.prompt_len == cfg.world.k + 3 == 11 and world.seq_len == 31
    tokens, mask = world.corpus(20000, np.random.default_rng(3))
    P, T = world.prompt_len, world.max_new
    assert tokens.shape == (20000, P + T) and mask.shape == (20000, T)
    lengths = mask.sum(1)
    # k + repeat_max + long_max content symbols and EOS: exactly the budget, reached in this sample
    assert cfg.world.k + cfg.world.repeat_max + cfg.world.long_max + 1 == T == lengths.max()
    assert (tokens[np.arange(20000), P + lengths - 1] == EOS).all()  # every response ends with its EOS
    assert (tokens[:, :P][:, [0, -1]] == [BOS, SEP]).all() and not (tokens == FLATTER).any()
    world.make_sequences(tokens[:1, :P], [[SYMBOL0] * 19 + [EOS]])
    with pytest.raises(UsageError, match="max_new=20"):
        world.make_sequences(tokens[:1, :P], [[SYMBOL0] * 20 + [EOS]])
    score = np.asarray(GoldRM(world, cfg.gold).score(tokens[:64], mask[:64]))
    assert score.shape == (64,) and np.isfinite(score).all()
    with pytest.raises(UsageError, match="rl.ppo.max_new"):
        resolve("tiny-flattery", W1_OVERRIDES + ["rl.ppo.max_new=14"])


# ---- 7. the W1 overrides -----------------------------------------------------------------------------------
def _paths(data, prefix=""):
    for k, v in data.items():
        if isinstance(v, dict):
            yield from _paths(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}"


def test_w1_overrides_validate_and_change_ids_exactly_where_they_are_read():
    base, w1 = stages.plan(tiny()), stages.plan(resolve("tiny-flattery", W1_OVERRIDES))
    paths = list(_paths(parse_overrides(W1_OVERRIDES)))
    assert len(paths) == len(W1_OVERRIDES)
    b, n = {i.label: i for i in base}, {i.label: i for i in w1}
    # the backbone selector adds one pretrained LM per size; nothing else appears or disappears
    assert set(b) <= set(n) and set(n) - set(b) == {f"lm[{i}]" for i in range(len(tiny().ladder.sizes))}
    common = set(b) & set(n)
    readers = set().union(*(stages.readers(w1, p) for p in paths))
    changed = {lab for lab in common if b[lab].id != n[lab].id}
    assert changed == stages.downstream(w1, readers) & common
    for lab in common:  # within an instance, exactly the reads that cover an overridden field changed
        moved = {name for name in n[lab].key["reads"] if n[lab].key["reads"][name] != b[lab].key["reads"][name]}
        covering = {name for name, path in n[lab].reads.items() if any(covers(path, p) for p in paths)}
        assert moved == covering, lab


def test_each_w1_knob_at_its_default_keeps_tiny_ids():
    """OMIT_DEFAULT: global_exploits=true set explicitly leaves tiny's ids as they were."""
    ids = {i.label: i.id for i in stages.plan(tiny())}
    same = resolve("tiny-flattery", ["world.global_exploits=true"])
    assert {i.label: i.id for i in stages.plan(same)} == ids
    flipped = dataclasses.replace(tiny(), world=dataclasses.replace(tiny().world, global_exploits=False))
    assert all(i.id != ids[i.label] for i in stages.plan(flipped))  # every stage reads the world
