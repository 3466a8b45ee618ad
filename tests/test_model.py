"""The transformer family against independent references: Hugging Face GPT-2, float64 numpy, hand counts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from core.errors import UsageError
from core.tokens import BOS, EOS, PAD, SEP
from lm.model import (
    GPT,
    ModelConfig,
    abstract,
    forward,
    init,
    param_count,
    response_logprobs,
    scalar_at_end,
    transfer_trunk,
)

CFG = ModelConfig(vocab_size=19, n_ctx=12, n_layer=2, d_model=16, n_head=4)


def _leaf_total(state) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state))


def _hand_count(v, n_ctx, n_layer, d, tied, lm_head, scalar_head) -> int:
    """Count GPT-2 tensors one by one, as listed in the GPT-2 checkpoint layout."""
    block = {
        "ln_1": 2 * d,
        "attn.c_attn": d * 3 * d + 3 * d,
        "attn.c_proj": d * d + d,
        "ln_2": 2 * d,
        "mlp.c_fc": d * 4 * d + 4 * d,
        "mlp.c_proj": 4 * d * d + d,
    }
    total = v * d + n_ctx * d + n_layer * sum(block.values()) + 2 * d
    total += v * d if (lm_head and not tied) else 0
    return total + (d + 1 if scalar_head else 0)


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("heads", [(True, False), (False, True), (True, True)])
@pytest.mark.parametrize("sizes", [(19, 12, 2, 16, 4), (40, 7, 1, 8, 2), (23, 30, 3, 24, 3)])
def test_param_count_matches_state_shapes_and_hand_formula(tied, heads, sizes):
    v, n_ctx, n_layer, d, h = sizes
    cfg = ModelConfig(v, n_ctx, n_layer, d, h, tie_embeddings=tied)
    n = param_count(cfg, lm_head=heads[0], scalar_head=heads[1])
    assert n == _hand_count(v, n_ctx, n_layer, d, tied, *heads)
    _, abstract_state = abstract(cfg, lm_head=heads[0], scalar_head=heads[1])
    assert n == _leaf_total(abstract_state)


def test_param_count_matches_initialised_state():
    cfg = ModelConfig(vocab_size=19, n_ctx=12, n_layer=2, d_model=16, n_head=4, tie_embeddings=False)
    _, state = init(cfg, jax.random.key(0), lm_head=True, scalar_head=True)
    assert param_count(cfg, lm_head=True, scalar_head=True) == _leaf_total(state)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state))


def _to_hf(cfg: ModelConfig, state):
    """Copy our weights into a transformers GPT2LMHeadModel (Conv1D weights are [in, out], as ours)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    hf_cfg = transformers.GPT2Config(
        vocab_size=cfg.vocab_size,
        n_positions=cfg.n_ctx,
        n_embd=cfg.d_model,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        layer_norm_epsilon=1e-5,
        activation_function="gelu_new",
        tie_word_embeddings=cfg.tie_embeddings,
        bos_token_id=BOS,
        eos_token_id=EOS,
        pad_token_id=PAD,
    )
    hf = transformers.GPT2LMHeadModel(hf_cfg).eval()
    s = jax.tree.map(np.asarray, state.to_pure_dict())
    pairs = {
        "transformer.wte.weight": s["wte"]["embedding"],
        "transformer.wpe.weight": s["wpe"]["embedding"],
        "transformer.ln_f.weight": s["ln_f"]["scale"],
        "transformer.ln_f.bias": s["ln_f"]["bias"],
    }
    for i in range(cfg.n_layer):
        b, pre = s["blocks"][i], f"transformer.h.{i}."
        for ours, theirs in (("ln_1", "ln_1"), ("ln_2", "ln_2")):
            pairs[pre + theirs + ".weight"], pairs[pre + theirs + ".bias"] = b[ours]["scale"], b[ours]["bias"]
        for ours, theirs in (("qkv", "attn.c_attn"), ("proj", "attn.c_proj")):
            pairs[pre + theirs + ".weight"] = b["attn"][ours]["kernel"]
            pairs[pre + theirs + ".bias"] = b["attn"][ours]["bias"]
        for ours, theirs in (("fc", "mlp.c_fc"), ("out", "mlp.c_proj")):
            pairs[pre + theirs + ".weight"] = b[ours]["kernel"]
            pairs[pre + theirs + ".bias"] = b[ours]["bias"]
    if not cfg.tie_embeddings:
        pairs["lm_head.weight"] = s["lm_head"]["kernel"].T
    params = dict(hf.named_parameters())
    with torch.no_grad():
        for name, value in pairs.items():
            assert params[name].shape == value.shape, name
            params[name].copy_(torch.from_numpy(np.ascontiguousarray(value)))
    # Every HF parameter was set (a tied lm_head.weight is the wte tensor itself).
    assert set(params) <= set(pairs) | {"lm_head.weight"}
    return hf


@pytest.mark.parametrize("tied", [True, False])
def test_logits_match_hugging_face_gpt2(tied):
    torch = pytest.importorskip("torch")
    cfg = ModelConfig(vocab_size=19, n_ctx=12, n_layer=2, d_model=16, n_head=4, tie_embeddings=tied)
    graphdef, state = init(cfg, jax.random.key(1))
    # Perturb LayerNorm/bias parameters away from their (1, 0) init so the comparison covers them.
    rng = np.random.default_rng(2)
    state = jax.tree.map(lambda x: jnp.asarray(np.asarray(x) + rng.normal(0, 0.1, x.shape).astype(np.float32)), state)
    hf = _to_hf(cfg, state)
    tokens = np.array(jax.random.randint(jax.random.key(3), (3, 12), 4, cfg.vocab_size))
    tokens[0, 8:] = PAD  # PAD positions score 0
    with torch.no_grad():
        ref = hf(torch.from_numpy(tokens).long()).logits.numpy()
    logits, scalar = forward(graphdef, state, jnp.asarray(tokens))
    assert scalar is None
    np.testing.assert_allclose(np.asarray(logits), ref, rtol=1e-4, atol=1e-4)
    # The teacher-forced scorer against HF's logits, masked and log-softmaxed in float64.
    p, temperature = 5, 0.8
    z = ref[:, p - 1 : -1].astype(np.float64) / temperature
    z[..., [PAD, BOS, SEP]] = -np.inf
    lp = np.take_along_axis(_log_softmax64(z), tokens[:, p:, None], axis=-1)[..., 0]
    lp = np.where(tokens[:, p:] == PAD, 0.0, lp)
    got = response_logprobs(graphdef, state, jnp.asarray(tokens), p, temperature)
    np.testing.assert_allclose(np.asarray(got), lp, rtol=1e-4, atol=1e-4)
    assert param_count(cfg) == sum(p.numel() for p in hf.parameters())  # tied weights counted once


def test_forward_is_causal():
    graphdef, state = init(CFG, jax.random.key(0), lm_head=True, scalar_head=True)
    a = jax.random.randint(jax.random.key(1), (2, 10), 4, CFG.vocab_size)
    b = a.at[:, 6:].set((a[:, 6:] + 1) % CFG.vocab_size)
    la, sa = forward(graphdef, state, a)
    lb, sb = forward(graphdef, state, b)
    np.testing.assert_allclose(la[:, :6], lb[:, :6], atol=1e-6)
    np.testing.assert_allclose(sa[:, :6], sb[:, :6], atol=1e-6)
    assert not np.allclose(la[:, 6:], lb[:, 6:])


def _log_softmax64(z):
    z = np.asarray(z, np.float64)
    m = z.max(-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_response_logprobs_against_float64_loop(temperature):
    """Position by position from full-forward logits (causality is tested above), log-softmax in float64."""
    graphdef, state = init(CFG, jax.random.key(0))
    p, t = 4, 6
    rng = np.random.default_rng(0)
    tokens = rng.integers(4, CFG.vocab_size, size=(3, p + t)).astype(np.int32)
    tokens[:, 0], tokens[:, p - 1] = BOS, SEP
    tokens[0, p + 2], tokens[0, p + 3 :] = EOS, PAD  # a finished response padded after EOS
    got = np.asarray(response_logprobs(graphdef, state, jnp.asarray(tokens), p, temperature))
    assert got.shape == (3, t)
    logits = np.asarray(forward(graphdef, state, jnp.asarray(tokens))[0], np.float64)
    for b in range(3):
        for j in range(t):
            z = logits[b, p + j - 1].copy()
            z[[PAD, BOS, SEP]] = -np.inf
            tok = tokens[b, p + j]
            ref = 0.0 if tok == PAD else _log_softmax64(z / temperature)[tok]
            np.testing.assert_allclose(got[b, j], ref, rtol=1e-5, atol=1e-5)
    assert np.all(got[0, 3:] == 0.0) and np.all(np.isfinite(got))


def test_scalar_at_end_reads_last_response_token():
    graphdef, state = init(CFG, jax.random.key(0), lm_head=False, scalar_head=True)
    p, t = 3, 5
    tokens = jnp.asarray(np.random.default_rng(1).integers(4, CFG.vocab_size, size=(3, p + t)), jnp.int32)
    mask = np.zeros((3, t), bool)
    mask[0, :2] = True  # EOS at response position 1
    mask[1, :] = True  # truncated: no EOS
    mask[2, :1] = True  # one-token response
    _, values = forward(graphdef, state, tokens)
    got = np.asarray(scalar_at_end(graphdef, state, tokens, jnp.asarray(mask), p))
    np.testing.assert_allclose(got, [values[0, p + 1], values[1, p + t - 1], values[2, p]], atol=1e-6)


def test_transfer_trunk_copies_trunk_and_keeps_heads():
    lm_def, lm_state = init(CFG, jax.random.key(0))
    rm_def, rm_state = init(CFG, jax.random.key(1), lm_head=False, scalar_head=True)
    new_state = transfer_trunk(rm_state, lm_state)
    tokens = jax.random.randint(jax.random.key(2), (2, 9), 0, CFG.vocab_size)
    trunk = jax.jit(lambda g, s, x: nnx.merge(g, s).trunk(x)[0])
    h_lm, h_rm = trunk(lm_def, lm_state, tokens), trunk(rm_def, new_state, tokens)
    h_old = trunk(rm_def, rm_state, tokens)
    np.testing.assert_array_equal(np.asarray(h_lm), np.asarray(h_rm))
    assert not np.allclose(np.asarray(h_lm), np.asarray(h_old))
    head = new_state["scalar_head"]["kernel"][...]
    np.testing.assert_array_equal(head, rm_state["scalar_head"]["kernel"][...])
    other = ModelConfig(vocab_size=19, n_ctx=12, n_layer=2, d_model=8, n_head=4)
    with pytest.raises(ValueError, match="transfer_trunk"):
        transfer_trunk(rm_state, init(other, 0)[1])


def test_bad_configs_raise_usage_error():
    with pytest.raises(UsageError):
        ModelConfig(vocab_size=19, n_ctx=12, n_layer=2, d_model=10, n_head=4)
    with pytest.raises(UsageError):
        ModelConfig(vocab_size=4, n_ctx=12, n_layer=2, d_model=8, n_head=4)
    with pytest.raises(UsageError):
        ModelConfig(vocab_size=19, n_ctx=0, n_layer=2, d_model=8, n_head=4)


def test_programming_errors_raise_value_error():
    # wrong calls from code, not bad user input: ValueError (the CLI reports UsageError as exit 2)
    with pytest.raises(ValueError) as e:
        GPT(CFG, rngs=nnx.Rngs(0), lm_head=False, scalar_head=False)
    assert not isinstance(e.value, UsageError)
    graphdef, state = init(CFG, 0, lm_head=False, scalar_head=True)
    with pytest.raises(ValueError, match="no LM head"):
        response_logprobs(graphdef, state, jnp.zeros((1, 8), jnp.int32), 4)
    with pytest.raises(ValueError, match="response_logprobs"):
        response_logprobs(graphdef, state, jnp.zeros((1, 8), jnp.int32), 8)
    with pytest.raises(ValueError, match="scalar_at_end"):
        scalar_at_end(graphdef, state, jnp.zeros((2, 8), jnp.int32), jnp.ones((2, 3), bool), 4)
    with pytest.raises(ValueError, match="no scalar head"):
        nnx.merge(*init(CFG, 0)).scalar(jnp.zeros((1, CFG.d_model)))
