"""Reliability of the local sweep: SIGKILL at random moments then relaunch, and a failing point.

The spec is the micro sweep (tests/micro.py: `smoke.toml` with one proxy size, 3 KL coefficients, fewer PPO
updates), so its points share every stage but PPO. The in-process `debug` executor gives the reference sweep
(conftest.micro_sweep, shared with tests/test_slurm_real.py); the `local` executor (worker subprocesses)
must reproduce it. The session's JAX compilation cache (conftest) is the sweeps' cache, so only the first
sweep pays for compilation.

The kills are triggered by what the test sees the sweep write (a stage's run directory, a PPO
checkpoint, a point's DONE), never by a sleep: on a loaded machine a sleep may end before any worker
started, or after every point is done.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from micro import same_points as _same_points

from overopt.cli import main
from sweeps import launch as L
from sweeps.spec import expand, load_spec

FAULT_ENV = "OVEROPT_TEST_FAULT"
"""comma-separated point ids whose worker fails before running (read only by `_faulty_worker`'s script)."""
_FAULTY = """import os, sys
from pathlib import Path
from sweeps import worker
import study.pipeline
class Fault:
    def __init__(self, *a, **k):
        raise RuntimeError("injected fault")
if Path(sys.argv[1]).name in os.environ.get("OVEROPT_TEST_FAULT", "").split(","):
    study.pipeline.Study = Fault
sys.exit(worker.main(sys.argv[1:]))
"""


def _faulty_worker(point_dir):
    """The local worker's command line, failing for the points FAULT_ENV names (no hook in production code)."""
    return [sys.executable, "-c", _FAULTY, str(point_dir)]


@pytest.fixture(scope="module")
def spec(micro_sweep_spec) -> Path:
    return micro_sweep_spec


@pytest.fixture(scope="module")
def cache(sweep_cache) -> Path:
    return sweep_cache


@pytest.fixture(scope="module")
def reference(micro_sweep) -> Path:
    return micro_sweep


def _cmd(spec, out, cache) -> list[str]:
    return [
        sys.executable,
        "-m",
        "overopt.cli",
        "sweep",
        "launch",
        str(spec),
        "--out",
        str(out),
        "--jax-cache",
        str(cache),
        "--no-figures",
        "--max-parallel",
        "1",
    ]


def _all_readable(out: Path) -> int:
    """Open every parquet and JSON file a kill could have torn (temp files of atomic writes excepted)."""
    n = 0
    for p in out.rglob("*"):
        if not p.is_file() or p.name.startswith(".") or ".jax_cache" in p.parts:
            continue
        if p.suffix == ".parquet":
            pd.read_parquet(p)
        elif p.suffix == ".json" or p.name in ("DONE", "FAILED", "RUNNING"):
            json.loads(p.read_text())
        else:
            continue
        n += 1
    return n


def test_debug_executor_sweep_aggregates_like_a_study(reference, spec):
    from figures.data import load_data
    from ingest.load import load_points

    pts = pd.read_parquet(reference / "points.parquet")
    ids = [p.id for p in expand(load_spec(spec))]
    assert [r["state"] for r in L.statuses(reference)] == ["done"] * 3
    # points share the BoN runs (best-of-n and the selection rules'): each once; each point adds its own PPO run
    assert pts.groupby("method")["run_id"].nunique().to_dict() == {"bon": 2, "rl": 3}
    assert sorted(pts.loc[pts.method == "rl", "kl_coef"].unique()) == [0.0, 0.1, 0.3]
    own = pd.concat([pd.read_parquet(reference / "points" / i / "out" / "points.parquet") for i in ids])
    key = ["run_id", "method", "n", "step", "kl_coef", "seed", "objective", "rule", "param_value"]
    assert len(pts) == len(own.drop_duplicates(key))
    # `overopt fit DIR` reads the stage runs; `overopt figures DIR` reads DIR/points.parquet: same rows
    runs = load_points([reference]).sort_values(["run_id", "kl", "gold"]).reset_index(drop=True)
    top = pts[runs.columns].sort_values(["run_id", "kl", "gold"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(runs, top, check_dtype=False)
    assert len(load_data(reference).points) == len(pts)
    assert (reference / "fits.json").exists() and (reference / "proxies.parquet").exists()
    # selection.json and unseen_size.json come from the same finish step as a study's
    sel = json.loads((reference / "selection.json").read_text())
    assert sel["fits"] and sel["best_n"] and (reference / "best_n.parquet").exists()
    assert (reference / "unseen_size.json").exists()
    # DIR/probes.json gathers every point's probe rows, each shared probe run once (issue 31)
    own_probes = [json.loads((reference / "points" / i / "out" / "probes.json").read_text())["rows"] for i in ids]
    probes = pd.DataFrame(json.loads((reference / "probes.json").read_text())["rows"])
    assert set(probes["run_id"]) == {r["run_id"] for rows in own_probes for r in rows}
    before = probes[probes["probe"] != "kl_split"]  # the shared probe runs' rows, once each
    assert len(before) == len(before.drop_duplicates(["run_id", "move"]))
    assert len(before) == sum(r["probe"] != "kl_split" for r in own_probes[0])
    # after RL each point's own klsplit run adds one row per grid point (kl_coef, seed)
    split = probes[probes["probe"] == "kl_split"]
    own_rows = [r for rows in own_probes for r in rows if r["probe"] == "kl_split"]
    own_split = {(r["run_id"], r["kl_coef"], r["seed"]) for r in own_rows}
    assert len(split) == len(own_split) and split["run_id"].nunique() == len(ids)
    assert set(zip(split["run_id"], split["kl_coef"], split["seed"])) == own_split
    # the one finish step (study.finish) also judges the criteria of a sweep
    checks = json.loads((reference / "criteria.json").read_text())["checks"]
    # this reduced spec has one proxy size: the ladder checks cannot be judged, and the file says so
    assert [(c["check"], c["passed"]) for c in checks] == [("proxy ladder", None)]
    # the varying axis (kl_coef) is a grouping column: one RL fit per coefficient, never pooled
    fits = json.loads((reference / "fits.json").read_text())["fits"]
    assert sorted(r["kl_coef"] for r in fits if r["method"] == "rl") == [0.0, 0.1, 0.3]


# What a sweep writes as it goes, in order for each point (runs/ is shared by the points): each path,
# once there, stays. A kill waits for a number of new ones since its launch.
PROGRESS = ("runs/*", "runs/rl-*/checkpoint.json", "points/*/DONE")
HANG = 600  # seconds: only a guard against a hung launcher; no assertion depends on how long anything takes


def _progress(out: Path) -> set[Path]:
    return {p for pattern in PROGRESS for p in out.glob(pattern)}


def _wait(what: str, ready, proc=None) -> None:
    """Poll until ready() (the launcher still running, if given); fail after HANG seconds."""
    deadline = time.monotonic() + HANG
    while not ready():
        assert proc is None or proc.poll() is None, f"the launcher exited (rc {proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"no {what} within {HANG} s"
        time.sleep(0.05)


def test_sigkill_at_random_moments_then_relaunch(spec, cache, reference, tmp_path):
    out = tmp_path / "sweep"
    rng = random.Random(20240607)
    for pattern in PROGRESS:  # the events exist (a renamed stage or file would leave the kills waiting)
        assert list(reference.glob(pattern)), pattern
    done_mtimes: dict[Path, int] = {}
    interrupted = 0
    for _ in range(3):
        before = _progress(out)
        wanted = rng.randint(1, 3)  # new stage runs, checkpoints or finished points to see before the kill
        proc = subprocess.Popen(
            _cmd(spec, out, cache), start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _wait(f"{wanted} new progress paths", lambda b=before, w=wanted: len(_progress(out) - b) >= w, proc)
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and its workers, mid-write or not
        proc.wait()
        assert out.exists() and _all_readable(out) > 0
        for p in out.rglob("DONE"):
            assert done_mtimes.setdefault(p, p.stat().st_mtime_ns) == p.stat().st_mtime_ns, f"{p} redone"
        # a SIGKILLed worker takes a moment to exit; then its RUNNING marker is stale
        _wait("killed worker gone", lambda: all(r["state"] != "running" for r in L.statuses(out)))
        states = [(r["state"], r["detail"]) for r in L.statuses(out)]
        interrupted += ("pending", "interrupted") in states
    # the first kill follows a stage run that a worker created: it lands inside that worker
    assert interrupted >= 1
    # at most 9 of the 16 progress paths (10 stage runs, 3 checkpoints, 3 points) were waited for: work is left
    assert len([p for p in done_mtimes if p.parent.parent.name == "points"]) < 3
    assert len(_progress(out)) < len(_progress(reference))
    res = subprocess.run(_cmd(spec, out, cache), capture_output=True, text=True, timeout=HANG)
    assert res.returncode == 0, res.stderr[-2000:]
    for p, m in done_mtimes.items():
        assert p.stat().st_mtime_ns == m, f"{p} was redone"
    assert [r["state"] for r in L.statuses(out)] == ["done"] * 3
    _all_readable(out)
    _same_points(pd.read_parquet(out / "points.parquet"), pd.read_parquet(reference / "points.parquet"))


def test_failing_point_is_recorded_and_the_others_complete(spec, cache, reference, tmp_path, monkeypatch, capsys):
    out = tmp_path / "sweep"
    ids = [p.id for p in expand(load_spec(spec))]
    # the stages every point shares, DONE already (the reference's: content-addressed, the same runs): each
    # worker computes its own point's (PPO and its KL split), the subject here, and not the shared ones again
    own = shutil.ignore_patterns("rl-*", "klsplit-*")
    shutil.copytree(reference / "runs", out / "runs", symlinks=True, ignore=own)
    shutil.copy(reference / "sweep.json", out / "sweep.json")
    shared = {p.name for p in (out / "runs").iterdir() if p.is_dir()}
    assert shared and not any(n.startswith(("rl-", "klsplit-")) for n in shared)
    monkeypatch.setenv(FAULT_ENV, ids[1])
    monkeypatch.setattr(L, "worker_command", _faulty_worker)
    assert main(["sweep", "launch", str(spec), "--out", str(out), "--jax-cache", str(cache), "--no-figures"]) == 1
    assert "1 of 3 points failed" in capsys.readouterr().err
    rows = {r["id"]: r for r in L.statuses(out)}
    assert [rows[i]["state"] for i in ids] == ["done", "failed", "done"]
    assert rows[ids[1]]["detail"].startswith("RuntimeError: injected fault")
    failed = json.loads((out / "points" / ids[1] / "FAILED").read_text())
    assert "Traceback" in failed["traceback"] and not (out / "points" / ids[1] / "RUNNING").exists()
    assert main(["sweep", "status", str(out)]) == 0
    assert f"{ids[1]}  failed" in capsys.readouterr().out
    partial = pd.read_parquet(out / "points.parquet")  # the done points are aggregated all the same
    assert partial.groupby("method")["run_id"].nunique().to_dict() == {"bon": 2, "rl": 2}
    # fixed: the relaunch runs only the failed point
    done = {i: (out / "points" / i / "DONE").stat().st_mtime_ns for i in (ids[0], ids[2])}
    monkeypatch.delenv(FAULT_ENV)
    assert main(["sweep", "launch", str(spec), "--out", str(out), "--jax-cache", str(cache), "--no-figures"]) == 0
    assert {i: (out / "points" / i / "DONE").stat().st_mtime_ns for i in done} == done
    assert not (out / "points" / ids[1] / "FAILED").exists()
    new = sorted(p.name.split("-")[0] for p in (out / "runs").iterdir() if p.is_dir() and p.name not in shared)
    assert new == ["klsplit"] * 3 + ["rl"] * 3  # each point's own stages, computed by its worker; nothing shared again
    _same_points(pd.read_parquet(out / "points.parquet"), pd.read_parquet(reference / "points.parquet"))
