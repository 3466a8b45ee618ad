"""Multi-host (issue 36, item 2), simulated on one machine: 2 processes in JAX's multi-process CPU mode.

test_two_processes_run_one_point: one sweep point run by 2 worker processes at once (`sweeps.worker` with
OVEROPT_COORDINATOR, 2 forced devices each: one 4-device mesh) gives the points of the same point run by one
process on one device (rtol 1e-5, atol 1e-6: only the layout changes); both processes compute every stage
instance (process 1 is not waiting on a lock), and only process 0 writes in the sweep directory (a Python
audit hook in each process records its writes there: tests/multihost_point.py). The smoke study's point (10 stage
instances); test_two_processes_run_a_micro_point makes the same checks on a micro point (`MICRO`: 9 stage
instances, a few steps on a few rows each).

test_two_processes_train_one_grid: 2 processes in JAX's multi-process CPU mode
(`jax.distributed.initialize` with a local coordinator, gloo CPU collectives, 2 forced devices each) build
one mesh over all 4 devices and train one PPO grid together (tests/multihost_check.py): each process runs
the grid points dealt to its own devices, both finish with the same numbers, and those equal one device's
(this process, OVEROPT_DEVICES=1) bit for bit.

Slow: the point took 220 to 330 s on 2 cores shared with other jobs (load 10) (2 processes compiling the sharded
programs at once, every collective through gloo; RL alone 110 s against 18 s on one device), plus 60 s for the
one-process reference; the grid 35 s unloaded, 122 s at load 10. The micro point is not much faster, compilation
being most of it: 172 s for the 2 processes and 106 s for the reference (cold compilation cache, load 4 to 6 on
the 2 cores), far from the minute that would let the default suite carry it. So the two point tests run only
with OVEROPT_MULTIHOST_TEST=1 in the environment; skipped otherwise (rerun with it on 2026-12-05 after the grid's
points were dealt over devices: the micro point 82 s, warm cache, load 3-4, passed). The grid test runs always
(17 s with a warm compilation cache, 30 to 36 s cold, load 2-4), and so does the worker's bad-input check."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent

slow = pytest.mark.skipif(
    os.environ.get("OVEROPT_MULTIHOST_TEST") != "1", reason="slow (45 to 300 s): set OVEROPT_MULTIHOST_TEST=1"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_train_one_grid(tmp_path, monkeypatch):
    port, env = _free_port(), {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("OVEROPT_DEVICES", None)
    script = str(ROOT / "tests" / "multihost_check.py")
    procs = [
        subprocess.Popen([sys.executable, script, str(i), str(port), str(tmp_path / f"p{i}.npz")], env=env)
        for i in range(2)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    got = [dict(np.load(tmp_path / f"p{i}.npz")) for i in range(2)]
    for i, d in enumerate(got):
        assert int(d["process"]) == i and int(d["processes"]) == 2 and int(d["local_devices"]) == 2
        assert int(d["mesh_devices"]) == 4 and d["mesh_processes"].tolist() == [0, 1]  # one mesh over both
        assert d["shards"].tolist() == [[0, 2], [1]][i]  # its own points, dealt with the processes interleaved
        assert d["shard_devices"].tolist() == [i] * len(d["shards"])  # on its own devices
    keys = [k for k in got[0] if k.startswith("ppo/")]
    assert "ppo/objective/kl" in keys
    for k in keys:
        np.testing.assert_array_equal(got[0][k], got[1][k], err_msg=k)  # one grid, gathered the same on both

    # one device, in this process: the same numbers
    monkeypatch.setenv("OVEROPT_DEVICES", "1")
    sys.path.insert(0, str(ROOT / "tests"))
    from multihost_check import grid_numbers, small_cfg

    one = grid_numbers(small_cfg())
    assert set(one) == set(keys)
    for k in keys:  # each point ran one device's program: bit for bit
        np.testing.assert_array_equal(got[0][k], np.asarray(one[k]), err_msg=k)


SMOKE = ROOT / "sweeps" / "specs" / "smoke.toml"
ONE_POINT = """[axes]
"ladder.sizes" = [[{ name = "rm-a", n_layer = 1, d_model = 8, n_head = 2 }]]
"rl.kl_coefs" = [[0.0, 0.1]]
"""
BIG = SMOKE.read_text().split("[axes]")[0].replace("updates = 10", "updates = 4") + ONE_POINT
"""The smoke study's point, one proxy, PPO for 4 updates: 10 stage instances."""
MICRO = (
    """preset = "tiny"
name = "multihost-micro"
[base]
selection = { rules = [], hedge_rules = [] }
[base.policy]
n_layer = 1
d_model = 16
n_head = 2
corpus_size = 400
pretrain = { steps = 8, batch_size = 16, warmup = 2, log_every = 4 }
[base.labels]
n_comparisons = 160
n_init_samples = 32
[base.bon]
n_prompts = 4
pool_size = 16
[base.rl]
prompt_bank = 32
ppo = { updates = 2, eval_every = 2, epochs = 1, minibatches = 1, fast_compile = true, batch_size = 8, eval_batch = 8 }
"""
    + ONE_POINT
)
"""A micro point of the same stages but the selection rules (9 stage instances), each a few steps on a few rows:
what the two-process check needs (one mesh, each process its share of every sharded program, the same numbers)
in a fraction of the compile and run time."""


def _sweep(tmp_path, name, spec_text) -> Path:
    """A prepared one-point sweep of `spec_text`; returns its point directory."""
    from sweeps import launch as L
    from sweeps.spec import expand, load_spec

    spec = tmp_path / f"{name}.toml"
    spec.write_text(spec_text)
    s = load_spec(spec)
    cache = os.environ.get("JAX_COMPILATION_CACHE_DIR") or None  # the suite's (conftest), outside the sweep
    (d,) = L.prepare(s, expand(s), tmp_path / name, jax_cache=Path(cache) if cache else None)
    return d


def _worker(point, audit, env) -> subprocess.Popen:
    script = str(ROOT / "tests" / "multihost_point.py")
    return subprocess.Popen(
        [sys.executable, script, str(point), str(audit)], env=env, stderr=subprocess.PIPE, text=True
    )


def _base_env() -> dict:
    base = {**os.environ, "PYTHONPATH": str(ROOT), "OVEROPT_MULTIHOST_TIMEOUT_S": "600"}
    for k in ("OVEROPT_DEVICES", "XLA_FLAGS", "OVEROPT_COORDINATOR"):
        base.pop(k, None)
    return base


def _two_processes_run_one_point(tmp_path, spec_text: str, n_stages: int) -> None:
    """One point run by 2 worker processes (2 forced devices each: one 4-device mesh) and by one process on one
    device: only process 0 writes, both compute all `n_stage` stage instances, the same points (module doc)."""
    base = _base_env()
    two = _sweep(tmp_path, "two", spec_text)
    port = _free_port()
    env = {**base, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "OVEROPT_COORDINATOR": f"localhost:{port}"}
    env["OVEROPT_NUM_PROCESSES"] = "2"
    procs = [_worker(two, tmp_path / f"audit{i}.json", {**env, "OVEROPT_PROCESS_ID": str(i)}) for i in range(2)]
    errs = [p.communicate(timeout=900)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs[0][-3000:] + errs[1][-3000:]
    audit = [json.loads((tmp_path / f"audit{i}.json").read_text()) for i in range(2)]

    # only process 0 wrote: the point's RUNNING/DONE, its outputs and every stage run are process 0's writes
    assert audit[1]["writes"] == [], audit[1]["writes"][:5]
    leader = audit[0]["writes"]
    assert any(w.endswith("/.lock") for w in leader) and any("/runs/rl-" in w for w in leader)
    assert (two / "DONE").exists() and json.loads((two / "DONE").read_text())["processes"] == 2
    assert json.loads((two / "out" / "study.json").read_text())["mesh"] == "mesh: 4 devices (cpu, 2 processes)"
    # both computed: process 1 ran every stage instance with process 0 (its share of each sharded program)
    n_runs = len([d for d in (two.parent.parent / "runs").iterdir() if d.is_dir()])
    assert n_runs == n_stages, n_runs
    assert f"process 1 of 2: computed {n_runs} stage instances with process 0" in errs[1]
    assert audit[1]["seconds"] > 0.5 * audit[0]["seconds"]

    # one process, one device: the same points
    one = _sweep(tmp_path, "one", spec_text)
    p = _worker(one, tmp_path / "audit_one.json", {**base, "OVEROPT_DEVICES": "1"})
    assert p.communicate(timeout=600)[1] is not None and p.returncode == 0
    a, b = pd.read_parquet(one / "out" / "points.parquet"), pd.read_parquet(two / "out" / "points.parquet")
    assert list(a.columns) == list(b.columns) and list(a["run_id"]) == list(b["run_id"]) and len(a) > 10
    assert set(a["method"]) == {"bon", "rl"}
    for col in a.columns:
        if pd.api.types.is_numeric_dtype(a[col]):
            x, y = a[col].to_numpy(float), b[col].to_numpy(float)
            np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-6, equal_nan=True, err_msg=col)
        else:
            assert a[col].astype(str).tolist() == b[col].astype(str).tolist(), col


@slow
def test_two_processes_run_one_point(tmp_path):
    _two_processes_run_one_point(tmp_path, BIG, 10)


@slow
def test_two_processes_run_a_micro_point(tmp_path):
    _two_processes_run_one_point(tmp_path, MICRO, 9)


@pytest.mark.parametrize(
    "env,why",
    [
        ({"OVEROPT_COORDINATOR": "localhost:1", "OVEROPT_NUM_PROCESSES": "2"}, "must be integers"),
        ({"OVEROPT_COORDINATOR": "localhost:1", "OVEROPT_NUM_PROCESSES": "2", "OVEROPT_PROCESS_ID": "2"}, "0..1"),
    ],
)
def test_bad_process_variables_one_line_exit_2(tmp_path, env, why):
    point = tmp_path / "points" / "p"
    point.mkdir(parents=True)
    (point / "config.json").write_text("{}")
    full = {k: v for k, v in os.environ.items() if not k.startswith("OVEROPT_")} | {"PYTHONPATH": str(ROOT), **env}
    r = subprocess.run([sys.executable, "-m", "sweeps.worker", str(point)], env=full, capture_output=True, text=True)
    assert r.returncode == 2 and why in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert sorted(p.name for p in point.iterdir()) == ["config.json"]  # nothing written


def test_explicit_coordinator_initializes_jax_distributed(monkeypatch):
    """Any launcher: OVEROPT_COORDINATOR, OVEROPT_NUM_PROCESSES, OVEROPT_PROCESS_ID reach
    `jax.distributed.initialize`; without them (and outside a multi-task Slurm job) nothing is initialized."""
    import jax

    from core import multihost

    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **k: calls.append((a, k)))
    monkeypatch.setattr(jax.config, "update", lambda *a: None)  # gloo CPU collectives: not for this session
    env = {"OVEROPT_COORDINATOR": "node0:1234", "OVEROPT_NUM_PROCESSES": "3", "OVEROPT_PROCESS_ID": "2"}
    assert multihost.initialize(env) is True
    assert calls == [(("node0:1234",), {"num_processes": 3, "process_id": 2})]
    assert multihost.initialize({}) is False and multihost.initialize({"SLURM_JOB_ID": "1"}) is False
    assert len(calls) == 1
    assert multihost.processes() == 1 and not multihost.follower()  # never initialized for real here
    assert multihost.say("x", "v") == "v"  # one process: the leader's word, no coordination service
    multihost.barrier("b")  # a no-op with one process
