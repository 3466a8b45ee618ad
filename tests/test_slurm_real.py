"""A real Slurm (issue 36, item 6): a sweep through `--executor slurm --wait` on whatever Slurm answers here
(`.ci/slurm-up` starts a one-node one where slurm-wlm and munge are installed). Skipped, with the reason, where
`sinfo` does not answer.

The sweep is two points of the micro sweep (tests/micro.py; the session's debug-executor run of it,
conftest.micro_sweep, is the reference) run one task at a time, with the session's compilation cache. While the
launcher waits, the test requeues both tasks: the first after its point is DONE, held (`scontrol requeuehold`:
a leftover that would stay pending after the launcher returned unless it cancels it), the second mid-run
(`scontrol requeue`: Slurm kills the worker and runs the task again, which resumes from the stored stages, or, if
the point finishes before the kill, the requeued copy is a leftover the launcher cancels; the
one-node Slurm of `.ci/slurm-up` lets a requeued job start again after 15 s, the default being 120 s, and kills
a step 2 s after the SIGTERM that submitit ignores, the default being 30 s).
Then: exit 0, no task of the array left in the queue, the launcher said which leftover it cancelled and printed
no submitit "sacct error" warning (this Slurm has accounting off), and each point's rows equal the reference's.
"""

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from micro import same_points, sweep_spec

ROOT = Path(__file__).resolve().parent.parent
HANG = 600  # seconds: a guard against a hung launcher; no assertion depends on how long anything takes


def _slurm_reason() -> str | None:
    if shutil.which("sinfo") is None:
        return "no Slurm here: sinfo is not on PATH (.ci/slurm-up starts one where slurm-wlm is installed)"
    try:
        r = subprocess.run(["sinfo", "-h"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"sinfo failed: {e}"
    return None if r.returncode == 0 else f"sinfo exit {r.returncode}: {r.stderr.strip()[:200]}"


REASON = _slurm_reason()


def _wait(what: str, ready, proc) -> None:
    deadline = time.monotonic() + HANG
    while not ready():
        assert proc.poll() is None, f"the launcher exited (rc {proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"no {what} within {HANG} s"
        time.sleep(0.2)


def _scontrol(*args) -> None:
    r = subprocess.run(["scontrol", *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, (args, r.stderr)


@pytest.mark.skipif(REASON is not None, reason=str(REASON))
def test_sweep_through_slurm_survives_requeues_and_leaves_no_task(micro_sweep, sweep_cache, tmp_path):
    from sweeps.slurm import queued
    from sweeps.spec import expand, load_spec

    spec = sweep_spec(tmp_path / "two.toml", kls=(0.0, 0.1))
    ids = [p.id for p in expand(load_spec(spec))]
    assert all((micro_sweep / "points" / i / "DONE").exists() for i in ids)  # the reference holds both points
    out, log = tmp_path / "sweep", tmp_path / "launch.log"
    args = ["sweep", "launch", str(spec), "--out", str(out), "--executor", "slurm", "--wait", "--gpus-per-job", "0"]
    args += ["--cpus-per-task", "1", "--max-parallel", "1", "--no-figures", "--jax-cache", str(sweep_cache)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = second = ""
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "overopt.cli", *args], stdout=f, stderr=f, env=env)
    try:
        _wait("slurm_jobs.json", lambda: (out / "slurm_jobs.json").exists(), proc)
        tasks = pd.read_json(out / "slurm_jobs.json", typ="series")["jobs"]
        first, second = tasks[ids[0]], tasks[ids[1]]
        # the first point DONE and its task gone: requeued and held, it is a leftover of a finished point
        _wait("the first point", lambda: (out / "points" / ids[0] / "DONE").exists(), proc)
        _wait("the first task's end", lambda: queued([first]) == {}, proc)
        _scontrol("requeuehold", first)
        # the second point mid-run (its worker has started): requeued, its worker killed (KillWait after the SIGTERM
        # that submitit ignores), and run again once Slurm lets a requeued job start (cred_expire)
        _wait("the second point's worker", lambda: (out / "points" / ids[1] / "RUNNING").exists(), proc)
        _scontrol("requeue", second)
        assert not (out / "points" / ids[1] / "DONE").exists()  # the requeue hit a running point
        assert proc.wait(timeout=HANG) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
        if first:  # whatever happened, nothing of this array stays queued
            subprocess.run(["scancel", first.split("_")[0]], capture_output=True, check=False)
    text = log.read_text()
    assert "sacct" not in text, text[-3000:]  # submitit's status polls never ran
    assert re.search(rf"cancelling \d leftover task\(s\) of finished points: (\S+, )*{first}\b", text), text[-3000:]
    assert queued([first.split("_")[0]]) == {}  # nothing of the array is left in the queue
    # the second task either ran twice (killed by the requeue, then to the end), or, where its point finished inside
    # Slurm's KillWait after the SIGTERM that submitit ignores (seen under load: a warm-cache micro point takes
    # seconds), ran once and its requeued copy is a leftover of a finished point that the launcher cancelled
    log_out = "".join(p.read_text() for p in (out / "slurm").glob(f"{second}_*_log.out"))
    runs = log_out.count(f"Starting with JobEnvironment(job_id={second},")
    cancelled = re.search(rf"leftover task\(s\) of finished points: (\S+, )*{second}\b", text) is not None
    assert (runs, cancelled) in ((2, False), (1, True)), (runs, cancelled, log_out[-3000:], text[-3000:])
    for i in ids:
        a = pd.read_parquet(micro_sweep / "points" / i / "out" / "points.parquet")
        same_points(pd.read_parquet(out / "points" / i / "out" / "points.parquet"), a)
    assert len(pd.read_parquet(out / "points.parquet")) > 0
