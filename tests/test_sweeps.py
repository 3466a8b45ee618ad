"""Sweep specs (expansion, errors with their line), status markers, aggregation, Slurm configuration.

No test here trains anything: the end-to-end and kill tests are in test_sweep_kill.py.
"""

from __future__ import annotations

import json
import os
import pickle
import socket
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from core.errors import UsageError
from core.store import atomic_write_json, run_id
from overopt.cli import main
from study.presets import resolve
from sweeps import launch as L
from sweeps import slurm as S
from sweeps import worker
from sweeps.spec import expand, line_of, load_spec

SPECS = sorted((Path(__file__).resolve().parents[1] / "sweeps" / "specs").glob("*.toml"))


def _spec(tmp_path, text: str) -> Path:
    p = tmp_path / "spec.toml"
    p.write_text(textwrap.dedent(text).lstrip())
    return p


GRID = """
preset = "tiny"
[base.labels]
n_comparisons = 1000
[axes]
"labels.flip_frac" = [0.0, 0.25]
"rl.kl_coefs" = [[0.0], [0.01], [0.1]]
[[zip]]
"policy.n_layer" = [1, 2]
"policy.d_model" = [32, 64]
[[exclude]]
name = "no noisy big policies"
"labels.flip_frac" = 0.25
"policy.n_layer" = 2
"""


def test_product_zip_exclude_and_ids_match_the_study_resolver(tmp_path):
    points = expand(load_spec(_spec(tmp_path, GRID)))
    combos = [(f, k, n) for f in (0.0, 0.25) for k in (0.0, 0.01, 0.1) for n in (1, 2) if not (f == 0.25 and n == 2)]
    assert len(points) == len(combos) == 9
    for p, (f, k, n) in zip(points, combos):
        assert p.values == {"labels.flip_frac": f, "rl.kl_coefs": [k], "policy.n_layer": n, "policy.d_model": 32 * n}
        # the independent route: `overopt study --set ...` overrides on the same preset
        ref = resolve(
            "tiny",
            [
                "figures=false",
                "labels.n_comparisons=1000",
                f"labels.flip_frac={f}",
                f"rl.kl_coefs=[{k}]",
                f"policy.n_layer={n}",
                f"policy.d_model={32 * n}",
            ],
        )
        assert p.config == ref and p.id == run_id(ref)
    again = expand(load_spec(_spec(tmp_path, GRID)))
    assert [p.id for p in again] == [p.id for p in points]
    assert len({p.id for p in points}) == 9


@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
def test_every_shipped_spec_expands(spec):
    points = expand(load_spec(spec))
    assert len(points) >= 2
    assert all(not p.config.figures for p in points)


def test_shipped_specs_cover_the_paper_sweeps():
    names = {p.stem for p in SPECS}
    for kind in ("rm_size", "data_size", "kl_penalty", "policy_size"):
        assert {f"gao_{kind}_small", f"gao_{kind}_paper"} <= names
    assert {"smoke", "coste_ensembles_small"} <= names
    assert len(expand(load_spec(SPECS[[p.stem for p in SPECS].index("smoke")]))) >= 4
    coste = expand(load_spec(SPECS[[p.stem for p in SPECS].index("coste_ensembles_small")]))
    assert {p.config.labels.flip_frac for p in coste} == {0.0, 0.25}
    assert {p.config.ladder.ensemble_size for p in coste} <= {4, 5}


BAD = [
    # (spec text, key named in the message, line of the file)
    ('preset = "tiny"\nbogus = 1\n', "bogus", 2),
    ('preset = "huge"\n', "huge", 1),
    ('preset = "tiny"\n[axes]\n"labels.flip_frac" = [0.0]\n"labels.nope" = [1, 2]\n', "labels.nope", 4),
    ('preset = "tiny"\n[axes]\n"labels.flip_frac" = [0.0, "x"]\n', "labels.flip_frac", 3),
    ('preset = "tiny"\n[axes]\n"labels.flip_frac" = [0.0, 0.9]\n', "labels.flip_frac", 3),
    ('preset = "tiny"\n[axes]\n"labels.flip_frac" = 0.1\n', "labels.flip_frac", 3),
    ('preset = "tiny"\n\n[base.policy]\nn_layer = 1\nd_modle = 2\n', "d_modle", 5),
    ('preset = "tiny"\n[base.policy]\nn_layer = "two"\n', "n_layer", 3),
    ('preset = "tiny"\n[[zip]]\n"policy.n_layer" = [1, 2]\n"policy.d_model" = [32]\n', "policy.n_layer", 3),
    (
        'preset = "tiny"\n[axes]\n"labels.flip_frac" = [0.0]\n[[exclude]]\nname = "x"\n"labels.seed" = 1\n',
        "labels.seed",
        6,
    ),
    (
        'preset = "tiny"\n[axes]\n"labels.flip_frac" = [0.0, 0.1]\n[[exclude]]\nname = "typo"\n'
        '"labels.flip_frac" = 0.2\n',
        "typo",
        5,
    ),
    ('preset = "tiny"\n[axes]\n"labels.flip_frac" = [0.1, 0.1]\n', "same config", 3),
    ('preset = "tiny"\n[axes\n', "TOML", 2),
]


@pytest.mark.parametrize("text,key,line", BAD)
def test_bad_specs_exit_2_naming_the_key_and_its_line(tmp_path, capsys, text, key, line):
    spec = tmp_path / "bad.toml"
    spec.write_text(text)
    out = tmp_path / "out"
    assert main(["sweep", "launch", str(spec), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert key in err and f"line {line}" in err if key == "TOML" else f"{spec}:{line}:" in err and key in err
    assert not out.exists()  # nothing written


def test_line_of_finds_axis_base_and_inline_keys():
    text = 'preset = "tiny"\n[base.policy]\nn_layer = 1\npretrain = { steps = 60 }\n[axes]\n"ladder.sizes" = [\n]\n'
    assert line_of(text, "policy.n_layer") == 3
    assert line_of(text, "policy.pretrain.steps") == 4
    assert line_of(text, "ladder.sizes[0].d_model") == 6
    assert line_of(text, "preset") == 1
    assert line_of(text, "missing") is None


@pytest.mark.parametrize(
    "env,expected",
    [
        ({}, False),
        ({"SLURM_JOB_ID": "7"}, False),
        ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1"}, False),
        ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4"}, True),
        ({"SLURM_JOB_ID": "7", "SLURM_NPROCS": "2"}, True),
        ({"SLURM_NTASKS": "4"}, False),  # not inside a job (e.g. a login shell that exported it)
        ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "n/a"}, False),
    ],
)
def test_multihost_only_on_a_multi_task_slurm_job(env, expected, monkeypatch):
    import jax

    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **k: calls.append(1))
    monkeypatch.setattr(jax.config, "update", lambda *a: None)  # gloo CPU collectives: not for this session
    assert worker.multihost_cluster(env) is expected
    assert worker.maybe_initialize_distributed(env) is expected
    assert len(calls) == int(expected)


def _point(tmp_path, name="p1") -> Path:
    d = tmp_path / "points" / name
    d.mkdir(parents=True)
    return d


def test_point_status_from_markers(tmp_path):
    d = _point(tmp_path)
    assert worker.point_status(d) == ("pending", "")
    me = {"pid": os.getpid(), "host": socket.gethostname(), "proc_start": worker.proc_start(os.getpid())}
    atomic_write_json(d / "RUNNING", me)
    assert worker.point_status(d)[0] == "running"
    atomic_write_json(d / "RUNNING", {**me, "proc_start": "1"})  # our pid, but another process's start time
    assert worker.point_status(d) == ("pending", "interrupted")
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    atomic_write_json(d / "RUNNING", {"pid": dead, "host": socket.gethostname()})
    assert worker.point_status(d) == ("pending", "interrupted")
    atomic_write_json(d / "RUNNING", {"pid": 1, "host": "elsewhere"})
    assert worker.point_status(d)[0] == "running"  # another host: not ours to judge
    (d / "RUNNING").unlink()
    atomic_write_json(d / "FAILED", {"error": "ValueError: boom", "traceback": "..."})
    assert worker.point_status(d) == ("failed", "ValueError: boom")
    atomic_write_json(d / "DONE", {})
    assert worker.point_status(d) == ("done", "")


def test_damaged_markers_are_read_as_absent(tmp_path):
    d = _point(tmp_path)
    host = socket.gethostname()
    for running in (
        {"host": host},
        {"pid": "x", "host": host},
        {"pid": -1, "host": host},
        {"pid": 2**80, "host": host},
    ):
        atomic_write_json(d / "RUNNING", running)  # no live pid named: the marker is stale
        assert worker.point_status(d) == ("pending", "interrupted"), running
    (d / "RUNNING").write_bytes(b"\xff\xfe")  # not UTF-8
    assert worker.point_status(d) == ("pending", "")
    atomic_write_json(d / "FAILED", ["not", "an", "object"])
    assert worker.point_status(d) == ("pending", "")


def test_status_verb_prints_each_point_with_its_error(tmp_path, capsys):
    atomic_write_json(
        tmp_path / "sweep.json",
        {
            "name": "t",
            "points": [
                {"id": "a", "values": {"labels.flip_frac": 0.0}},
                {"id": "b", "values": {"labels.flip_frac": 0.25}},
            ],
        },
    )
    atomic_write_json(_point(tmp_path, "a") / "DONE", {})
    atomic_write_json(_point(tmp_path, "b") / "FAILED", {"error": "RuntimeError: injected"})
    assert main(["sweep", "status", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "2 points: 1 done, 0 running, 1 failed, 0 pending" in out
    assert "b  failed   labels.flip_frac=0.25  [RuntimeError: injected]" in out
    assert main(["sweep", "status", str(tmp_path / "nope")]) == 2


def test_status_reports_damaged_runs_and_changes_nothing(tmp_path, capsys):
    from core.store import Run

    atomic_write_json(tmp_path / "sweep.json", {"name": "t", "points": [{"id": "a", "values": {}}]})
    run = Run.open(tmp_path / "runs", {"stage": 1}, prefix="bon-rm-s")
    run.write_points(pd.DataFrame({"kl": [0.0, 1.0], "gold": [0.0, 0.5]}))
    run.mark_done()
    assert main(["sweep", "status", str(tmp_path)]) == 0
    assert "damaged file" not in capsys.readouterr().out
    data = (run.path / "points.parquet").read_bytes()
    (run.path / "points.parquet").write_bytes(data[: len(data) // 2])  # truncated after DONE
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    assert main(["sweep", "status", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "1 damaged file(s)" in out and f"runs/{run.id}/points.parquet: size" in out
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before


class _Fault:
    """A Study that fails as it starts (the worker records the failure)."""

    def __init__(self, *args, **kwargs):
        raise RuntimeError("injected fault")


def test_slurm_job_runs_the_worker_path_in_process(tmp_path, monkeypatch):
    import study.pipeline

    d = _point(tmp_path, "abc")
    atomic_write_json(d / "config.json", {})
    monkeypatch.setattr(study.pipeline, "Study", _Fault)
    job = pickle.loads(pickle.dumps(worker.SlurmJob()))  # what submitit ships: a stateless callable
    with pytest.raises(RuntimeError, match="injected fault"):
        job(str(d))
    assert json.loads((d / "FAILED").read_text())["error"].startswith("RuntimeError: injected fault")
    assert not (d / "RUNNING").exists()
    atomic_write_json(d / "DONE", {})
    assert job(str(d)) == str(d)
    resub = job.checkpoint(str(d))  # preemption: requeue the same path
    assert resub.args == (str(d),) and isinstance(resub.function, worker.SlurmJob)


def test_slurm_array_configuration_without_a_cluster(tmp_path, monkeypatch):
    import submitit
    from submitit.slurm import slurm

    monkeypatch.setattr(slurm.SlurmExecutor, "affinity", staticmethod(lambda: 1))  # pretend srun exists
    opts = L.SlurmOptions(
        partition="gpu", timeout_min=90, gpus_per_job=2, cpus_per_task=6, mem_gb=40, max_parallel=3, max_requeue=5
    )
    ex = S.make_slurm_executor(tmp_path / "slurm", n_jobs=7, opts=opts, name="smoke")
    assert isinstance(ex, submitit.AutoExecutor)
    p = ex._executor.parameters
    assert p["partition"] == "gpu" and p["time"] == 90 and p["gpus_per_node"] == 2
    assert p["cpus_per_task"] == 6 and p["mem"] == "40GB" and p["array_parallelism"] == 3
    assert p["additional_parameters"] == {"requeue": True} and ex._executor.max_num_timeout == 5
    sbatch = slurm._make_sbatch_string(command="python -m submitit", folder=tmp_path, map_count=7, **p)
    for line in (
        "--array=0-6%3",
        "--partition=gpu",
        "--time=90",
        "--gpus-per-node=2",
        "--cpus-per-task=6",
        "--mem=40GB",
        "--requeue",
        "--signal=USR2@",
        "--job-name=overopt-smoke",
    ):
        assert line in sbatch, line
    # parallelism never exceeds the array, and defaults to all of it
    assert S.slurm_parameters(2, opts, "x")["slurm_array_parallelism"] == 2
    assert S.slurm_parameters(9, L.SlurmOptions(), "x")["slurm_array_parallelism"] == 9
    assert "--nodes=1" in sbatch and "--ntasks-per-node=1" in sbatch  # one task: a one-process point
    # a multi-node point (--nodes-per-job 2): one task a node, each with its GPUs; the tasks join one mesh
    two = L.SlurmOptions(partition="gpu", gpus_per_job=4, nodes_per_job=2)
    ex2 = S.make_slurm_executor(tmp_path / "slurm2", n_jobs=3, opts=two, name="smoke")
    p2 = ex2._executor.parameters
    sbatch2 = slurm._make_sbatch_string(command="python -m submitit", folder=tmp_path, map_count=3, **p2)
    for line in ("--nodes=2", "--ntasks-per-node=1", "--gpus-per-node=4"):
        assert line in sbatch2, line


def test_slurm_without_srun_is_a_usage_error(tmp_path, monkeypatch):
    from submitit.slurm import slurm

    monkeypatch.setattr(slurm.SlurmExecutor, "affinity", staticmethod(lambda: -1))
    with pytest.raises(UsageError, match="slurm"):
        S.make_slurm_executor(tmp_path, 2, L.SlurmOptions(), "x")


def test_slurm_wait_reads_squeue_fails_lost_tasks_and_cancels_leftovers(tmp_path, monkeypatch):
    """`sweeps.slurm.wait_array` against a scripted queue (no cluster; tests/test_slurm_real.py runs a real one)."""

    a, b, c = (_point(tmp_path, n) for n in ("a", "b", "c"))
    tasks = {a: "7_0", b: "7_1", c: "7_2"}
    # each squeue call returns the next queue; a scripted event runs before it (a worker finishing)
    script = [
        (lambda: atomic_write_json(a / "DONE", {}), {"7_1": "RUNNING", "7_2": "RUNNING"}),  # 7_0 left, a done
        (lambda: None, {"7_2": "RUNNING"}),  # 7_1 left the queue with its point unfinished: FAILED
        (lambda: atomic_write_json(c / "DONE", {}), {"7_0": "PENDING", "7_2": "COMPLETING"}),  # 7_0 requeued
        (lambda: None, {"7_0": "PENDING"}),  # cancelled, not yet gone; 7_2 exited
        (lambda: None, {}),
    ]
    calls, cancelled = [], []

    def fake_queued(arrays):
        assert arrays == ["7"]
        event, queue = script[min(len(calls), len(script) - 1)]
        event()
        calls.append(dict(queue))
        return queue

    monkeypatch.setattr(S, "queued", fake_queued)
    monkeypatch.setattr(S, "cancel", cancelled.extend)
    monkeypatch.setattr(S, "POLL_S", 0.0)
    monkeypatch.setattr(S, "SQUEUE_GAPS", (0,))
    assert S.wait_array(tasks) == ["7_0"]
    assert cancelled == ["7_0"]  # the pending leftover only: never a running or exiting task
    assert worker.point_status(b) == ("failed", "slurm task 7_1 left the queue unfinished")
    assert [worker.point_status(d)[0] for d in (a, c)] == ["done", "done"]
    assert len(calls) == 4  # it returned once only cancelled tasks were left
    # squeue failing (not on PATH, the controller down): the points' markers still end the wait
    monkeypatch.setattr(S, "queued", lambda arrays: None)
    assert S.wait_array(tasks) == []


def test_aggregation_keeps_each_shared_run_once_with_its_axis_values():
    def table(*runs):
        return pd.DataFrame([{"run_id": r, "kl": float(i), "gold": 0.0} for r in runs for i in range(2)])

    frames = [  # two label-noise values; the pool-level run "bon-shared" is held by both points
        ({"labels.flip_frac": 0.0, "rl.kl_coefs": [0.0]}, table("bon-shared", "rl-1")),
        ({"labels.flip_frac": 0.25, "rl.kl_coefs": [0.1]}, table("bon-shared", "rl-2")),
        ({"labels.flip_frac": 0.25, "rl.kl_coefs": [0.2]}, table("rl-3")),
    ]
    out, axes = L._dedup_by_run(frames)
    assert axes == ["labels.flip_frac"]  # list-valued axes get no column
    assert list(out["run_id"]) == ["bon-shared"] * 2 + ["rl-1"] * 2 + ["rl-2"] * 2 + ["rl-3"] * 2
    by_run = out.drop_duplicates("run_id").set_index("run_id")["labels.flip_frac"]
    assert pd.isna(by_run["bon-shared"]) and by_run["rl-1"] == 0.0 and by_run["rl-2"] == 0.25


def test_out_dir_must_be_a_sweep(tmp_path):
    (tmp_path / "other.txt").write_text("x")
    p = _spec(tmp_path, 'preset = "tiny"\n[axes]\n"labels.flip_frac" = [0.0]\n')
    assert main(["sweep", "launch", str(p), "--out", str(tmp_path)]) == 2  # a non-empty non-sweep dir


def test_dry_run_lists_the_points_and_writes_nothing(tmp_path, capsys):
    smoke = SPECS[[p.stem for p in SPECS].index("smoke")]
    assert main(["sweep", "launch", str(smoke), "--out", str(tmp_path / "o"), "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    ids = [p.id for p in expand(load_spec(smoke))]
    assert out[-1] == f"{len(ids)} points" and [line.split()[0] for line in out[:-1]] == ids
    assert not (tmp_path / "o").exists()


def test_jax_cache_is_set_in_process_even_after_a_compile(tmp_path, monkeypatch):
    import jax
    import jax.numpy as jnp
    from jax.experimental.compilation_cache import compilation_cache

    jax.jit(lambda x: x - 1)(1.0)  # the process has compiled before the sweep sets its cache
    before = jax.config.jax_compilation_cache_dir
    for k in (
        "JAX_COMPILATION_CACHE_DIR",
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES",
    ):
        monkeypatch.delenv(k, raising=False)
    try:
        worker.configure_jax_cache(tmp_path / "cache")
        assert os.environ["JAX_COMPILATION_CACHE_DIR"] == str((tmp_path / "cache").resolve())
        jax.jit(lambda x: x * 7 + 3)(jnp.arange(3.0))
        assert any((tmp_path / "cache").iterdir())
    finally:
        jax.config.update("jax_compilation_cache_dir", before)
        compilation_cache.reset_cache()


def test_a_sweep_is_counted_before_it_is_expanded(tmp_path, capsys):
    """A 10^6-point grid is refused at once (counted from the axes' lengths, not expanded), --dry-run too;
    the count matches the expansion of a small grid, zips counting once."""
    import time

    from overopt.cli import main
    from sweeps.spec import MAX_POINTS, count_points, expand, load_spec

    axes = "\n".join(f'"{k}" = {list(range(10))}' for k in ("bon.seed", "rl.prompt_seed", "labels.seed"))
    axes += '\n"world.seed" = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\n"policy.seed" = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]'
    axes += '\n"labels.flip_frac" = [0.0, 0.1, 0.2, 0.3, 0.4, 0.41, 0.42, 0.43, 0.44, 0.45]'
    big = tmp_path / "big.toml"
    big.write_text(f'preset = "tiny"\n[axes]\n{axes}\n')
    assert count_points(load_spec(big)) == 10**6 > MAX_POINTS
    t0 = time.time()
    assert main(["sweep", "launch", str(big), "--out", str(tmp_path / "o"), "--dry-run"]) == 2
    assert time.time() - t0 < 30 and not (tmp_path / "o").exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "1,000,000 points" in err[0] and "100,000" in err[0]
    small = tmp_path / "small.toml"
    small.write_text(
        'preset = "tiny"\n[axes]\n"bon.seed" = [0, 1, 2]\n[[zip]]\n"labels.seed" = [0, 1]\n"rl.prompt_seed" = [5, 6]\n'
    )
    assert count_points(load_spec(small)) == 6 == len(expand(load_spec(small)))
