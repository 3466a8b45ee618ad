"""Benchmark: achieved FLOP/s of our training programs as a fraction of this machine's matmul FLOP/s.

peer (the ceiling): a large float32 matrix product `jnp.dot(a, b)` of n x n matrices in JAX on this
machine, 2 n^3 FLOPs a call.
ours: (1) the Bradley-Terry training step of the largest proxy of the `tiny`/`small` presets (rm-xl,
4 layers x 96, as bench_rm runs it); (2) the PPO update of bench_ppo (rollout, scoring, epochs x
minibatches of training). Ratio = ours / ceiling: the fraction of the machine the program uses.

FLOPs are counted analytically, 2 per multiply-add, matrix products only (layer norms, softmax,
GELU, optimiser and sampling arithmetic are left out, as in Kaplan et al. 2020). One transformer
block on n query tokens attending to k keys costs n * (24 d^2 + 4 k d): 2 * 12 d^2 for the qkv,
output and MLP weights (the "2 * params" of the 6 * params * tokens rule) plus 2 k d each for the
attention scores and the weighted sum of values. Attention is counted over every key the
implementation multiplies, masked ones included (full S x S in a causal pass, the whole preallocated
cache in a decode step). A training step (forward + backward) is 3 forwards, which gives
6 * params * tokens plus attention. LM head: 2 V d per position where logits are computed; scalar
head: 2 d. The test checks these counts against the dot products in the traced programs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from benchmarks import bench_ppo, bench_rm, common
from benchmarks.common import LARGEST_SMALL_PROXY, MAX_NEW, PROMPT_LEN, SHRUNK, VOCAB


def trunk_flops(arch: common.Arch, n_query: int, n_keys: int) -> int:
    """Matmul FLOPs of the blocks on `n_query` tokens, each attending to `n_keys` keys."""
    d = arch.d_model
    return n_query * arch.n_layer * (24 * d * d + 4 * n_keys * d)


def rm_train_flops(arch: common.Arch, pairs: int, seq: int = PROMPT_LEN + MAX_NEW) -> int:
    """One Bradley-Terry step on `pairs` comparisons of length `seq`: 3 x the forward of 2 * pairs sequences
    (the scalar head is applied at every position, then read at the last response token)."""
    n = 2 * pairs * seq
    return 3 * (trunk_flops(arch, n, seq) + n * 2 * arch.d_model)


def ppo_update_flops(
    policy: common.Arch, rm: common.Arch, batch: int, t: int, epochs: int, p: int = PROMPT_LEN, vocab: int = VOCAB
) -> int:
    """One PPO update of rl.ppo (batch prompts, t response tokens, `epochs` passes over the batch)."""
    d, s, cache = policy.d_model, p + t, p + t - 1
    lm = 2 * vocab * d
    rollout = trunk_flops(policy, batch * p, cache) + batch * lm  # prefill, logits of the last prompt token
    rollout += trunk_flops(policy, batch * (t - 1), cache) + batch * (t - 1) * lm  # t - 1 decode steps
    # Teacher-forced pass on tokens[:, :-1]; LM and value heads on the t response positions only.
    policy_fwd = trunk_flops(policy, batch * (s - 1), s - 1) + batch * t * (lm + 2 * d)
    ref_fwd = trunk_flops(policy, batch * (s - 1), s - 1) + batch * t * lm
    reward = trunk_flops(rm, batch * s, s) + batch * s * 2 * rm.d_model
    return rollout + policy_fwd + ref_fwd + reward + epochs * 3 * policy_fwd


def matmul_call(n: int):
    """(blocking call of an n x n float32 product, its FLOPs)."""
    ka, kb = jax.random.split(jax.random.key(0))
    a = jax.random.normal(ka, (n, n), jnp.float32)
    b = jax.random.normal(kb, (n, n), jnp.float32)
    dot = jax.jit(jnp.dot)
    return (lambda: jax.block_until_ready(dot(a, b))), 2 * n**3


def rows(quick: bool) -> list[dict]:
    """Two rows: proxy RM training and the PPO update, achieved FLOP/s against the matmul ceiling."""
    repeat = common.pick(quick, 5, 3, 1)
    n = common.pick(quick, 4096, 2048, 256)
    mm, mm_flops = matmul_call(n)
    rm_arch, batch, steps = common.pick(
        quick, (LARGEST_SMALL_PROXY, 64, 20), (LARGEST_SMALL_PROXY, 64, 10), (SHRUNK, 4, 2)
    )
    rm_call = bench_rm.ours_step_fn(rm_arch, batch, steps)
    ppo_call = bench_ppo.ours_call(quick)
    cfg = bench_ppo.ppo_config(quick)
    policy_arch, reward_arch = bench_ppo.sizes(quick)
    t_mm, t_rm, t_ppo = common.median_seconds(mm, rm_call, ppo_call, repeat=repeat)
    ceiling = mm_flops / t_mm
    rm_flops = steps * rm_train_flops(rm_arch, batch)
    ppo_flops = cfg.eval_every * ppo_update_flops(policy_arch, reward_arch, cfg.batch_size, cfg.max_new, cfg.epochs)
    note = f"ceiling: jnp.dot {n}x{n} float32 = {ceiling / 1e9:.1f} GFLOP/s; analytic matmul FLOPs"
    return [
        common.row(
            f"FLOP/s RM training {rm_arch.label()} B={batch}",
            rm_flops / t_rm,
            ceiling,
            "FLOP/s",
            f"{rm_flops / steps / 1e9:.3f} GFLOP a step; {note}",
        ),
        common.row(
            f"FLOP/s PPO update {policy_arch.label()} B={cfg.batch_size}",
            ppo_flops / t_ppo,
            ceiling,
            "FLOP/s",
            f"RM {reward_arch.label()}, {ppo_flops / cfg.eval_every / 1e9:.3f} GFLOP an update; {note}",
        ),
    ]


if __name__ == "__main__":
    import sys

    for r in rows("--quick" in sys.argv):
        print(r)
