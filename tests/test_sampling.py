"""KV-cache sampler against a naive full-forward decoder, the teacher-forced scorer and float64 references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from core.tokens import BOS, EOS, PAD, SEP
from lm.model import ModelConfig, forward, init, response_logprobs
from lm.sampling import sample, sample_jit, sample_many

FORBIDDEN = [PAD, BOS, SEP]


def _biased_model(cfg: ModelConfig, seed: int, eos: float, forbidden: float = 0.0):
    """A random model whose logits spread over a few nats, with the EOS logit raised by `eos` nats (so some
    rows stop early) and the PAD/BOS/SEP logits by `forbidden` (the sampler must still never emit them)."""
    graphdef, state = init(cfg, jax.random.key(seed))
    pure = jax.tree.map(np.array, nnx.to_pure_dict(state))
    rng = np.random.default_rng(seed)
    v = rng.normal(size=cfg.d_model).astype(np.float32)
    v /= np.linalg.norm(v)
    pure["ln_f"]["bias"] = v  # every final hidden state gets a component along v
    head = rng.normal(0, 1.5 / np.sqrt(cfg.d_model), (cfg.vocab_size, cfg.d_model)).astype(np.float32)
    head[EOS] += eos * v
    head[FORBIDDEN] += forbidden * v
    if cfg.tie_embeddings:
        pure["wte"]["embedding"] = head
    else:
        pure["lm_head"]["kernel"] = head.T
    nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, pure))
    return graphdef, state


def _prompts(cfg: ModelConfig, b: int, p: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    prompts = rng.integers(4, cfg.vocab_size, size=(b, p)).astype(np.int32)
    prompts[:, 0], prompts[:, -1] = BOS, SEP
    return prompts


def _log_softmax64(z):
    z = np.asarray(z, np.float64)
    m = z.max(-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


def naive_decode(graphdef, state, prompts, key, max_new, temperature):
    """Recompute the full causal forward at every step; same documented key schedule as `sample`."""
    b, p = prompts.shape
    keys = jax.random.split(key, max_new)
    seq = np.full((b, p + max_new), PAD, np.int32)
    seq[:, :p] = prompts
    lps, mask, done = np.zeros((b, max_new)), np.zeros((b, max_new), bool), np.zeros(b, bool)
    for t in range(max_new):
        # Positions after p + t - 1 are PAD placeholders; causality (tested in test_model) ignores them.
        logits = np.array(forward(graphdef, state, jnp.asarray(seq))[0][:, p + t - 1])
        logits[:, FORBIDDEN] = -np.inf
        z = logits / np.float32(temperature)
        tok = np.asarray(jax.random.categorical(keys[t], jnp.asarray(z), axis=-1))
        lp = _log_softmax64(z)[np.arange(b), tok]
        tok = np.where(done, PAD, tok)
        seq[:, p + t], lps[:, t], mask[:, t] = tok, np.where(done, 0.0, lp), ~done
        done |= tok == EOS
    return seq, lps, mask


SIZES = [
    (ModelConfig(vocab_size=17, n_ctx=16, n_layer=1, d_model=8, n_head=2), 1.0),
    (ModelConfig(vocab_size=19, n_ctx=16, n_layer=2, d_model=16, n_head=4), 0.7),
    (ModelConfig(vocab_size=23, n_ctx=16, n_layer=3, d_model=24, n_head=3, tie_embeddings=False), 1.3),
]


@pytest.mark.parametrize("cfg,temperature", SIZES)
def test_kv_cache_decode_matches_naive_decode(cfg, temperature):
    graphdef, state = _biased_model(cfg, seed=cfg.n_layer, eos=1.0)
    prompts, max_new = _prompts(cfg, 16, 5, seed=1), 10
    key = jax.random.key(7)
    out = sample(graphdef, state, prompts, key, max_new=max_new, temperature=temperature)
    seq, lps, mask = naive_decode(graphdef, state, prompts, key, max_new, temperature)
    np.testing.assert_array_equal(np.asarray(out.tokens), seq)
    np.testing.assert_array_equal(np.asarray(out.mask), mask)
    np.testing.assert_allclose(np.asarray(out.logprobs), lps, rtol=1e-4, atol=1e-4)
    lengths = mask.sum(1)
    assert lengths.min() < max_new and (lengths == max_new).any()  # EOS stopped some rows, not all
    # The sampler's log-probs are the teacher-forced scorer's on the sampled sequences.
    scored = np.asarray(response_logprobs(graphdef, state, out.tokens, prompts.shape[1], temperature))
    np.testing.assert_allclose(np.where(mask, scored, 0.0), np.asarray(out.logprobs), rtol=1e-5, atol=1e-5)


CFG = SIZES[1][0]


@pytest.fixture(scope="module")
def tempted():
    """A model that would mostly emit PAD/BOS/SEP if they were not masked."""
    return _biased_model(CFG, seed=3, eos=2.0, forbidden=6.0)


def test_layout_and_forbidden_tokens(tempted):
    graphdef, state = tempted
    prompts, max_new = _prompts(CFG, 64, 4, seed=2), 8
    logits = np.asarray(forward(graphdef, state, jnp.asarray(prompts))[0][:, -1])
    assert np.isin(logits.argmax(-1), FORBIDDEN).mean() > 0.5  # unmasked, they would win
    out = jax.tree.map(np.asarray, sample(graphdef, state, prompts, jax.random.key(0), max_new=max_new))
    np.testing.assert_array_equal(out.tokens[:, :4], prompts)
    resp = out.tokens[:, 4:]
    for row in range(len(prompts)):
        eos = np.flatnonzero(resp[row] == EOS)
        n = eos[0] + 1 if len(eos) else max_new
        assert out.mask[row, :n].all() and not out.mask[row, n:].any()
        assert (resp[row, n:] == PAD).all() and (out.logprobs[row, n:] == 0).all()
        assert not np.isin(resp[row, :n], FORBIDDEN).any()
        assert (out.logprobs[row, :n] <= 0).all()


def test_deterministic_for_a_key_and_compiled_once(tempted):
    graphdef, state = tempted
    prompts = _prompts(CFG, 8, 4, seed=3)
    a = sample(graphdef, state, prompts, jax.random.key(1), max_new=6)
    size = sample_jit._cache_size()
    b = sample(graphdef, state, prompts, jax.random.key(1), max_new=6)
    c = sample(graphdef, state, prompts, jax.random.key(2), max_new=6)
    assert sample_jit._cache_size() == size  # same shapes: no recompilation
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert not np.array_equal(np.asarray(a.tokens), np.asarray(c.tokens))


def test_n_per_prompt_equals_repeated_prompts(tempted):
    graphdef, state = tempted
    prompts = _prompts(CFG, 3, 4, seed=4)
    key = jax.random.key(5)
    shared = sample(graphdef, state, prompts, key, max_new=6, n_per_prompt=4)
    repeated = sample(graphdef, state, np.repeat(prompts, 4, axis=0), key, max_new=6)
    np.testing.assert_array_equal(np.asarray(shared.tokens), np.asarray(repeated.tokens))
    np.testing.assert_allclose(np.asarray(shared.logprobs), np.asarray(repeated.logprobs), atol=1e-6)


def test_first_token_frequencies_follow_tempered_softmax():
    graphdef, state = _biased_model(CFG, seed=5, eos=0.0)
    prompt, temperature, n = _prompts(CFG, 1, 4, seed=5), 0.6, 4000
    out = sample(graphdef, state, prompt, jax.random.key(3), max_new=1, temperature=temperature, n_per_prompt=n)
    logits = np.array(forward(graphdef, state, jnp.asarray(prompt))[0][0, -1], np.float64)
    logits[FORBIDDEN] = -np.inf
    probs = np.exp(_log_softmax64(logits / temperature))
    freq = np.bincount(np.asarray(out.tokens[:, -1]), minlength=CFG.vocab_size) / n
    assert probs.max() < 0.9  # not degenerate
    np.testing.assert_array_less(np.abs(freq - probs), 4.5 * np.sqrt(probs * (1 - probs) / n) + 1e-9)
    np.testing.assert_allclose(
        np.asarray(out.logprobs[:, 0]), np.log(probs[np.asarray(out.tokens[:, -1])]), rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize("n_per_prompt,batch_size", [(5, 2), (2, 5)])
def test_sample_many_layout(tempted, n_per_prompt, batch_size):
    graphdef, state = tempted
    prompts, max_new = _prompts(CFG, 3, 4, seed=6), 6
    key = jax.random.key(9)
    out = sample_many(
        graphdef,
        state,
        prompts,
        key,
        n_per_prompt,
        max_new=max_new,
        batch_size=batch_size,
        progress=n_per_prompt > batch_size,
    )
    assert all(isinstance(a, np.ndarray) for a in out)
    assert out.tokens.shape == (3 * n_per_prompt, 4 + max_new) and out.mask.shape == (3 * n_per_prompt, max_new)
    np.testing.assert_array_equal(out.tokens[:, :4], np.repeat(prompts, n_per_prompt, axis=0))
    scored = np.asarray(response_logprobs(graphdef, state, jnp.asarray(out.tokens), 4))
    np.testing.assert_allclose(np.where(out.mask, scored, 0.0), out.logprobs, rtol=1e-5, atol=1e-5)
    again = sample_many(graphdef, state, prompts, key, n_per_prompt, max_new=max_new, batch_size=batch_size)
    np.testing.assert_array_equal(out.tokens, again.tokens)
    assert len({tuple(r) for r in out.tokens}) > 1


def test_bad_arguments_raise_value_error(tempted):
    # the sampler's callers are code (shapes and lengths come from configs checked upstream): ValueError
    graphdef, state = tempted
    prompts = _prompts(CFG, 2, 4, seed=0)
    with pytest.raises(ValueError):
        sample(graphdef, state, prompts, jax.random.key(0), max_new=CFG.n_ctx)  # 4 + 16 > n_ctx
    with pytest.raises(ValueError):
        sample(graphdef, state, prompts, jax.random.key(0), max_new=4, temperature=0.0)
    with pytest.raises(ValueError):
        sample(graphdef, state, prompts, jax.random.key(0), max_new=0)
    with pytest.raises(ValueError):
        sample(graphdef, state, prompts[0], jax.random.key(0), max_new=4)
    with pytest.raises(ValueError):
        sample_many(graphdef, state, prompts, jax.random.key(0), 0, max_new=4)
