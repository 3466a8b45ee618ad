"""Pretraining learns a Markov chain below its unigram entropy; the masked loss against float64 numpy; Orbax
checkpoints round-trip exactly and are published atomically."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from core import checkpoint
from core.checkpoint import load_state, save_state
from core.errors import UsageError
from core.tokens import BOS, N_SPECIAL
from lm.model import ModelConfig, abstract, forward, init
from lm.pretrain import PretrainConfig, lm_loss_terms, pretrain

CFG = ModelConfig(vocab_size=N_SPECIAL + 8, n_ctx=16, n_layer=1, d_model=32, n_head=2)


def markov_corpus(n: int, length: int, seed: int):
    """Rows BOS, x_1..x_{length-1}: a random sparse first-order chain over the 8 non-special tokens."""
    rng = np.random.default_rng(seed)
    k = CFG.vocab_size - N_SPECIAL
    trans = rng.dirichlet(np.full(k, 0.3), size=k)
    states = np.empty((n, length - 1), np.int64)
    states[:, 0] = rng.integers(k, size=n)
    for t in range(1, length - 1):
        u = rng.random(n)[:, None]
        states[:, t] = (u > np.cumsum(trans[states[:, t - 1]], axis=1)).sum(1).clip(max=k - 1)
    tokens = np.concatenate([np.full((n, 1), BOS), states + N_SPECIAL], axis=1).astype(np.int32)
    mask = np.ones_like(tokens, bool)
    return tokens, mask, trans


def test_held_out_loss_beats_unigram_entropy():
    tokens, mask, trans = markov_corpus(1200, 16, seed=0)
    targets = tokens[:, 1:].ravel()
    freq = np.bincount(targets, minlength=CFG.vocab_size) / targets.size
    unigram = -np.sum(freq[freq > 0] * np.log(freq[freq > 0]))
    # Entropy rate of the chain under the empirical state distribution: the best any model can do (roughly).
    rate = -np.sum(freq[N_SPECIAL:, None] * trans * np.log(np.where(trans > 0, trans, 1.0)))
    assert rate < unigram - 0.4  # the corpus has structure worth learning
    pre = PretrainConfig(steps=150, batch_size=32, lr=1e-2, warmup=10, eval_frac=0.1, log_every=50)
    graphdef, state, history = pretrain(CFG, pre, tokens, mask, jax.random.key(0), progress=False)
    assert history["step"] == [50, 100, 150]
    assert len(history["train_loss"]) == len(history["eval_loss"]) == len(history["lr"]) == 3
    final = history["eval_loss"][-1]
    assert final < unigram - 0.25, (final, unigram, rate)
    assert final > rate - 0.1  # a held-out loss below the entropy rate would mean leakage
    assert history["train_loss"][0] > history["train_loss"][-1]
    # The returned model is usable: its loss on the whole corpus matches the held-out figure roughly.
    total, count = lm_loss_terms(graphdef, state, jnp.asarray(tokens[:200]), jnp.asarray(mask[:200]))
    assert abs(float(total / count) - final) < 0.2


def test_masked_loss_against_float64_numpy():
    graphdef, state = init(CFG, jax.random.key(1))
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, CFG.vocab_size, size=(3, 10)).astype(np.int32)
    mask = rng.random((3, 10)) < 0.5
    total, count = lm_loss_terms(graphdef, state, jnp.asarray(tokens), jnp.asarray(mask))
    logits = np.asarray(forward(graphdef, state, jnp.asarray(tokens))[0], np.float64)
    ref = 0.0
    for b in range(3):
        for s in range(1, 10):  # token s is predicted at position s - 1; position 0 is never a target
            if mask[b, s]:
                z = logits[b, s - 1]
                ref += np.log(np.exp(z - z.max()).sum()) + z.max() - z[tokens[b, s]]
    assert float(count) == mask[:, 1:].sum()
    np.testing.assert_allclose(float(total), ref, rtol=1e-5)


def test_bad_pretrain_input_raises_usage_error():
    tokens, mask, _ = markov_corpus(40, 8, seed=2)
    pre = PretrainConfig(steps=1, batch_size=8)
    with pytest.raises(UsageError):
        pretrain(CFG, pre, tokens, mask[:, :4], 0, progress=False)
    with pytest.raises(UsageError):
        pretrain(CFG, pre, tokens + CFG.vocab_size, mask, 0, progress=False)
    with pytest.raises(UsageError):
        pretrain(CFG, PretrainConfig(steps=1, batch_size=64), tokens, mask, 0, progress=False)
    with pytest.raises(UsageError):
        PretrainConfig(eval_frac=1.0)


@pytest.fixture(scope="module")
def states():
    cfg = ModelConfig(vocab_size=11, n_ctx=8, n_layer=2, d_model=8, n_head=2, tie_embeddings=False)
    return (
        cfg,
        init(cfg, jax.random.key(0), lm_head=True, scalar_head=True),
        init(cfg, jax.random.key(1), lm_head=True, scalar_head=True),
    )


def _assert_equal_states(a, b):
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    assert ta == tb
    for x, y in zip(la, lb, strict=True):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_checkpoint_round_trip_and_overwrite(tmp_path, states):
    cfg, (_, state_a), (_, state_b) = states
    _, template = abstract(cfg, lm_head=True, scalar_head=True)
    path = tmp_path / "ckpt"
    save_state(path, state_a)
    _assert_equal_states(load_state(path, template), state_a)
    save_state(path, state_b)  # replacing an existing checkpoint
    _assert_equal_states(load_state(path, template), state_b)
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]  # no staging or old copies left behind


def test_interrupted_save_keeps_previous_checkpoint(tmp_path, states, monkeypatch):
    cfg, (_, state_a), (_, state_b) = states
    _, template = abstract(cfg, lm_head=True, scalar_head=True)
    path = tmp_path / "ckpt"
    save_state(path, state_a)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed before publishing")

    monkeypatch.setattr(checkpoint, "_publish", crash)
    with pytest.raises(KeyboardInterrupt):
        save_state(path, state_b)
    _assert_equal_states(load_state(path, template), state_a)
    with pytest.raises(KeyboardInterrupt):
        save_state(tmp_path / "fresh", state_b)
    assert not (tmp_path / "fresh").exists()  # nothing that looks like a finished checkpoint
    # Whatever a crash leaves behind is hidden (dot-named) staging.
    assert all(name.startswith(".") for name in os.listdir(tmp_path) if name != "ckpt")


def test_load_errors_are_usage_errors(tmp_path, states):
    cfg, (_, state_a), _ = states
    with pytest.raises(UsageError):
        load_state(tmp_path / "missing", abstract(cfg)[1])
    save_state(tmp_path / "ckpt", state_a)
    other = ModelConfig(vocab_size=11, n_ctx=8, n_layer=1, d_model=8, n_head=2)
    with pytest.raises(UsageError):
        load_state(tmp_path / "ckpt", abstract(other)[1])
