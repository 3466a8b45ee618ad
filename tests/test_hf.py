"""Hugging Face import and export (lm.hf) against transformers' own torch models: tiny random models
built from configs and saved with `save_pretrained` (nothing is downloaded)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from core.errors import UsageError
from lm.hf import export, load, sequence_scores
from lm.hf.files import read_safetensors
from lm.model import ModelConfig, forward, init, param_count, response_logprobs
from lm.sampling import sample

torch = pytest.importorskip("torch")
T = pytest.importorskip("transformers")

V = 128
TOL = 1e-4


def _perturbed(model):
    """Move every parameter (norm scales, zero-initialised biases too) off its init, reproducibly."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def _configs():
    llama3 = {
        "rope_type": "llama3",
        "rope_theta": 500000.0,
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 16,
    }
    small = {"vocab_size": V, "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 64}
    return {
        "gpt2": lambda: T.GPT2LMHeadModel(T.GPT2Config(vocab_size=V, n_positions=64, n_embd=32, n_layer=2, n_head=4)),
        "neox": lambda: T.GPTNeoXForCausalLM(T.GPTNeoXConfig(hidden_size=32, intermediate_size=64, **small)),
        "neox-seq": lambda: T.GPTNeoXForCausalLM(
            T.GPTNeoXConfig(hidden_size=32, intermediate_size=64, use_parallel_residual=False, **small)
        ),
        "llama": lambda: T.LlamaForCausalLM(
            T.LlamaConfig(
                hidden_size=32, intermediate_size=48, num_key_value_heads=2, tie_word_embeddings=False, **small
            )
        ),
        "llama3-rope": lambda: T.LlamaForCausalLM(
            T.LlamaConfig(hidden_size=32, intermediate_size=48, num_key_value_heads=2, rope_parameters=llama3, **small)
        ),
        "qwen2": lambda: T.Qwen2ForCausalLM(
            T.Qwen2Config(
                hidden_size=32, intermediate_size=48, num_key_value_heads=1, tie_word_embeddings=True, **small
            )
        ),
    }


def _save(model, path, **kw):
    if kw.pop("bin", False):  # transformers 5 writes safetensors only: a PyTorch state dict by hand
        path.mkdir()
        model.config.save_pretrained(path)
        torch.save(model.state_dict(), path / "pytorch_model.bin")
        return path
    model.save_pretrained(path, **kw)
    return path


def _tokens(b=3, s=11, seed=0):
    return np.random.default_rng(seed).integers(0, V, (b, s))


def _hf_logits(model, tokens):
    with torch.no_grad():
        return model(torch.as_tensor(tokens)).logits.numpy()


# (name, save_pretrained options): one .bin case and one sharded case
CASES = [
    ("gpt2", {}),
    ("gpt2", {"max_shard_size": "20KB"}),
    ("neox", {"bin": True}),
    ("neox-seq", {}),
    ("llama", {}),
    ("llama3-rope", {}),
    ("qwen2", {}),
]


@pytest.mark.parametrize("name,save_kw", CASES, ids=[f"{n}{'-' + next(iter(k)) if k else ''}" for n, k in CASES])
def test_policy_logits_match_transformers_and_export_round_trips(name, save_kw, tmp_path):
    ref_model = _perturbed(_configs()[name]())
    src = _save(ref_model, tmp_path / "src", **dict(save_kw))
    if save_kw.get("bin"):
        assert not (src / "model.safetensors").exists()
    if "max_shard_size" in save_kw:
        assert (src / "model.safetensors.index.json").exists()
    imp = load(src)
    tokens = _tokens()
    ref = _hf_logits(ref_model, tokens)
    logits, _ = forward(imp.graphdef, imp.state, jnp.asarray(tokens))
    assert np.abs(np.asarray(logits) - ref).max() < TOL
    assert param_count(imp.cfg) == sum(p.numel() for p in ref_model.parameters())  # tied counted once
    # export -> transformers' Auto class -> the same logits
    out = export(tmp_path / "out", imp.graphdef, imp.state)
    back = T.AutoModelForCausalLM.from_pretrained(out).eval()
    assert type(back) is type(ref_model)
    assert np.abs(_hf_logits(back, tokens) - ref).max() < TOL
    assert sum(p.numel() for p in back.parameters()) == sum(p.numel() for p in ref_model.parameters())


def test_bfloat16_checkpoint_reads_exactly(tmp_path):
    ref_model = _perturbed(_configs()["llama"]()).to(torch.bfloat16)
    imp = load(_save(ref_model, tmp_path / "bf16"))
    tokens = _tokens()
    logits, _ = forward(imp.graphdef, imp.state, jnp.asarray(tokens))
    ref = _hf_logits(ref_model.float(), tokens)  # the bf16 weights, computed in fp32 on both sides
    assert np.abs(np.asarray(logits) - ref).max() < TOL


@pytest.mark.parametrize("name", ["llama", "neox"])
def test_greedy_kv_cache_generation_matches_transformers_generate(name, tmp_path):
    ref_model = _perturbed(_configs()[name]())
    imp = load(_save(ref_model, tmp_path / "m"))
    prompts, t = _tokens(b=3, s=5, seed=1), 12
    with torch.no_grad():
        ref = ref_model.generate(
            torch.as_tensor(prompts), attention_mask=torch.ones(prompts.shape, dtype=torch.long),
            do_sample=False, max_new_tokens=t, pad_token_id=imp.cfg.pad_id,
        ).numpy()  # fmt: skip
    ref = np.pad(ref, ((0, 0), (0, prompts.shape[1] + t - ref.shape[1])), constant_values=imp.cfg.pad_id)
    out = sample(imp.graphdef, imp.state, jnp.asarray(prompts), jax.random.key(0), max_new=t, greedy=True)
    np.testing.assert_array_equal(np.asarray(out.tokens), ref)
    # the sampler's log-probs equal teacher-forced scoring of the same tokens
    scored = response_logprobs(imp.graphdef, imp.state, out.tokens, prompts.shape[1])
    np.testing.assert_allclose(np.asarray(scored), np.asarray(out.logprobs), atol=1e-5)


def test_response_logprobs_stop_after_first_eos_when_pad_is_eos(tmp_path):
    """Qwen2's config has no pad token: PAD = EOS, and every position after the first EOS scores 0."""
    ref_model = _perturbed(_configs()["qwen2"]())
    ref_model.config.eos_token_id = 7
    imp = load(_save(ref_model, tmp_path / "m"))
    assert imp.cfg.pad_id == imp.cfg.eos_id == 7 and imp.cfg.forbidden == ()
    tokens = _tokens(b=2, s=10, seed=2)
    tokens[tokens == 7] = 8
    tokens[0, 6], tokens[0, 7:] = 7, 7  # EOS at response position 2, then EOS as padding
    p = 4
    z = _hf_logits(ref_model, tokens)[:, p - 1 : -1].astype(np.float64)
    logp = z - np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)) - z.max(-1, keepdims=True)
    ref = np.take_along_axis(logp, tokens[:, p:, None], axis=-1)[..., 0]
    ref[0, 3:] = 0.0
    got = np.asarray(response_logprobs(imp.graphdef, imp.state, jnp.asarray(tokens), p))
    np.testing.assert_allclose(got, ref, atol=TOL)


def _seq_cls(name):
    if name == "gpt2":
        cfg = T.GPT2Config(vocab_size=V, n_positions=64, n_embd=32, n_layer=2, n_head=4, num_labels=1, pad_token_id=5)
        return T.GPT2ForSequenceClassification(cfg)
    cfg = T.LlamaConfig(
        vocab_size=V, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, num_labels=1, pad_token_id=5, max_position_embeddings=64,
    )  # fmt: skip
    return T.LlamaForSequenceClassification(cfg)


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_sequence_classification_scores_match_and_round_trip(name, tmp_path):
    ref_model = _perturbed(_seq_cls(name))
    imp = load(_save(ref_model, tmp_path / "rm"), role="reward")
    assert imp.score_from_checkpoint and not imp.cfg.scalar_bias
    tokens = _tokens(b=4, s=9, seed=3)
    tokens[tokens == 5] = 6
    tokens[1, 6:], tokens[2, 3:] = 5, 5  # right padding with the config's pad token
    with torch.no_grad():
        ref = ref_model(torch.as_tensor(tokens)).logits.numpy()[:, 0]
    got = np.asarray(sequence_scores(imp, tokens))
    assert np.abs(got - ref).max() < TOL
    out = export(tmp_path / "out", imp.graphdef, imp.state, copy_from=tmp_path / "rm")
    back = T.AutoModelForSequenceClassification.from_pretrained(out).eval()
    with torch.no_grad():
        again = back(torch.as_tensor(tokens)).logits.numpy()[:, 0]
    assert np.abs(again - ref).max() < TOL


def test_reward_role_on_an_lm_checkpoint_gets_a_new_scalar_head(tmp_path):
    ref_model = _perturbed(_configs()["gpt2"]())
    src = _save(ref_model, tmp_path / "lm")
    rm = load(src, role="reward", seed=3)
    assert not rm.score_from_checkpoint
    policy = load(src, value_head=True)
    tokens = jnp.asarray(_tokens())
    (logits, values), (none, scores) = (
        forward(policy.graphdef, policy.state, tokens),
        forward(rm.graphdef, rm.state, tokens),
    )
    assert none is None and values.shape == scores.shape == tokens.shape
    assert np.abs(np.asarray(logits) - _hf_logits(ref_model, np.array(tokens))).max() < TOL


@pytest.mark.parametrize("tied", [True, False])
def test_synthetic_gpt_exports_as_gpt2(tied, tmp_path):
    cfg = ModelConfig(vocab_size=19, n_ctx=12, n_layer=2, d_model=16, n_head=4, tie_embeddings=tied)
    graphdef, state = init(cfg, 4)
    rng = np.random.default_rng(2)  # LayerNorm and biases away from their (1, 0) init
    state = jax.tree.map(lambda x: jnp.asarray(np.asarray(x) + rng.normal(0, 0.1, x.shape).astype(np.float32)), state)
    out = export(tmp_path / "gpt2", graphdef, state)
    hf = T.GPT2LMHeadModel.from_pretrained(out).eval()
    tokens = np.asarray(jax.random.randint(jax.random.key(3), (3, 12), 4, cfg.vocab_size))
    ours, _ = forward(graphdef, state, jnp.asarray(tokens))
    assert np.abs(np.asarray(ours) - _hf_logits(hf, tokens)).max() < TOL
    assert json.loads((out / "config.json").read_text())["pad_token_id"] == 0
    back = load(out)  # and back in: the same config (the world's special tokens kept) and logits
    assert back.cfg == cfg
    np.testing.assert_allclose(np.asarray(forward(back.graphdef, back.state, jnp.asarray(tokens))[0]), ours, atol=1e-6)


def test_scalar_head_bias_is_refused_on_export_unless_dropped(tmp_path):
    cfg = ModelConfig(vocab_size=19, n_ctx=12, n_layer=1, d_model=16, n_head=4)
    graphdef, state = init(cfg, 0, lm_head=False, scalar_head=True)
    state["scalar_head"]["bias"].set_value(jnp.array([0.25]))
    with pytest.raises(UsageError, match="bias 0.25"):
        export(tmp_path / "rm", graphdef, state)
    out = export(tmp_path / "rm", graphdef, state, drop_score_bias=True)
    hf = T.AutoModelForSequenceClassification.from_pretrained(out).eval()
    tokens = np.asarray(jax.random.randint(jax.random.key(1), (2, 8), 4, 19))
    _, values = forward(graphdef, state, jnp.asarray(tokens))
    with torch.no_grad():
        ref = hf(torch.as_tensor(tokens)).logits.numpy()[:, 0]
    np.testing.assert_allclose(np.asarray(values)[:, -1] - 0.25, ref, atol=TOL)


def test_bad_checkpoints_are_one_line_usage_errors(tmp_path):
    bad = tmp_path / "bert"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    for path, match in (
        (bad, "'bert' .*BertModel.* not supported"),
        (tmp_path / "absent", "not a directory"),
        (tmp_path, "has no config.json"),
    ):
        with pytest.raises(UsageError, match=match) as e:
            load(path)
        assert "\n" not in str(e.value)
    src = _save(_perturbed(_configs()["gpt2"]()), tmp_path / "gpt2")
    weights = src / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(UsageError, match="truncated"):
        load(src)
    weights.unlink()
    with pytest.raises(UsageError, match="has no weights"):
        load(src)
    with pytest.raises(UsageError, match="role"):
        load(src, role="gold")
    assert read_safetensors.__module__ == "lm.hf.files"


def test_default_gpt_keeps_its_parameter_tree():
    """Checkpoints of the synthetic GPT stay loadable: the default model's parameter names are unchanged."""
    from lm.hf import flat_state
    from lm.model import abstract

    _, state = abstract(ModelConfig(vocab_size=19, n_ctx=12, n_layer=1, d_model=16, n_head=4), scalar_head=True)
    block = [f"blocks/0/{m}/{p}" for m in ("attn/proj", "attn/qkv", "fc") for p in ("bias", "kernel")]
    block += [f"blocks/0/{m}/{p}" for m in ("ln_1", "ln_2") for p in ("bias", "scale")]
    block += ["blocks/0/out/bias", "blocks/0/out/kernel"]
    heads = ["ln_f/bias", "ln_f/scale", "scalar_head/bias", "scalar_head/kernel", "wpe/embedding", "wte/embedding"]
    assert sorted(flat_state(state)) == sorted(block + heads)


def test_imported_config_survives_a_json_round_trip(tmp_path):
    """Proxy and gold metadata store `ModelConfig.__dict__` as JSON: tuples come back as lists."""
    imp = load(_save(_perturbed(_configs()["llama3-rope"]()), tmp_path / "m"))
    again = ModelConfig(**json.loads(json.dumps(imp.cfg.__dict__)))
    assert again == imp.cfg and hash(again) == hash(imp.cfg) and imp.cfg.rope["rope_type"] == "llama3"
