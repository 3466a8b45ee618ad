"""Run as `python tests/multihost_check.py PROCESS_ID PORT OUT.npz` in 2 processes at once (test_multihost):
JAX's multi-process CPU mode, 2 forced host devices a process, a local coordinator. One mesh over all 4
devices of both processes (`core.mesh.job_mesh`); one PPO grid (the probe of tests/ppo_probe.py, 3 points
dealt over the 4 devices, processes interleaved: points 0 and 2 on process 0, point 1 on process 1) trained
by both processes together through `rl.runner.train_grid`. Writes what this process holds (its process
index, the mesh, the grid points it ran and their devices' processes) and the grid's numbers to OUT.npz."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from ppo_probe import CFG, GOLD, REWARD, make_bank, make_policy  # noqa: E402

from core import mesh as meshes  # noqa: E402
from rl import program, runner  # noqa: E402

GRID = [(0.0, 0), (0.5, 1), (2.0, 2)]


def small_cfg():
    """The probe's PPO at the size test_sharding uses."""
    return dataclasses.replace(
        CFG, epochs=1, minibatches=1, updates=2, eval_every=2, batch_size=16, eval_batch=16, bleu_sample=4
    )


def grid_numbers(cfg) -> dict:
    """Every evaluation scalar of the grid, in grid order (another process's points gathered)."""
    out: dict = {}
    for p in runner.train_grid(make_policy(), REWARD, GOLD, make_bank(), cfg, GRID):
        for e in p["eval"]:
            for k, v in e.items():
                if isinstance(v, float):
                    out.setdefault(f"ppo/{k}", []).append(v)
    return out


def main(path: str) -> None:
    mesh = meshes.job_mesh()
    out = {
        "process": np.array(jax.process_index()),
        "processes": np.array(jax.process_count()),
        "mesh_devices": np.array(meshes.size(mesh)),
        "mesh_processes": np.array(sorted({d.process_index for d in mesh.devices.flat})),
        "local_devices": np.array(len(jax.local_devices())),
    }
    cfg = small_cfg()
    prog = program.build(make_policy(), REWARD, GOLD, make_bank(), cfg, GRID)
    r, _ = program.chunk(prog, program.init(prog))
    out["shards"] = np.array(sorted(r))  # the grid points this process ran
    devices = [{d for x in jax.tree.leaves(r[g]) for d in x.sharding.device_set} for g in sorted(r)]
    assert all(len(d) == 1 for d in devices), devices  # each point on one device
    out["shard_devices"] = np.array([next(iter(d)).process_index for d in devices])
    out.update(grid_numbers(cfg))
    np.savez(path, **{k: np.asarray(v) for k, v in out.items()})


if __name__ == "__main__":
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"  # read when the backend starts
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"localhost:{sys.argv[2]}", num_processes=2, process_id=int(sys.argv[1]))
    main(sys.argv[3])
