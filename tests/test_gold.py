"""Gold reward model: hand-computed values on crafted answers, a plain-loop reference on random
sequences, jit, determinism, describe(), and the torch adapter against direct calls of the torch model."""

import copy
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from core.errors import UsageError
from core.tokens import BOS, EOS, PAD, SEP
from gold_rm import COMPONENTS, GoldConfig, GoldRM, TorchGoldRM, describe
from gold_rm.world import ALL_TASKS, FLATTER, SYMBOL0, TASK0, World, WorldConfig

WORLD = World(WorldConfig())
GOLD = GoldRM(WORLD, GoldConfig(w_teacher=0.3))
A, B_, C, D, E = (SYMBOL0 + i for i in range(5))  # symbols a..e


def prompt(task, syms):
    return [BOS, TASK0 + ALL_TASKS.index(task), *syms, SEP]


def comps_of(prompts, responses, gold=GOLD):
    tokens, mask = WORLD.make_sequences(np.array(prompts), responses)
    return {k: np.asarray(v, np.float64) for k, v in gold.components(tokens, mask).items()}


# ---- hand-computed values (defaults: k=5; length cap 5 slope 1; flattery cap 2 slope 1.5;
#      repetition cap 1 slope 1; echo cap 1 slope 1) ----------------------------------------------
def test_crafted_answers_by_hand():
    abcde = [A, B_, C, D, E]
    prompts = [
        prompt("copy", abcde),  # perfect
        prompt("copy", abcde),  # perfect + 3 extra symbols
        prompt("copy", abcde),  # "a a a a a": 1/5 right, 4 adjacent repeats
        prompt("copy", abcde),  # perfect with 4 FLATTER tokens inside: positions not shifted
        prompt("reverse", abcde),  # echoes the prompt instead of reversing it
        prompt("sort", [E, D, C, B_, A]),  # short (3 of 5 right) with one FLATTER
    ]
    responses = [
        [A, B_, C, D, E, EOS],
        [A, B_, C, D, E, A, B_, C, EOS],
        [A, A, A, A, A, EOS],
        [A, FLATTER, B_, FLATTER, FLATTER, C, D, FLATTER, E, EOS],
        [A, B_, C, D, E, EOS],
        [A, B_, C, FLATTER, EOS],
    ]
    c = comps_of(prompts, responses)
    np.testing.assert_allclose(c["task"], [1, 1, 0.2, 1, 0.2, 0.6])
    # length: min(n,5)/5 - (n-5)/5 beyond: n = 5, 8, 5, 5, 5, 3
    np.testing.assert_allclose(c["length"], [1, 0.4, 1, 1, 1, 0.6], atol=1e-6)
    # flattery: 0, 0, 0, 4 -> (2 - 1.5*2)/2 = -0.5, 0, 1 -> 0.5
    np.testing.assert_allclose(c["flattery"], [0, 0, 0, -0.5, 0, 0.5], atol=1e-6)
    # repetition: 4 adjacent repeats -> 1 - 3 = -2; FLATTER between symbols does not hide a repeat
    np.testing.assert_allclose(c["repetition"], [0, 0, -2, 0, 0, 0], atol=1e-6)
    # echo on reverse: positions 0,1,3,4 repeat s_i where the target e d c b a differs -> 1 - 3 = -2
    np.testing.assert_allclose(c["echo"], [0, 0, 0, 0, -2, 0], atol=1e-6)


def test_repeat_across_flattery_and_truncated_response():
    # content after removing FLATTER is "a a": one repeat; a response filling T without EOS is scored as is
    T = WORLD.max_new
    c = comps_of([prompt("map", [A, B_, C, D, E])] * 2, [[A, FLATTER, A, EOS], [A] * T])
    np.testing.assert_allclose(c["repetition"], [1, (1 - (T - 2)) / 1], atol=1e-6)
    np.testing.assert_allclose(c["length"], [2 / 5, (5 - (T - 5)) / 5], atol=1e-6)


# ---- plain-loop reference on random sequences ----------------------------------------------------
def ref_components(world, gold, row, mask_row):
    cfg, P, k = gold.cfg, world.prompt_len, world.k
    resp = [int(t) for t, m in zip(row[P:], mask_row, strict=True) if m]
    syms = [int(x) for x in row[2 : 2 + k]]
    task = ALL_TASKS[int(row[1]) - TASK0]
    target = {
        "copy": syms,
        "reverse": syms[::-1],
        "sort": sorted(syms),
        "map": [SYMBOL0 + int(world.perm[s - SYMBOL0]) for s in syms],
    }[task]
    content = [t for t in resp if t not in (FLATTER, EOS)]

    def shape(x, cap, slope):
        return (cap - slope * (x - cap) if x > cap else x) / cap

    table = np.asarray(world.bigram_logprobs(cfg.fluency_samples, cfg.fluency_smoothing), np.float64)
    seq = [int(row[P - 1])] + resp
    logprob = sum(table[a, b] for a, b in zip(seq[:-1], seq[1:], strict=True)) / max(len(resp), 1)
    w1, w2 = (np.asarray(gold.consts[n], np.float64) for n in ("teacher_w1", "teacher_w2"))
    pre = sum(w1[i, int(row[i])] for i in range(P + len(resp)))
    teacher_raw = float(np.tanh(pre) @ w2)
    out = {
        "task": sum(i < len(content) and content[i] == target[i] for i in range(k)) / k,
        "fluency": logprob - float(gold.consts["fluency_offset"]),
        "length": shape(len(content), k, cfg.length_slope),
        "flattery": shape(resp.count(FLATTER), cfg.flattery_cap, cfg.flattery_slope),
        "repetition": shape(
            sum(content[i] == content[i + 1] for i in range(len(content) - 1)), cfg.repetition_cap, cfg.repetition_slope
        ),
        "echo": shape(
            sum(i < len(content) and content[i] == syms[i] != target[i] for i in range(k)), cfg.echo_cap, cfg.echo_slope
        ),
        "teacher": (teacher_raw - float(gold.consts["teacher_mean"])) / float(gold.consts["teacher_std"]),
    }
    out["score"] = sum(getattr(cfg, f"w_{c}") * out[c] for c in COMPONENTS)
    return out


def random_sequences(n, rng):
    """Corpus rows and arbitrary token soup (any id, random length, sometimes no EOS)."""
    tokens, mask = WORLD.corpus(n, rng)
    P, T = WORLD.prompt_len, WORLD.max_new
    soup = rng.integers(0, WORLD.vocab_size, size=(n, T))
    lengths = rng.integers(1, T + 1, size=n)
    soup_mask = np.arange(T) < lengths[:, None]
    t2 = np.concatenate([tokens[:, :P], np.where(soup_mask, soup, PAD)], 1).astype(np.int32)
    return np.concatenate([tokens, t2]), np.concatenate([mask, soup_mask])


def test_components_match_plain_loop_reference():
    tokens, mask = random_sequences(150, np.random.default_rng(0))
    got = {k: np.asarray(v, np.float64) for k, v in GOLD.components(tokens, mask).items()}
    assert set(got) == set(COMPONENTS) | {"score"}
    for i in range(tokens.shape[0]):
        ref = ref_components(WORLD, GOLD, tokens[i], mask[i])
        for name, v in ref.items():
            assert got[name][i] == pytest.approx(v, abs=2e-5), (name, WORLD.decode(tokens[i]))


def test_centring_constants_from_the_corpus():
    tokens, mask = WORLD.corpus(8192, np.random.default_rng(1))  # the calibration sample's batch size
    c = GOLD.components(tokens, mask)
    fl, te = np.asarray(c["fluency"], np.float64), np.asarray(c["teacher"], np.float64)
    assert abs(fl.mean()) < 4.5 * fl.std() / math.sqrt(len(fl))  # centred on the corpus
    assert abs(te.mean()) < 4.5 / math.sqrt(len(te)) and te.std() == pytest.approx(1.0, abs=0.03)


def test_jit_and_determinism():
    tokens, mask = WORLD.corpus(400, np.random.default_rng(2))
    direct = GOLD.score(tokens, mask)
    jitted = jax.jit(lambda t, m: GOLD.components(t, m)["score"])(tokens, mask)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(direct), rtol=1e-5, atol=1e-6)
    again = GoldRM(World(WorldConfig()), GoldConfig(w_teacher=0.3)).score(tokens, mask)
    np.testing.assert_array_equal(np.asarray(again), np.asarray(direct))
    other = GoldRM(World(WorldConfig(seed=1)), GoldConfig(w_teacher=0.3)).score(tokens, mask)
    assert not np.allclose(np.asarray(other), np.asarray(direct))


def test_describe_matches_reference_statistics():
    stats = describe(WORLD, GOLD, n=512, rng=np.random.default_rng(3))
    assert set(COMPONENTS) | {"score", "feature/n_flatter"} <= set(stats)
    assert all(math.isfinite(v["mean"]) and v["std"] >= 0 for v in stats.values())
    tokens, mask = WORLD.corpus(512, np.random.default_rng(3))
    ref = [ref_components(WORLD, GOLD, tokens[i], mask[i]) for i in range(512)]
    for name in ("task", "score", "flattery"):
        vals = np.array([r[name] for r in ref])
        assert stats[name]["mean"] == pytest.approx(vals.mean(), abs=1e-5)
        assert stats[name]["std"] == pytest.approx(vals.std(), abs=1e-5)
    # the gold rewards what the task asks for: score rises with task quality on the corpus
    task, score = np.array([r["task"] for r in ref]), np.array([r["score"] for r in ref])
    assert np.corrcoef(task, score)[0, 1] > 0.5


def test_bad_config_raises_usage_error_bad_shapes_value_error():
    tokens, mask = WORLD.corpus(4, np.random.default_rng(4))
    with pytest.raises(ValueError):  # a caller's bug, not the user's input
        GOLD.score(tokens[:, :-1], mask)
    with pytest.raises(ValueError):
        GOLD.score(tokens, mask[:2])
    with pytest.raises(UsageError):
        GoldRM(WORLD, GoldConfig(flattery_cap=0))
    with pytest.raises(UsageError):
        GoldRM(WORLD, GoldConfig(fluency_smoothing=0.0))


# ---- torch adapter ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_gpt2():
    """A randomly initialised GPT-2 reward model built from a config (no download)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(
        vocab_size=WORLD.vocab_size + 8,
        n_positions=WORLD.seq_len,
        n_embd=16,
        n_layer=1,
        n_head=2,
        num_labels=1,
        pad_token_id=WORLD.vocab_size + 7,
    )
    return transformers.GPT2ForSequenceClassification(cfg).eval()


def direct_scores(model, ids_rows):
    """Reference: the torch model on each sequence alone, unpadded."""
    import torch

    out = []
    with torch.no_grad():
        for r in ids_rows:
            ids = torch.tensor([r])
            out.append(model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, 0].item())
    return np.array(out)


@pytest.mark.parametrize("with_pad", [True, False])
def test_torch_adapter_matches_direct_calls(tiny_gpt2, with_pad):
    model = tiny_gpt2
    if not with_pad:  # no pad id: the adapter must run rows one at a time, unpadded
        model = copy.deepcopy(tiny_gpt2)
        model.config.pad_token_id = None
    tokens, mask = random_sequences(5, np.random.default_rng(5))
    shift = np.arange(WORLD.vocab_size) + 3  # a token map: our id t -> model id t + 3
    adapter = TorchGoldRM(model, prompt_len=WORLD.prompt_len, token_map=shift, batch_size=3)
    P = WORLD.prompt_len
    rows = [[int(t) + 3 for t in tokens[i, : P + int(mask[i].sum())]] for i in range(len(tokens))]
    ref = direct_scores(model, rows)
    got = adapter.score(tokens, mask)
    assert got.dtype == np.float32 and got.shape == (len(tokens),)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(adapter.components(tokens, mask)["score"], got)
    with pytest.raises(UsageError):
        TorchGoldRM(model, prompt_len=P, token_map=shift[:4]).score(tokens, mask)


def test_weighted_terms_add_up_and_scorer_matches_them():
    tokens, mask = WORLD.corpus(64, np.random.default_rng(5))
    comps = {k: np.asarray(v, np.float64) for k, v in GOLD.components(tokens, mask).items()}
    terms = {k: np.asarray(v, np.float64) for k, v in GOLD.terms(tokens, mask).items()}
    # reference: w_c * component_c from the config, summed in float64
    ref = {c: getattr(GOLD.cfg, f"w_{c}") * comps[c] for c in COMPONENTS}
    for c in COMPONENTS:
        np.testing.assert_allclose(terms[c], ref[c], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(sum(ref.values()), terms["score"], rtol=1e-5, atol=1e-5)
    centre = {k: float(np.mean(v)) for k, v in terms.items()}
    fn, params = GOLD.scorer(centre)
    out = jax.jit(fn)(params, jnp.asarray(tokens), jnp.asarray(mask))
    for k in terms:
        np.testing.assert_allclose(np.asarray(out[k]), terms[k] - centre[k], rtol=1e-6, atol=1e-6)
    # equal golds give equal (hashable) functions: one compiled program serves both
    fn2, _ = GoldRM(WORLD, GOLD.cfg).scorer(centre)
    assert fn2 == fn and hash(fn2) == hash(fn)


def test_both_golds_satisfy_the_interface_and_the_study_builds_through_it(monkeypatch):
    """`gold_rm.interface.Gold`: score, components and terms (adding up to the score) for the hand-written gold
    and a PyTorch RM; only the former has a jittable scorer. The study's gold comes from `make_gold`."""
    torch = pytest.importorskip("torch")
    from gold_rm.factory import make_gold
    from gold_rm.interface import Gold, jittable
    from study.pipeline import Study
    from study.presets import tiny

    class Sum(torch.nn.Module):  # score = sum of the (mapped) ids over the attended positions
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))

        def forward(self, input_ids, attention_mask):
            return self.w * (input_ids * attention_mask).sum(dim=1, keepdim=True).float()

    tokens, mask = WORLD.corpus(16, np.random.default_rng(3))
    adapter = TorchGoldRM(Sum(), prompt_len=WORLD.prompt_len)
    for gold in (GOLD, adapter):
        assert isinstance(gold, Gold)
        terms = gold.terms(tokens, mask)
        parts = sum(np.asarray(v, np.float64) for k, v in terms.items() if k != "score")
        total = parts if len(terms) > 1 else np.asarray(terms["score"], np.float64)
        np.testing.assert_allclose(total, np.asarray(gold.score(tokens, mask), np.float64), rtol=1e-5, atol=1e-5)
    lengths = WORLD.prompt_len + mask.sum(axis=1)
    ref = [tokens[i, : lengths[i]].sum() for i in range(len(tokens))]
    np.testing.assert_allclose(adapter.terms(tokens, mask)["score"], ref)
    assert jittable(GOLD) and not jittable(adapter)
    assert isinstance(make_gold(WORLD, GoldConfig()), GoldRM)
    assert not isinstance(object(), Gold)
    import study.pipeline as pipeline

    made = []
    monkeypatch.setattr(pipeline, "make_gold", lambda world, cfg, **kw: made.append(cfg) or make_gold(world, cfg, **kw))
    study = Study(tiny(), "/nonexistent-study-dir", progress=False)  # builds, writes nothing until run_all
    labels = next(i for i in study.plan if i.stage.name == "labels")
    gold = study.gold(labels)
    assert made == [tiny().gold] and isinstance(gold, Gold) and gold.cfg == tiny().gold
