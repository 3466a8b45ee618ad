"""A point's device-memory estimate, from shapes, before it starts (issue 36, item 4).

Three terms, in bytes, per device (a term split across the job's mesh, `core.mesh`, is divided by its device
count, rounded up to whole rows or grid points as the split pads them):

- pool: one compiled best-of-n sampling chunk of `bon.batch_size` rows: tokens int32[S], log-probs f32[T],
  mask bool[T] a row (S = world.seq_len, T = world.max_new): rows * (4 S + 5 T).
- kv_cache: that chunk's KV cache in the policy: 2 (K and V) * n_layer * rows * S * kv_heads * dh * E, E the
  cache's bytes per number: 4 (float32), 2 under compute_dtype=bfloat16 (`lm.model.GPT.init_cache`).
- ppo: each grid point (kl_coefs x seeds) holds its policy's parameters, gradient and Adam's two moments
  (4 * n_params * 4 bytes: float32 under either compute_dtype), its rollout's KV cache (as above with
  rl.ppo.batch_size rows) and its logits f32[batch_size, S, vocab] (float32 under either compute_dtype: the
  head's output is cast back); the reference policy's parameters once (n_params * 4).

It is a lower bound of what XLA allocates (activations besides the logits, temporaries and the proxies are
not counted), stated as such; `check` refuses a point only when even this (the best-of-n chunk, pool +
kv_cache, or PPO: they run in different stages) exceeds the device's memory, and only where the device
reports a limit (`memory_stats()['bytes_limit']`: GPUs and TPUs; CPUs report none).
"""

from __future__ import annotations

import math

from core.errors import UsageError
from gold_rm.world import World
from lm.arch import ModelConfig, param_count

F32 = 4
BF16 = 2
MIB = 2**20


def kv_cache_bytes(m: ModelConfig, rows: int) -> int:
    """Bytes of a KV cache of `rows` sequences of m.n_ctx positions (float32; bfloat16 under m.compute_dtype)."""
    return 2 * m.n_layer * rows * m.n_ctx * m.kv_heads * m.dh * (BF16 if m.compute_dtype == "bfloat16" else F32)


def policy_model(cfg) -> ModelConfig:
    """The policy's model config in the study's world (with the study's compute_dtype)."""
    world = World(cfg.world)
    p = cfg.policy
    return ModelConfig(world.vocab_size, world.seq_len, p.n_layer, p.d_model, p.n_head, compute_dtype=cfg.compute_dtype)


def estimate(cfg, devices: int = 1) -> dict[str, int]:
    """Bytes per device of each term (module doc) for StudyConfig `cfg` on a mesh of `devices`."""
    m = policy_model(cfg)
    world = World(cfg.world)
    s, t = world.seq_len, world.max_new
    rows = math.ceil(cfg.bon.batch_size / devices)
    grid = math.ceil(len(cfg.rl.kl_coefs) * len(cfg.rl.seeds) / devices)
    n = param_count(m, lm_head=True)
    b = cfg.rl.ppo.batch_size
    per_point = 4 * n * F32 + kv_cache_bytes(m, b) + b * s * m.vocab_size * F32
    return {
        "pool": rows * (4 * s + 5 * t),
        "kv_cache": kv_cache_bytes(m, rows),
        "ppo": grid * per_point + n * F32 if cfg.rl.enabled else 0,
    }


def describe(est: dict[str, int]) -> str:
    """one line: each term in MiB"""
    terms = ", ".join(f"{k} {v / MIB:.1f} MiB" for k, v in est.items())
    return f"memory estimate per device: {terms} (a lower bound; PPO and best-of-n run in different stages)"


def device_limit() -> int | None:
    """Bytes this process's first device can allocate, where it reports it (None on CPU). A local device: under
    multi-process JAX another process's device reports nothing here."""
    import jax

    dev = jax.local_devices()[0]
    stats = dev.memory_stats() if hasattr(dev, "memory_stats") else None
    return int(stats["bytes_limit"]) if stats and "bytes_limit" in stats else None


def check(est: dict[str, int], limit: int | None) -> None:
    """UsageError (one line) when the best-of-n chunk (pool + kv_cache, resident together) or PPO (another
    stage: not at the same time) exceeds `limit` bytes (None: nothing to check)."""
    if limit is None:
        return
    name, need = max(
        (("pool and its kv_cache", est["pool"] + est["kv_cache"]), ("ppo", est["ppo"])), key=lambda kv: kv[1]
    )
    if need > limit:
        raise UsageError(
            f"this point needs at least {need / MIB:.1f} MiB per device for its {name} (study/memory.py), more than "
            f"the device's {limit / MIB:.1f} MiB: lower bon.batch_size / rl.ppo.batch_size, the grid or the model"
        )
