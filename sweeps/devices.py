"""Which devices each local sweep worker sees (issue 36, item 3).

On a machine with accelerators the local executor runs one worker per device group: `--devices-per-point N`
splits the visible GPUs into groups of N consecutive ones (a remainder smaller than N stays unused), and
each worker process gets `CUDA_VISIBLE_DEVICES` set to its group, so two workers never share a device, and
`XLA_PYTHON_CLIENT_PREALLOCATE=false` (JAX would otherwise take 75% of each device it sees at start-up),
unless the caller's environment already sets `XLA_PYTHON_CLIENT_MEM_FRACTION` or `XLA_PYTHON_CLIENT_PREALLOCATE`
(then theirs is kept). Inside a worker, `core.mesh.job_mesh` shards its point over the N devices it sees.

On a CPU-only machine (no GPU found) the environment is left as it is and the pool size is today's
`--max-parallel` (default half the cores): the behaviour before this module.

GPUs are found without importing JAX in the launcher (it would take device memory there): the
`CUDA_VISIBLE_DEVICES` of the launcher when set (its entries, ids or UUIDs, in order; empty means none),
else `nvidia-smi --query-gpu=index`, else none. Only NVIDIA GPUs are handled; TPU hosts and ROCm
(`HIP_VISIBLE_DEVICES`) are not built.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from core.errors import UsageError

VISIBLE = "CUDA_VISIBLE_DEVICES"
MEMORY_VARS = ("XLA_PYTHON_CLIENT_PREALLOCATE", "XLA_PYTHON_CLIENT_MEM_FRACTION")


def detect_gpus(env: Mapping[str, str] | None = None, smi: Callable[[], str | None] | None = None) -> list[str]:
    """The GPU ids this launcher may hand out: its CUDA_VISIBLE_DEVICES entries when set, else the indices
    `nvidia-smi` lists (smi: a stand-in for tests returning its output, or None when absent), else []."""
    env = os.environ if env is None else env
    if VISIBLE in env:
        return [d.strip() for d in env[VISIBLE].split(",") if d.strip() and d.strip() != "-1"]
    text = (smi or _nvidia_smi)()
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def _nvidia_smi() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        r = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout if r.returncode == 0 else None


def device_groups(gpus: Sequence[str], per_point: int) -> list[tuple[str, ...]]:
    """`gpus` in groups of `per_point` consecutive ids (the remainder unused). UsageError when per_point < 1
    or more than the GPUs there are."""
    if per_point < 1:
        raise UsageError(f"--devices-per-point must be at least 1, got {per_point}")
    if per_point > len(gpus):
        raise UsageError(f"--devices-per-point {per_point}: only {len(gpus)} GPU(s) visible here ({list(gpus)})")
    return [tuple(gpus[i : i + per_point]) for i in range(0, len(gpus) - per_point + 1, per_point)]


def worker_env(group: Sequence[str] | None, base: Mapping[str, str]) -> dict[str, str]:
    """The environment of a worker on device `group` (None: CPU only, `base` unchanged)."""
    env = dict(base)
    if group is None:
        return env
    env[VISIBLE] = ",".join(group)
    if not any(v in base for v in MEMORY_VARS):
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    return env


def worker_slots(
    per_point: int | None,
    max_parallel: int | None,
    default_parallel: int,
    base: Mapping[str, str] | None = None,
    gpus: Sequence[str] | None = None,
) -> list[dict[str, str]]:
    """One environment per local worker. With GPUs (`gpus`, default `detect_gpus()`): one per device group
    (at most max_parallel of them). Without: max_parallel (default `default_parallel`) copies of `base`;
    per_point other than None or 1 is then a UsageError (there is no device to give)."""
    base = os.environ if base is None else base
    gpus = detect_gpus(base) if gpus is None else list(gpus)
    if not gpus:
        if per_point not in (None, 1):
            raise UsageError(f"--devices-per-point {per_point}: no GPU visible here (CPU only)")
        return [worker_env(None, base)] * (max_parallel or default_parallel)
    groups = device_groups(gpus, per_point or 1)
    return [worker_env(g, base) for g in groups[: max_parallel or len(groups)]]


def run_pool(
    dirs: Sequence[Path], command: Callable[[Path], list[str]], slots: Sequence[dict[str, str]], report: Callable
) -> None:
    """Run `command(d)` for every point directory, at most one process per slot at a time, each with its
    slot's environment (a slot is taken while its process runs, so no two share a device); logs to
    d/worker.log. report(d, returncode, seconds, i, n) after each."""
    free: queue.Queue = queue.Queue()
    for s in slots:
        free.put(s)

    def job(d: Path):
        env = free.get()
        try:
            t0 = time.time()
            with open(d / "worker.log", "ab") as log:
                rc = subprocess.run(
                    command(d), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
                ).returncode
            return d, rc, time.time() - t0
        finally:
            free.put(env)

    with ThreadPoolExecutor(max_workers=len(slots)) as pool:
        futures = [pool.submit(job, d) for d in dirs]
        for i, fut in enumerate(as_completed(futures)):
            d, rc, dt = fut.result()
            report(d, rc, dt, i, len(dirs))
