"""The text world (issue 34 items 2-4): left-padded sampling against transformers' generate, prompts files,
reward models scoring text (JAX and torch against transformers scoring each text alone), the gold by name,
and `overopt bon --policy ...` end to end on tiny random checkpoints saved with `save_pretrained` (the text
study itself: tests/test_text_study.py)."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from core.errors import UsageError
from core.store import canonical_json

torch = pytest.importorskip("torch")
T = pytest.importorskip("transformers")

from gold_rm.factory import gold_by_name  # noqa: E402
from gold_rm.interface import Gold, jittable  # noqa: E402
from gold_rm.text_world import TextWorld, read_prompts  # noqa: E402
from lm.hf import load, tiny  # noqa: E402
from lm.hf.text_rm import JaxTextRM, TorchTextRM, parse_ref  # noqa: E402
from lm.hf.tokenizer import with_token_ids  # noqa: E402
from lm.model import forward, response_logprobs  # noqa: E402
from lm.sampling import sample  # noqa: E402
from overopt.cli import main  # noqa: E402
from study.stages.text_models import load_policy, prompt_bank  # noqa: E402
from study.text_config import resolve_text  # noqa: E402

PROMPTS = ["hello there", "how do you make a cup of tea?", "the fox", "a"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny checkpoints sharing one tokenizer: GPT-2 and Llama policies, NeoX and Llama proxies, a GPT-2 gold."""
    d = tmp_path_factory.mktemp("tiny")
    tok = tiny.tokenizer(d / "tok")
    return {
        "gpt2": tiny.model(d / "gpt2", "gpt2", seed=1, tokenizer_from=tok),
        "llama": tiny.model(d / "llama", "llama", seed=2, tokenizer_from=tok),
        "p_neox": tiny.model(d / "p_neox", "neox", reward=True, seed=3, tokenizer_from=tok),
        "p_llama": tiny.model(d / "p_llama", "llama", reward=True, seed=4, tokenizer_from=tok, width=16, heads=2),
        "gold": tiny.model(d / "gold", "gpt2", reward=True, seed=5, tokenizer_from=tok, width=48),
    }


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_left_padded_greedy_sampling_matches_transformers_generate(family, models):
    src = models[family]
    imp = load(src)
    world = TextWorld.build(src, PROMPTS, 64, imp.hf_config)
    p = world.prompts
    assert p.offsets.min() == 0 and p.offsets.max() > 0  # the prompts really are padded
    graphdef, cfg = with_token_ids(imp, world.eos_id, world.pad_id)
    t = 8
    out = sample(graphdef, imp.state, p.ids, jax.random.key(0), max_new=t, greedy=True, offsets=p.offsets)
    ref_model = T.AutoModelForCausalLM.from_pretrained(src).eval()
    attention = np.arange(p.length)[None, :] >= p.offsets[:, None]
    with torch.no_grad():
        ref = ref_model.generate(
            torch.as_tensor(p.ids, dtype=torch.long), attention_mask=torch.as_tensor(attention, dtype=torch.long),
            do_sample=False, max_new_tokens=t, pad_token_id=world.pad_id, eos_token_id=world.eos_id,
        ).numpy()  # fmt: skip
    ref = np.pad(ref, ((0, 0), (0, p.length + t - ref.shape[1])), constant_values=world.pad_id)
    np.testing.assert_array_equal(np.asarray(out.tokens), ref)
    # teacher-forced log-probs of the padded rows equal the sampler's
    scored = response_logprobs(graphdef, imp.state, out.tokens, p.length, offset=p.offsets)
    np.testing.assert_allclose(np.asarray(scored), np.asarray(out.logprobs), atol=1e-5)
    # the texts round-trip: each prompt's kept tokens decode to the prompt
    assert world.prompt_texts(range(len(PROMPTS))) == PROMPTS


def test_prompts_files(tmp_path):
    (tmp_path / "p.txt").write_text("first\n\n  \nsecond line\n")
    assert read_prompts(tmp_path / "p.txt") == ["first", "second line"]
    pd.DataFrame({"id": [1, 2], "prompt": ["a", "b"]}).to_parquet(tmp_path / "p.parquet")
    assert read_prompts(tmp_path / "p.parquet") == ["a", "b"]
    pd.DataFrame({"q": ["x", "y"], "n": [1, 2]}).to_json(tmp_path / "p.jsonl", orient="records", lines=True)
    assert read_prompts(tmp_path / "p.jsonl") == ["x", "y"]  # the only column of strings
    assert read_prompts(tmp_path / "p.jsonl", "q") == ["x", "y"]
    for bad, column in [("p.jsonl", "n"), ("p.jsonl", "zz"), ("p.txt", "q"), ("none.txt", None)]:
        with pytest.raises(UsageError):
            read_prompts(tmp_path / bad, column)
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(UsageError, match="no prompts"):
        read_prompts(tmp_path / "empty.txt")


def test_text_reward_models_score_as_transformers_does_each_text_alone(models):
    texts = ["hello there, friend", "a", "the quick brown fox jumps over the lazy dog again and again"]
    src = models["p_llama"]
    ref_model = T.AutoModelForSequenceClassification.from_pretrained(src).eval()
    tok = T.AutoTokenizer.from_pretrained(src)
    with torch.no_grad():
        ref = np.array([ref_model(torch.as_tensor([tok(t)["input_ids"]])).logits[0, 0].item() for t in texts])
    jax_rm, torch_rm = JaxTextRM(src, batch_size=2), TorchTextRM(src, batch_size=2)
    np.testing.assert_allclose(jax_rm.score_texts(texts), ref, atol=1e-4)
    np.testing.assert_allclose(torch_rm.score_texts(texts), ref, atol=1e-5)
    assert torch_rm.rows == 3 and torch_rm.seconds > 0
    assert jax_rm.n_params == torch_rm.n_params == sum(p.numel() for p in ref_model.parameters())


def test_gold_by_name(models):
    world = TextWorld.build(models["gpt2"], PROMPTS[:2], 32)
    gold = gold_by_name(f"torch:{models['gold']}", text_world=world)
    assert isinstance(gold, Gold) and not jittable(gold)
    tokens = np.concatenate([world.prompts.ids, np.array([[40, 41, 0], [42, 0, 0]])], axis=1)
    mask = np.array([[True, True, True], [True, True, False]])
    texts = [PROMPTS[0] + world.tokenizer.decode([40, 41]), PROMPTS[1] + world.tokenizer.decode([42])]
    np.testing.assert_allclose(gold.score(tokens, mask), TorchTextRM(models["gold"]).score_texts(texts), atol=1e-6)
    assert gold.terms(tokens, mask).keys() == {"score"} and gold.cost()["rows"] == 4  # scored twice
    for bad in ["formula", "hf:/no/such/dir", "onnx:x", "gold"]:
        with pytest.raises(UsageError):
            gold_by_name(bad, text_world=world)
    with pytest.raises(UsageError):
        parse_ref(f"torch:{models['gold']}", allowed=("hf",))


@pytest.mark.parametrize("policy", ["gpt2", "llama"])
def test_overopt_bon_text_end_to_end(policy, models, tmp_path, capsys):
    (tmp_path / "prompts.txt").write_text("\n".join(PROMPTS[:3]) + "\n")
    out = tmp_path / "out"
    argv = [
        "bon", "--policy", f"hf:{models[policy]}", "--proxy", f"hf:{models['p_neox']}", f"torch:{models['p_llama']}",
        "--gold", f"torch:{models['gold']}", "--prompts", str(tmp_path / "prompts.txt"), "--pool", "6",
        "--max-new-tokens", "5", "--out", str(out), "--n-boot", "0",
    ]  # fmt: skip
    assert main(argv) == 0
    samples = pd.read_parquet(out / "samples.parquet")
    points = pd.read_parquet(out / "points.parquet")
    cost = json.loads((out / "cost.json").read_text())
    assert len(samples) == 2 * 3 * 6 and samples["n_tokens"].max() <= 5
    assert {r["role"] for r in cost["reward_models"]} == {"proxy", "gold"}
    assert [r["rows"] for r in cost["reward_models"]] == [18, 18, 18]  # the pool once each, gold on it only
    assert set(points["rule"]) == {"max", "soft", "poisson", "regularized"}
    assert (out / "fits.json").exists() and (out / "report.md").exists() and any((out / "figures").glob("*.png"))
    # best-of-6 (the whole pool): the gold of each prompt's top-proxy response, recentred by the pool's mean
    for ref, sub in samples.groupby("proxy_ref"):
        top = sub.loc[sub.groupby("prompt")["proxy"].idxmax(), "gold"].mean() - sub["gold"].mean()
        row = points[(points["rule"] == "max") & (points["rm_params"] == sub["rm_params"].iloc[0])]
        assert row.loc[row["n"] == 6, "gold"].item() == pytest.approx(top, abs=1e-9), ref
        assert row.loc[row["n"] == 1, "gold"].item() == pytest.approx(0.0, abs=1e-9)
    # the stored log-probs are the policy's: teacher-forced scores of the sampled tokens, left padding and all
    imp = load(models[policy])
    world = TextWorld.build(models[policy], PROMPTS[:3], 64, imp.hf_config)
    graphdef, _ = with_token_ids(imp, world.eos_id, world.pad_id)
    one = samples[samples["proxy_ref"] == samples["proxy_ref"].iloc[0]]
    resp = np.full((len(one), 5), world.pad_id, np.int32)
    for i, r in enumerate(one["response"]):
        ids = [int(t) for t in r.split()]
        resp[i, : len(ids)] = ids
    rows = one["prompt"].to_numpy()
    tokens = np.concatenate([world.prompts.ids[rows], resp], axis=1)
    lp = np.asarray(
        response_logprobs(graphdef, imp.state, tokens, world.prompt_len, offset=world.prompts.offsets[rows])
    )
    mask = np.arange(5)[None, :] < one["n_tokens"].to_numpy()[:, None]
    np.testing.assert_allclose(np.where(mask, lp, 0).sum(1), one["ref_logprob"], atol=1e-4)
    assert list(one["response_text"]) == [world.tokenizer.decode([t for t in r if t != world.eos_id]) for r in resp]


def test_overopt_bon_text_bad_input_writes_nothing(models, tmp_path, capsys):
    (tmp_path / "p.txt").write_text("hi\n")
    out = tmp_path / "out"
    good = [
        "--policy",
        f"hf:{models['gpt2']}",
        "--proxy",
        f"hf:{models['p_neox']}",
        "--gold",
        f"torch:{models['gold']}",
    ]
    cases = [
        [*good, "--prompts", str(tmp_path / "p.txt"), "--pool", "8"],  # no --out
        [*good, "--prompts", str(tmp_path / "p.txt"), "--pool", "2", "--out", str(out)],  # pool too small
        [*good, "--prompts", str(tmp_path / "nope.txt"), "--pool", "8", "--out", str(out)],
        [*good[:4], "--gold", "gold.pt", "--prompts", str(tmp_path / "p.txt"), "--pool", "8", "--out", str(out)],
        [*good, "--prompts", str(tmp_path / "p.txt"), "--pool", "8", "--out", str(out), "--max-new-tokens", "4096"],
        [str(tmp_path / "p.txt"), "--policy", f"hf:{models['gpt2']}"],  # SAMPLES and the text world
        [],  # neither
    ]
    for args in cases:
        capsys.readouterr()
        assert main(["bon", *args]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("overopt: error:"), (args, err)
        assert not out.exists()


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_bf16_compute_keeps_float32_weights_and_stays_near_transformers(family, models):
    src = models[family]
    fp32, bf16 = load(src), load(src, compute_dtype="bfloat16")
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(bf16.state))
    tokens = np.random.default_rng(0).integers(0, tiny.VOCAB, (2, 12))
    ref_model = T.AutoModelForCausalLM.from_pretrained(src).eval()
    with torch.no_grad():
        ref = ref_model(torch.as_tensor(tokens)).logits.numpy()
    ours32 = np.asarray(forward(fp32.graphdef, fp32.state, jnp.asarray(tokens))[0])
    ours16 = np.asarray(forward(bf16.graphdef, bf16.state, jnp.asarray(tokens))[0])
    assert ours16.dtype == np.float32
    assert np.abs(ours32 - ref).max() < 1e-4
    err = np.abs(ours16 - ref).max()
    assert 1e-4 < err < 0.05, err  # really bf16 (8 bits of mantissa), and close
    # the default is left out of ids: configs written before the option hash as they did
    assert "compute_dtype" not in canonical_json(fp32.cfg) and "compute_dtype" in canonical_json(bf16.cfg)


def test_text_study_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "s"
    cases = [
        ["--set", "pool=2"],
        ["--set", "policy=hf:/no/such/dir"],
        ["--set", "backbones=['tiny:gpt3:16']"],
        ["--set", "gold=onnx:x"],
        ["--set", f"prompts={tmp_path / 'none.txt'}"],
        ["--set", "nope=1"],
        ["--resume"],
        ["--replicate", "-1"],
    ]
    for args in cases:
        capsys.readouterr()
        assert main(["study", "--preset", "text-tiny", "--out", str(out), *args]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("overopt: error:"), (args, err)
        assert not out.exists()
    assert main(["study", "--preset", "text-pythia", "--print-config"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["preset"] == "text-pythia" and cfg["ppo"]["max_new"] == cfg["max_new"]


def test_text_study_prompt_bank_left_pads_short_prompts_and_cuts_long_ones(models, tmp_path):
    policy = load_policy(models["gpt2"])
    texts = ["a", "the quick brown fox jumps over the lazy dog", "hello there, how do you make a cup of tea?"]
    cfg = resolve_text("text-tiny", ["prompt_tokens=4"])
    bank, kept, truncated = prompt_bank(cfg, policy, texts)
    lists = [policy.tokenizer(t)["input_ids"] for t in texts]
    assert len(lists[0]) < 4 < min(len(lists[1]), len(lists[2]))
    assert truncated == 2 and kept == texts and bank.offsets.tolist() == [4 - len(lists[0]), 0, 0]
    pad = policy.cfg.pad_id
    assert bank.ids.tolist() == [[pad] * (4 - len(lists[0])) + lists[0], lists[1][-4:], lists[2][-4:]]
    assert resolve_text("text-tiny", []).prompt_tokens > 10  # text-tiny's built-in prompts: some are padded
    with pytest.raises(UsageError):
        prompt_bank(resolve_text("text-tiny", ["prompt_tokens=125"]), policy, texts)  # 125 + 8 > n_ctx 128
