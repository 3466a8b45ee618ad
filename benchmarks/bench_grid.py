"""Benchmark: a KL-coefficient grid of PPO runs in one program, wall seconds.

ours: the 8-point grid vmapped in one compiled program (`PPOFns.chunk_grid`: every update of every
grid point in one `jax.vmap`), as `rl.runner.train_grid` / `run_ppo` run a sweep.
peer: the same 8 points run one after another with the single-run program (`PPOFns.chunk`), compiled
once and reused, i.e. what a sweep without vmap costs on one machine.
Both run `eval_every` updates of each point per timed call; same policy, reward model and PPO settings
as bench_ppo. Ratio = sequential seconds / vmapped seconds (above 1: one program is faster).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from benchmarks import bench_ppo, common

KL_COEFS = (0.0, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


def calls(quick: bool):
    """(vmapped call, sequential call), each blocking, each advancing all 8 points by `eval_every` updates."""
    from rl.ppo_config import Hyper

    s = bench_ppo.setup(quick)
    cfg, fns, ref, bank, scorers = s["cfg"], s["fns"], s["ref_state"], s["bank"], s["scorer_params"]
    g = len(KL_COEFS)
    hypers = [cfg.hyper(k) for k in KL_COEFS]
    grid_hyper = Hyper(*(jnp.stack([h[i] for h in hypers]) for i in range(len(Hyper._fields))))
    seeds = jnp.zeros(g, jnp.int32)
    stacked = jax.tree.map(lambda x: jnp.stack([x] * g), s["policy_state"])
    grid = [fns.init_grid(stacked, grid_hyper, seeds)]
    singles = [fns.init(s["policy_state"], h, jnp.int32(0)) for h in hypers]

    def vmapped():
        grid[0], m = fns.chunk_grid(grid[0], grid_hyper, ref, bank, *scorers)
        jax.block_until_ready(m)

    def sequential():
        for i, h in enumerate(hypers):
            singles[i], m = fns.chunk(singles[i], h, ref, bank, *scorers)
            jax.block_until_ready(m)

    return vmapped, sequential


def rows(quick: bool) -> list[dict]:
    """One row: seconds for `eval_every` updates of 8 grid points, vmapped vs sequential."""
    repeat = common.pick(quick, 5, 3, 1)
    cfg = bench_ppo.ppo_config(quick)
    policy_arch, _ = bench_ppo.sizes(quick)
    ours, peer = common.median_seconds(*calls(quick), repeat=repeat)
    return [
        common.row(
            f"PPO grid of {len(KL_COEFS)} kl_coef, {cfg.eval_every} updates each",
            ours,
            peer,
            "s",
            f"policy {policy_arch.label()} B={cfg.batch_size}; peer: the same {len(KL_COEFS)} points "
            "run one after another (our single-run program)",
        )
    ]


if __name__ == "__main__":
    import sys

    for r in rows("--quick" in sys.argv):
        print(r)
