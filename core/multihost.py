"""Several processes, one point (issue 36, item 2): every task of a multi-task job runs the same study (SPMD)
over one mesh of all processes' devices; process 0, the *leader*, alone takes locks and writes the store.

How a job becomes multi-process (`initialize`):
  Slurm       SLURM_JOB_ID set and more than one task (SLURM_NTASKS): `jax.distributed.initialize()` reads
              the coordinator, process count and index from Slurm's environment;
  explicit    OVEROPT_COORDINATOR=host:port, OVEROPT_NUM_PROCESSES=N, OVEROPT_PROCESS_ID=i in every
              process (any launcher: mpirun, torchrun-style scripts, several local processes in a test).
Otherwise JAX stays single-process and nothing here does anything (`processes()` is 1).

The leader decides what is run (a point already DONE, a stage found DONE in the store) and tells the
*followers* through the coordination service's key-value store (`tell`/`hear`); `barrier` waits for every
process. A follower computes the same stages (its share of every sharded computation) into a private
scratch directory outside the store and reads every stage's outputs from the leader's run once stored.
"""

from __future__ import annotations

import itertools
import os

COORDINATOR = "OVEROPT_COORDINATOR"
NUM_PROCESSES = "OVEROPT_NUM_PROCESSES"
PROCESS_ID = "OVEROPT_PROCESS_ID"
TIMEOUT = "OVEROPT_MULTIHOST_TIMEOUT_S"
"""How long a follower waits for the leader's word or a barrier (seconds; default one day: the leader may wait
on a stage another job computes)."""

_seq = itertools.count()


def slurm_tasks(env) -> int:
    """The number of tasks of this Slurm job (1 outside Slurm or on a bad value)."""
    if not env.get("SLURM_JOB_ID"):
        return 1
    raw = env.get("SLURM_NTASKS") or env.get("SLURM_NPROCS") or "1"
    try:
        return max(1, int(raw))
    except ValueError:
        return 1


def explicit(env) -> tuple[str, int, int] | None:
    """(coordinator, processes, index) from the OVEROPT_* variables, None when OVEROPT_COORDINATOR is unset;
    ValueError (one line) when they are incomplete or out of range."""
    coord = env.get(COORDINATOR)
    if not coord:
        return None
    try:
        n, i = int(env.get(NUM_PROCESSES, "")), int(env.get(PROCESS_ID, ""))
    except ValueError:
        raise ValueError(f"{COORDINATOR} is set: {NUM_PROCESSES} and {PROCESS_ID} must be integers") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"{PROCESS_ID}={i} must lie in 0..{n - 1} ({NUM_PROCESSES}={n})")
    return coord, n, i


def initialize(env=None) -> bool:
    """`jax.distributed.initialize` when this job is one of several processes (Slurm with several tasks, or
    the explicit OVEROPT_* variables); returns whether it did. Import JAX only after the environment JAX reads
    at import is set (the compilation cache, XLA_FLAGS)."""
    env = os.environ if env is None else env
    spec = explicit(env)
    if spec is None and slurm_tasks(env) == 1:
        return False
    import jax

    if processes() > 1:  # already initialized (the debug executor runs several points in one process)
        return True
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU devices across processes (tests)
    if spec is None:
        jax.distributed.initialize()  # the coordinator, process count and index from Slurm's environment
    else:
        coord, n, i = spec
        jax.distributed.initialize(coord, num_processes=n, process_id=i)
    return True


def _client():
    from jax._src import distributed

    return distributed.global_state.client


def processes() -> int:
    """The number of processes of this job (1 unless `initialize` joined several); never starts a backend."""
    from jax._src import distributed

    state = distributed.global_state
    return int(state.num_processes or 1) if state.client is not None else 1


def index() -> int:
    """This process's index (0, the leader, when single-process)."""
    from jax._src import distributed

    state = distributed.global_state
    return int(state.process_id or 0) if state.client is not None else 0


def follower() -> bool:
    """Whether this process is one of several and not the leader: it takes no lock and writes no store file."""
    return processes() > 1 and index() != 0


def _timeout_ms() -> int:
    return int(float(os.environ.get(TIMEOUT, 86400)) * 1000)


def tell(name: str, value: str) -> None:
    """Leader: publish `value` under the next key of `name` (every process calls tell/hear in the same order)."""
    _client().key_value_set(f"overopt/{next(_seq)}/{name}", value)


def hear(name: str) -> str:
    """Follower: the value the leader told under the same key (waits for it)."""
    return _client().blocking_key_value_get(f"overopt/{next(_seq)}/{name}", _timeout_ms())


def say(name: str, value: str = "") -> str:
    """`tell` on the leader, `hear` on a follower: every process gets the leader's `value`."""
    if follower():
        return hear(name)
    if processes() > 1:
        tell(name, value)
    return value


def barrier(name: str) -> None:
    """Wait until every process reaches the barrier of the same name and order (a no-op single-process)."""
    if processes() > 1:
        _client().wait_at_barrier(f"overopt/{next(_seq)}/{name}", _timeout_ms())
