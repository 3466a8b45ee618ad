"""Benchmark: a KL-coefficient grid of PPO runs in one program, wall seconds.

ours: the 8-point grid vmapped in one compiled program (`PPOFns.chunk_grid`: every update of every
grid point in one `jax.vmap`), what `rl.runner` ran until it dealt points over devices.
peer: the same 8 points run one after another with the single-run program (`PPOFns.chunk`), compiled
once and reused: what `rl.runner.train_grid` / `run_ppo` run now on one device (each point alone, so that
its numbers do not depend on the device count or the grid beside it).
Both run `eval_every` updates of each point per timed call; same policy, reward model and PPO settings
as bench_ppo. Ratio = sequential seconds / vmapped seconds (above 1: one program is faster).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

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


# ---------------------------------------------------------------- cost of seeds in one compiled grid
# Issue 18 item 4: the tiny preset runs >= 3 RL seeds in one program. Not a table row (no peer):
# `python -m benchmarks.bench_grid --seeds [--json OUT]` prints the numbers.


@functools.cache
def tiny_preset_inputs():
    """The tiny preset's PPO inputs (study.presets.tiny, study.pipeline.Study.rl) with random weights:
    (policy, reward, gold, bank, cfg). World and gold as the preset's (gold recentred at 0), policy
    2x64h4, the one-layer rm-m proxy 1x32h4 (sum pool), 4096 prompts, the preset's PPOConfig."""
    from gold_rm.gold import GoldConfig, GoldRM
    from gold_rm.world import World, WorldConfig
    from lm import model as gpt
    from proxy_rm.train import ProxyReward, init_states
    from rl.ppo import Scorer
    from rl.ppo_config import PPOConfig

    world = World(WorldConfig(tasks=("map",), k=4, flatter_rate=0.3))
    gold = GoldRM(world, GoldConfig())
    mcfg = lambda n_layer, d_model, n_head: gpt.ModelConfig(world.vocab_size, world.seq_len, n_layer, d_model, n_head)
    policy = gpt.init(mcfg(2, 64, 4), 0)
    rm_graphdef, rm_states = init_states(mcfg(1, 32, 4), [1])
    reward = Scorer(ProxyReward(rm_graphdef, world.prompt_len, "sum"), (rm_states, jnp.zeros(1, jnp.float32)))
    prompts = world.sample_prompts(np.random.default_rng(0), 8)
    tokens = np.concatenate([prompts, np.full((8, world.max_new), 2, np.int32)], axis=1)  # EOS responses
    names = gold.terms(tokens, np.broadcast_to(np.arange(world.max_new) < 1, (8, world.max_new)))
    gold_scorer = Scorer(*gold.scorer({k: 0.0 for k in names}))
    bank = world.sample_prompts(np.random.default_rng([4, 5]), 4096)
    cfg = PPOConfig(updates=200, batch_size=64, lr=1e-4, eval_every=5, eval_batch=256, max_new=world.max_new)
    return policy, reward, gold_scorer, bank, cfg


def seed_cost(seed_counts=(1, 3, 4), repeat: int = 5, total_seeds: int = 3) -> dict:
    """Wall seconds per PPO update of a grid of 1, 3, 4 seeds (chunks of 5 updates, compile excluded,
    median of `repeat` chunks, the grids alternating), of one evaluation (the device program alone, and
    the runner's whole evaluation: program, transfer, diversity metrics), and of a whole `run_ppo` of 200
    updates for `total_seeds` seeds with the old schedule (evaluate every 5) vs "log" (eval_every 1,
    n_evals 16), each after a warm-up that compiles its programs (its seconds reported apart); and the
    seconds per update of `total_seeds` seeds in chunks of 1 (what "log" with eval_every 1 runs) vs 5."""
    import dataclasses
    import tempfile
    import time

    from rl import program, runner
    from rl.ppo_config import eval_steps

    policy, reward, gold, bank, cfg = tiny_preset_inputs()
    out = {"machine": common.machine(), "load_start": common.loadavg(), "grid": {}}
    progs = {g: program.build(policy, reward, gold, bank, cfg, [(0.0, s) for s in range(g)]) for g in seed_counts}
    states, calls = {}, []
    for g, prog in progs.items():
        states[g] = program.init(prog)
        t0 = time.perf_counter()
        states[g], m = program.chunk(prog, states[g])
        jax.block_until_ready(m)
        out["grid"][g] = {"compile_and_first_chunk_s": time.perf_counter() - t0}

        def chunk(g=g, prog=prog):
            states[g], m = program.chunk(prog, states[g])
            jax.block_until_ready(m)

        def evaluate(g=g, prog=prog):
            jax.block_until_ready(program.evaluate(prog, states[g], 5))

        calls += [chunk, evaluate, lambda g=g, prog=prog: runner._eval_rows(prog, states[g], 5)]
    times = common.median_seconds(*calls, repeat=repeat)
    for i, g in enumerate(seed_counts):
        chunk_s, eval_s, eval_rows_s = times[3 * i : 3 * i + 3]
        out["grid"][g] |= {
            "update_s": chunk_s / cfg.eval_every,
            "eval_program_s": eval_s,
            "eval_with_metrics_s": eval_rows_s,
            "update_s_vs_1_seed": chunk_s / times[0],
        }
    out["load_mid"] = common.loadavg()
    out["total"], chunked = {}, {}
    for name, over in (("every 5", {"eval_every": 5}), ("log 16", {"eval_every": 1, "eval_schedule": "log"})):
        c = dataclasses.replace(cfg, **over)
        grid = [(0.0, s) for s in range(total_seeds)]
        t0 = time.perf_counter()  # warm-up: compile this schedule's chunk and evaluation programs
        prog = program.build(policy, reward, gold, bank, c, grid)
        state, m = program.chunk(prog, program.init(prog))
        runner._eval_rows(prog, state, 1)
        compile_s = time.perf_counter() - t0
        chunked[c.eval_every] = [prog, state]
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            runner.run_ppo(d, policy, reward, gold, bank, c, grid)
            total_s = time.perf_counter() - t0
        out["total"][name] = {
            "seeds": total_seeds,
            "updates": c.updates,
            "evaluations": 1 + len(eval_steps(c)),
            "chunks": c.updates // c.eval_every,
            "run_ppo_s_compiled": total_s,
            "compile_warmup_s": compile_s,
        }

    def updates(n: int, k: int):  # k chunks of n updates
        def call():
            for _ in range(k):
                chunked[n][1], m = program.chunk(chunked[n][0], chunked[n][1])
                jax.block_until_ready(m)

        return call

    one, five = common.median_seconds(updates(1, 5), updates(5, 1), repeat=repeat)
    out["update_s_chunks_of_1_vs_5"] = {"seeds": total_seeds, "chunks_of_1": one / 5, "chunks_of_5": five / 5}
    out["load_end"] = common.loadavg()
    return out


if __name__ == "__main__":
    import sys

    if "--seeds" in sys.argv:
        import json

        result = seed_cost()
        print(json.dumps(result, indent=1))
        if "--json" in sys.argv:
            from core.store import atomic_write_json

            atomic_write_json(sys.argv[sys.argv.index("--json") + 1], result)
    else:
        for r in rows("--quick" in sys.argv):
            print(r)
