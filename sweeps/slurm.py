"""The Slurm executor: one submitit job array, one task per point, and the wait for it.

`run_slurm` submits the array through submitit (which writes the sbatch script and ships the worker), then,
with `--wait`, waits on the point directories and on `squeue`, never on submitit's `job.result()`: that polls
`sacct`, which fails on clusters with accounting off (as on many small ones, and on the one-node CI Slurm)
and printed a "Bypassing sacct error" warning per poll, and a task that left the queue without a result
(cancelled, its node lost) kept it waiting for ever. Here:

- a point is finished when its worker recorded DONE or FAILED (`sweeps.worker.point_status`);
- `squeue` is asked every few seconds at first, then less often (`SQUEUE_GAPS`), and once more when every
  point is finished; a task that left the queue while its point is not finished is recorded FAILED;
- when every point is finished, array tasks still queued are leftovers (a task requeued after its point was
  done, one held): pending ones are cancelled (`scancel`) and said; running ones (a worker exiting, or a
  requeued duplicate finding its point DONE) are waited for.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from core.errors import UsageError
from core.log import log
from core.store import atomic_write_json
from sweeps import worker

POLL_S = 1.0
"""seconds between looks at the point directories (local files: cheap)."""
SQUEUE_GAPS = (2, 4, 8, 16, 30, 60)
"""seconds between `squeue` calls while points run (then the last one), so a long sweep asks rarely."""
ACTIVE = ("RUNNING", "COMPLETING", "CONFIGURING")
"""task states of a worker at work or exiting: waited for, never cancelled as leftovers."""


@dataclass(frozen=True)
class SlurmOptions:
    """Resources of each array task, and how many run at once."""

    partition: str | None = None
    timeout_min: int = 240
    gpus_per_job: int = 1
    """GPUs of each task (each node of a multi-node point)."""
    nodes_per_job: int = 1
    """nodes of each point: one task a node, all of them one JAX job (`core.multihost`), process 0 writing."""
    cpus_per_task: int = 8
    mem_gb: int | None = None
    max_parallel: int | None = None
    """array parallelism (None: every task may run at once)."""
    max_requeue: int = 3
    """requeues after a timeout (preemptions always requeue)."""
    wait: bool = False
    """wait for the array to finish, then aggregate."""


def _log(msg: str) -> None:
    log(msg, "sweep")


def slurm_parameters(n_jobs: int, opts: SlurmOptions, name: str) -> dict:
    """submitit AutoExecutor parameters of the job array (one task per point)."""
    params = {
        "name": f"overopt-{name}",
        "timeout_min": int(opts.timeout_min),
        "nodes": int(opts.nodes_per_job),  # one task a node: the point's tasks join one mesh (core.multihost)
        "tasks_per_node": 1,
        "gpus_per_node": int(opts.gpus_per_job),
        "cpus_per_task": int(opts.cpus_per_task),
        "slurm_array_parallelism": int(min(opts.max_parallel or n_jobs, n_jobs)),
        "slurm_additional_parameters": {"requeue": True},
    }
    if opts.partition:
        params["slurm_partition"] = opts.partition
    if opts.mem_gb:
        params["mem_gb"] = int(opts.mem_gb)
    return params


def check_slurm() -> None:
    """UsageError unless this machine can submit to Slurm (submitit needs `srun`); nothing is written."""
    try:
        from submitit.slurm import slurm  # only the slurm executor needs submitit: `sweep status` stays light
    except ImportError:
        raise UsageError("--executor slurm: submitit is not installed") from None
    if slurm.SlurmExecutor.affinity() < 0:
        raise UsageError("--executor slurm: Slurm is not available here (no srun on PATH)")


def make_slurm_executor(folder: Path, n_jobs: int, opts: SlurmOptions, name: str):
    """A submitit executor for the array (constructing it needs Slurm's `srun`; submitting needs a cluster)."""
    import submitit  # only the slurm executor needs it

    try:
        executor = submitit.AutoExecutor(folder=str(folder), cluster="slurm", slurm_max_num_timeout=opts.max_requeue)
    except RuntimeError as e:
        raise UsageError(f"--executor slurm: {e}") from None
    executor.update_parameters(**slurm_parameters(n_jobs, opts, name))
    return executor


def queued(array_ids: list[str]) -> dict[str, str] | None:
    """{task id (ARRAY_INDEX): state} of the arrays' tasks still in Slurm's queue (`squeue`, which needs no
    accounting); None when squeue failed (then nothing is concluded from it)."""
    cmd = ["squeue", "-h", "-r", "-o", "%i %T", "-j", ",".join(sorted(set(array_ids)))]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if r.returncode != 0:  # squeue exits 1 for an array id it no longer knows: every task has left
        return {} if "Invalid job id" in r.stderr else None
    return dict(line.split(None, 1) for line in r.stdout.splitlines() if len(line.split(None, 1)) == 2)


def cancel(task_ids: list[str]) -> None:
    """`scancel` the tasks (best effort: a task that just left the queue is no error)."""
    if task_ids:
        subprocess.run(["scancel", *task_ids], capture_output=True, text=True, timeout=60, check=False)


def _finished(d: Path) -> bool:
    return worker.point_status(d)[0] in ("done", "failed")


def wait_array(tasks: dict[Path, str]) -> list[str]:
    """Wait until every point of `tasks` ({point directory: its array task id}) is finished and no task of the
    array is left in the queue (module doc). Returns: the leftover tasks it cancelled."""
    arrays = sorted({t.split("_")[0] for t in tasks.values()})
    cancelled: list[str] = []
    gaps = iter(SQUEUE_GAPS)
    next_squeue = time.monotonic() + next(gaps)
    while True:
        done = all(_finished(d) for d in tasks)
        if done or time.monotonic() >= next_squeue:
            q = queued(arrays)
            if q is None and done:  # every point finished, the queue unreadable: nothing left to wait for
                _log("squeue failed: leftover tasks of this array (if any) were not checked")
                return cancelled
            if q is not None:
                for d, t in tasks.items():  # left the queue unfinished (cancelled, node lost): FAILED
                    if t not in q and not _finished(d) and worker.point_status(d)[0] != "running":
                        atomic_write_json(d / "FAILED", {"error": f"slurm task {t} left the queue unfinished"})
                done = all(_finished(d) for d in tasks)
                if done:
                    pending = sorted(t for t, s in q.items() if s not in ACTIVE and t not in cancelled)
                    if pending:
                        _log(f"cancelling {len(pending)} leftover task(s) of finished points: {', '.join(pending)}")
                        cancel(pending)
                        cancelled += pending
                    if not q or set(q) <= set(cancelled):
                        return cancelled
            next_squeue = time.monotonic() + next(gaps, SQUEUE_GAPS[-1])
        time.sleep(POLL_S)


def run_slurm(dirs: list[Path], out: Path, opts: SlurmOptions, name: str) -> bool:
    """Submit one array task per point directory. Returns: whether it waited for the array to finish."""
    executor = make_slurm_executor(out / "slurm", len(dirs), opts, name)
    jobs = executor.map_array(worker.SlurmJob(), [str(d) for d in dirs])
    ids = [j.job_id for j in jobs]
    atomic_write_json(
        out / "slurm_jobs.json", {"submitted": time.time(), "jobs": dict(zip([d.name for d in dirs], ids))}
    )
    _log(
        f"submitted {len(ids)} array tasks ({ids[0].split('_')[0] if ids else '-'}), "
        f"at most {slurm_parameters(len(dirs), opts, name)['slurm_array_parallelism']} at once"
    )
    if opts.wait:
        wait_array(dict(zip(dirs, ids)))
    return opts.wait
