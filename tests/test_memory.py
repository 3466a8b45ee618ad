"""study/memory.py (issue 36, item 4): the estimate against a hand computation, and the one-line exit-2 error
when a device reports less memory than even the estimate."""

import dataclasses

import pytest

from core.errors import UsageError
from study import memory
from study.config import StudyConfig


def test_estimate_by_hand():
    cfg = StudyConfig()  # world: S = 22 (8 prompt + 14 response), vocabulary 21; policy 2 x 64, 4 heads of 16
    # parameters (GPT-2, tied head): 21*64 + 22*64 + 2 * block + final norm 128, block =
    # norms 256 + qkv 64*192 + 192 + proj 64*64 + 64 + mlp 64*256 + 256*64 + 256 + 64 = 49984
    n = 21 * 64 + 22 * 64 + 2 * 49984 + 128
    assert n == 102848
    est = memory.estimate(cfg)
    assert est["pool"] == 4096 * (4 * 22 + 5 * 14)  # bon.batch_size rows: tokens, log-probs, mask
    assert est["kv_cache"] == 2 * 2 * 4096 * 22 * 4 * 16 * 4
    # one grid point (kl 0, seed 0): params + grad + 2 Adam moments, its rollout KV cache (64 rows), its logits;
    # the reference once
    assert est["ppo"] == 4 * n * 4 + 2 * 2 * 64 * 22 * 4 * 16 * 4 + 64 * 22 * 21 * 4 + n * 4
    # 4 devices: the chunk's rows split (1024 each); a grid of 6 points padded to 8, 2 a device
    cfg6 = dataclasses.replace(cfg, rl=dataclasses.replace(cfg.rl, kl_coefs=(0.0, 0.1, 1.0), seeds=(0, 1)))
    est4 = memory.estimate(cfg6, devices=4)
    assert est4["pool"] == 1024 * 158 and est4["kv_cache"] == 2 * 2 * 1024 * 22 * 4 * 16 * 4
    assert est4["ppo"] == 2 * (4 * n * 4 + 2 * 2 * 64 * 22 * 4 * 16 * 4 + 64 * 22 * 21 * 4) + n * 4
    no_rl = dataclasses.replace(cfg, rl=dataclasses.replace(cfg.rl, enabled=False))
    assert memory.estimate(no_rl)["ppo"] == 0
    assert memory.describe(est).startswith("memory estimate per device: pool 0.6 MiB, kv_cache 88.0 MiB, ppo 3.4 MiB")


def test_bfloat16_halves_the_kv_caches_only():
    """compute_dtype=bfloat16: the KV caches (best-of-n chunk's, each rollout's) are bfloat16, 2 bytes a number
    (lm.model.GPT.init_cache); the parameters, gradient, Adam moments, the reference, the logits and the pool's
    arrays stay as in float32 (hand computation as in test_estimate_by_hand: n = 102848)."""
    n = 102848
    cfg = dataclasses.replace(StudyConfig(), compute_dtype="bfloat16")
    est = memory.estimate(cfg)
    assert est["pool"] == 4096 * (4 * 22 + 5 * 14)
    assert est["kv_cache"] == 2 * 2 * 4096 * 22 * 4 * 16 * 2  # half of float32's
    assert est["ppo"] == 4 * n * 4 + 2 * 2 * 64 * 22 * 4 * 16 * 2 + 64 * 22 * 21 * 4 + n * 4
    f32 = memory.estimate(StudyConfig())
    assert f32["kv_cache"] == 2 * est["kv_cache"] and f32["ppo"] - est["ppo"] == 2 * 2 * 64 * 22 * 4 * 16 * 2
    assert memory.describe(est).startswith("memory estimate per device: pool 0.6 MiB, kv_cache 44.0 MiB, ppo 2.8 MiB")


def test_the_sampler_cache_is_bfloat16_exactly_under_compute_dtype_bfloat16():
    """What the estimate assumes: under compute_dtype=bfloat16 GPT.init_cache is bfloat16 (float32 otherwise),
    and a cached forward pass over a sequence stores keys that equal the uncached forward's."""
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from lm.arch import ModelConfig
    from lm.model import init

    for dtype, want in (("float32", jnp.float32), ("bfloat16", jnp.bfloat16)):
        m = ModelConfig(21, 8, 1, 16, 2, compute_dtype=dtype)
        graphdef, state = init(m, 0)
        model = nnx.merge(graphdef, state)
        cache = model.init_cache(2, 8)
        assert cache[0][0].dtype == want and cache[0][1].dtype == want
        tokens = jnp.arange(16, dtype=jnp.int32).reshape(2, 8) % 21
        _, (kv,) = model.trunk(tokens, cache, 0)
        _, (k_ref, _) = model.blocks[0].attn(model.blocks[0].ln_1(model.wte(tokens) + model.wpe(jnp.arange(8))))
        np.testing.assert_array_equal(np.asarray(kv[0], np.float32), np.asarray(k_ref, np.float32))


def test_check_refuses_what_cannot_fit():
    est = {"pool": 10 * memory.MIB, "kv_cache": 30 * memory.MIB, "ppo": 35 * memory.MIB}
    memory.check(est, None)  # CPU: no limit reported, nothing checked
    memory.check(est, 40 * memory.MIB)  # the chunk (pool + kv_cache) is exactly 40 MiB: fits
    with pytest.raises(UsageError, match=r"at least 40.0 MiB per device for its pool and its kv_cache.*39.0 MiB"):
        memory.check(est, 39 * memory.MIB)
    with pytest.raises(UsageError, match="for its ppo"):
        memory.check({**est, "ppo": 41 * memory.MIB}, 40 * memory.MIB)


def test_study_exits_2_before_any_stage(tmp_path, capsys, monkeypatch):
    from overopt.cli import main

    monkeypatch.setattr(memory, "device_limit", lambda: memory.MIB)  # a 1 MiB device
    code = main(["study", "--out", str(tmp_path / "s"), "--preset", "tiny"])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("overopt: error: ")]  # the rest: log lines
    assert code == 2 and len(errors) == 1 and "MiB per device" in errors[0] and "Traceback" not in err, err
    assert "memory estimate per device: pool" in err  # printed before the check
    assert [p.name for p in (tmp_path / "s" / "runs").iterdir()] == ["store.json"]  # no stage ran
