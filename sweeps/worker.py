"""One sweep job: run the study of one point directory. `python -m sweeps.worker POINT_DIR`.

A point directory `DIR/points/<point id>/` holds
  config.json   the point's resolved StudyConfig (written by the launcher; jobs receive only the path)
  RUNNING       {pid, host, proc_start, started} while a worker runs it (left behind by a kill: stale)
  FAILED        {error (the last line), traceback, host, pid, time} when its last attempt raised
  DONE          written last, atomically, after the study returned
  out/          the study's own output: points.parquet, proxies.parquet, fits.json, study.json
Every stage is a content-addressed run under the shared `DIR/runs`, so points that share a stage
compute it once, and a relaunch resumes at the first stage that is not DONE.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import traceback
from pathlib import Path

from core import multihost, safe_read
from core.errors import UsageError
from core.store import Run, atomic_write_json


def multihost_cluster(env) -> bool:
    """Whether this job is one task of several on a Slurm allocation (then JAX must go multi-host).

    Arguments: env, a mapping like os.environ. Returns: True when SLURM_JOB_ID is set and the job has
    more than one task (SLURM_NTASKS, or SLURM_NPROCS on older Slurm).
    """
    return multihost.slurm_tasks(env) > 1


def maybe_initialize_distributed(env=None) -> bool:
    """`jax.distributed.initialize` on a multi-task Slurm job or with the explicit OVEROPT_COORDINATOR,
    OVEROPT_NUM_PROCESSES, OVEROPT_PROCESS_ID (`core.multihost`); otherwise JAX uses the local devices.
    Returns: whether it initialized."""
    return multihost.initialize(env)


def configure_jax_cache(cache_dir: str | Path) -> None:
    """Point JAX's persistent compilation cache at `cache_dir` (shared by every job of a sweep), caching
    every compiled program: on a 2-core CPU most of a small point's time is compilation."""
    cache_dir = str(Path(cache_dir).resolve())
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = cache_dir
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
    if "jax" in sys.modules:  # in-process (debug executor): the flags were read at import
        import jax  # already imported (checked above): no start-up cost
        from jax.experimental.compilation_cache import compilation_cache

        if jax.config.jax_compilation_cache_dir != cache_dir:
            jax.config.update("jax_compilation_cache_dir", cache_dir)
            compilation_cache.reset_cache()  # an earlier compile may have settled "no cache" for the process
        jax.config.update(
            "jax_persistent_cache_min_compile_time_secs",
            float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]),
        )
        jax.config.update(
            "jax_persistent_cache_min_entry_size_bytes", int(os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"])
        )


def sweep_dir_of(point_dir: Path) -> Path:
    return Path(point_dir).resolve().parent.parent


def jax_cache_of(sweep_dir: Path) -> Path:
    """The sweep's compilation cache: `jax_cache` in DIR/sweep.json, else DIR/.jax_cache."""
    try:
        info = safe_read.read_json(sweep_dir / "sweep.json")
        return Path(info.get("jax_cache") or sweep_dir / ".jax_cache")
    except (OSError, ValueError, AttributeError, TypeError, UsageError):
        return sweep_dir / ".jax_cache"


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (Linux), or None."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def proc_start(pid: int) -> str | None:
    """The start time of process `pid` in clock ticks since boot (Linux), to tell a reused pid apart."""
    fields = _stat(pid)
    return fields[19] if fields else None


def alive(info: dict) -> bool | None:
    """Whether the worker a RUNNING marker names still runs: None when it ran on another host."""
    if info.get("host") != socket.gethostname():
        return None
    pid = info.get("pid")
    if isinstance(pid, bool) or not isinstance(pid, int) or not 0 < pid < 2**31:  # a damaged marker names none
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    fields = _stat(pid)
    if fields is None:
        return True  # no /proc: the pid exists, take it as alive
    if fields[0] in ("Z", "X"):  # killed, not yet reaped
        return False
    return info.get("proc_start") in (None, fields[19])


def point_status(point_dir: Path) -> tuple[str, str]:
    """(state, detail) of one point: done | running | failed | pending; detail is the host/pid of a
    running worker, the last error line of a failed one, or 'interrupted' for a stale RUNNING."""
    point_dir = Path(point_dir)
    if (point_dir / "DONE").exists():
        return "done", ""
    if os.path.lexists(point_dir / "DONE"):
        return "failed", f"its DONE is a symbolic link to nothing ({os.readlink(point_dir / 'DONE')})"
    running = _read_json(point_dir / "RUNNING")
    if running is not None:
        live = alive(running)
        if live or live is None:
            return "running", f"pid {running.get('pid')} on {running.get('host')}"
    failed = _read_json(point_dir / "FAILED")
    if failed is not None:
        return "failed", str(failed.get("error", ""))
    for marker in ("FAILED", "RUNNING"):  # there, but a FIFO, a device or a directory: said, never read
        if os.path.lexists(point_dir / marker) and not safe_read.is_regular(point_dir / marker):
            return "failed" if marker == "FAILED" else "pending", f"its {marker} marker is not a regular file"
    return "pending", "interrupted" if running is not None else ""


def _read_json(path: Path) -> dict | None:
    """The JSON object in `path`, or None when it is missing, unreadable or not an object."""
    try:
        data = safe_read.read_json(path, safe_read.MAX_MARKER)  # a FIFO or a device is refused, never blocked on
    except (OSError, ValueError, UsageError):  # ValueError: bad JSON or bad UTF-8
        return None
    return data if isinstance(data, dict) else None


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def run_point(point_dir: str | Path, progress: bool = False) -> bool:
    """Run (or find) the study of one point. Returns: True when DONE, False when it failed (the failure
    is recorded in POINT_DIR/FAILED). Holds the point's lock, so two workers never run one point.

    Several processes of one job (`core.multihost`: a Slurm job with several tasks, or OVEROPT_COORDINATOR)
    run the point together: process 0 takes the lock and writes; every other process follows it
    (`_follow`), computing its share of every stage and writing nothing in the sweep directory."""
    point_dir = Path(point_dir).resolve()
    run = Run(point_dir)
    if run.done and multihost.explicit(os.environ) is None and multihost.slurm_tasks(os.environ) == 1:
        return True  # one process: nothing to start (several: every process learns it from process 0)
    sweep = sweep_dir_of(point_dir)
    configure_jax_cache(jax_cache_of(sweep))
    maybe_initialize_distributed()
    if multihost.follower():
        return _follow(point_dir, sweep, progress)
    if run.done:
        multihost.say("point", "done")
        return True
    with run.lock():
        if run.done:  # another worker finished it while this one waited
            multihost.say("point", "done")
            return True
        multihost.say("point", "run")
        return _lead(point_dir, run, sweep, progress)


def _lead(point_dir: Path, run: Run, sweep: Path, progress: bool) -> bool:
    """Run the point's study (its lock held) and record the outcome: DONE, or FAILED with the last error line."""
    # the study's stack imports JAX: only after configure_jax_cache and the distributed setup have set the
    # environment JAX reads at import (and tests swap study.pipeline.Study for a failing one)
    from core.config import from_dict
    from study import pipeline
    from study.config import StudyConfig

    atomic_write_json(
        point_dir / "RUNNING",
        {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "proc_start": proc_start(os.getpid()),
            "started": time.time(),
        },
    )
    t0 = time.time()
    try:
        cfg = from_dict(StudyConfig, run.config())
        pipeline.Study(cfg, out=point_dir / "out", progress=progress, runs_root=sweep / "runs").run_all()
    except Exception as e:
        tb = traceback.format_exc()
        last = (f"{type(e).__name__}: {e}".strip().splitlines() or [type(e).__name__])[-1]
        atomic_write_json(
            point_dir / "FAILED",
            {
                "error": last,
                "traceback": tb,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "time": time.time(),
                "seconds": time.time() - t0,
            },
        )
        _remove(point_dir / "RUNNING")
        print(tb, file=sys.stderr, flush=True)
        return False
    _remove(point_dir / "FAILED")
    info = {"seconds": time.time() - t0, "host": socket.gethostname()}
    if multihost.processes() > 1:
        info["processes"] = multihost.processes()
    run.mark_done(info)
    _remove(point_dir / "RUNNING")
    multihost.say("point end", "done")
    return True


def _follow(point_dir: Path, sweep: Path, progress: bool) -> bool:
    """A follower's part of the point: nothing when process 0 found it DONE, else the same study (SPMD) with
    the follower's own stage outputs in a scratch directory outside the sweep (`study.walk.Walk.follow`).
    Returns: True when process 0 recorded the point DONE."""
    import tempfile

    from core.config import from_dict
    from study import pipeline
    from study.config import StudyConfig

    if multihost.hear("point") == "done":
        return True
    cfg = from_dict(StudyConfig, Run(point_dir).config())
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix=f"overopt-process{multihost.index()}-") as scratch:
        study = pipeline.Study(cfg, out=Path(scratch) / "out", progress=progress, runs_root=sweep / "runs")
        study.follow(Path(scratch) / "runs")
        study.run_all()
    done = multihost.hear("point end") == "done"
    n = len(study.computed)
    print(
        f"overopt: process {multihost.index()} of {multihost.processes()}: computed {n} stage instance"
        f"{'s' * (n != 1)} with process 0 in {time.time() - t0:.1f} s; wrote nothing in {sweep}",
        file=sys.stderr,
        flush=True,
    )
    return done


class SlurmJob:
    """A Slurm array task: runs one point directory. On preemption or timeout submitit calls
    `checkpoint`, which requeues the same path; finished stages are DONE, so the job resumes. (submitit's
    `Checkpointable` protocol by duck typing: submitit is imported only when a checkpoint is taken, so the
    local executor's workers never import it.)"""

    def checkpoint(self, *args, **kwargs):
        from submitit.helpers import DelayedSubmission  # only on Slurm

        return DelayedSubmission(self, *args, **kwargs)

    def __call__(self, point_dir: str) -> str:
        if not run_point(point_dir):
            failed = _read_json(Path(point_dir) / "FAILED") or {}
            raise RuntimeError(f"point {Path(point_dir).name} failed: {failed.get('error', '?')}")
        return str(point_dir)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m sweeps.worker POINT_DIR", file=sys.stderr)
        return 2
    point_dir = Path(argv[0])
    if not (point_dir / "config.json").is_file():
        print(f"sweeps.worker: {point_dir} holds no config.json", file=sys.stderr)
        return 2
    try:
        multihost.explicit(os.environ)  # a bad OVEROPT_NUM_PROCESSES/OVEROPT_PROCESS_ID: one line, before JAX starts
    except ValueError as e:
        print(f"sweeps.worker: {e}", file=sys.stderr)
        return 2
    return 0 if run_point(point_dir) else 1


if __name__ == "__main__":
    sys.exit(main())
