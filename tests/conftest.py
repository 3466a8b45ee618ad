"""What the suite shares: a persistent JAX compilation cache, and session fixtures built once and read by
several test modules (a micro study, a micro sweep, the compiled PPO probe program and its grid run, a best-of-n pool).

Compilation cache: `JAX_COMPILATION_CACHE_DIR` if set (an empty value turns the cache off), else
`<repo>/.pytest_cache/jax`. It is set through the environment before JAX is imported, so every
subprocess a test starts (the entry point, sweep workers, benchmarks) shares it. A cached executable is
the same program: the cache saves compile time and changes no number.

Shared fixtures are read-only: a test that damages, resumes or otherwise writes to a shared study copies
it first (`micro.copy_study`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(ROOT / ".pytest_cache" / "jax"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import jax  # noqa: E402  (after the environment above: JAX reads it at import)
import pytest  # noqa: E402

# submitit configures logging when first imported (`logging.config.dictConfig`): its handler keeps the
# sys.stderr of that moment, and the reconfiguration closes handlers made before it. Imported inside a
# test (`sweeps.worker` imports it), that stream is the test's capsys buffer, which its teardown closes,
# and a later test failed with "I/O operation on closed file" depending on which modules ran before it.
# Imported here, before any capture, it binds the real stderr once for the session.
import submitit  # noqa: E402, F401

if os.environ["JAX_COMPILATION_CACHE_DIR"]:
    Path(os.environ["JAX_COMPILATION_CACHE_DIR"]).mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
    jax.config.update(
        "jax_persistent_cache_min_compile_time_secs", float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"])
    )
    jax.config.update(
        "jax_persistent_cache_min_entry_size_bytes", int(os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"])
    )


# ------------------------------------------------------------------------------- the micro study


@contextlib.contextmanager
def built_once(tmp_path_factory, name: str):
    """A directory for a session fixture's output, built once for the whole run: with pytest-xdist's workers
    (`-n`), the first worker to ask builds it under an flock in the directory all workers' temporary
    directories share, and the others wait, then read it. Yields (directory, whether to build it); a build
    that raised leaves no DONE mark, and the next worker to ask builds it anew."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        yield tmp_path_factory.mktemp(name), True
        return
    root = tmp_path_factory.getbasetemp().parent / "shared" / name
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the lock file closes (or its process dies)
        done = root / "DONE"
        if done.exists():
            yield root, False
            return
        for child in root.iterdir():  # an interrupted build's leftovers
            if child.name != "lock":
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        yield root, True
        done.write_text("built\n")


@pytest.fixture(scope="session")
def micro_study(tmp_path_factory, pytestconfig):
    """`overopt study` at the micro config (`micro.MICRO`), built once for the session (once for all xdist
    workers); read-only."""
    from micro import study_argv

    from overopt.cli import main

    with built_once(tmp_path_factory, "micro") as (root, build):
        out = root / "s"
        if build:
            # built outside the requesting test's capture: a stream the study's libraries keep (a logging
            # handler made on first use) must not be a capsys buffer that the test's teardown closes. Its
            # stderr goes to a log file left open for the session.
            capman = pytestconfig.pluginmanager.getplugin("capturemanager")
            log = open(root / "study.log", "w")  # noqa: SIM115 - open for the session (see above)
            with capman.global_and_fixture_disabled(), contextlib.redirect_stderr(log), contextlib.redirect_stdout(log):
                assert main(study_argv(out)) == 0
            _SESSION_FILES.append(log)
    return out


_SESSION_FILES: list = []
"""Files left open for the session (closed at its end: `pytest_sessionfinish`)."""


def pytest_sessionfinish(session, exitstatus):
    for f in _SESSION_FILES:
        f.close()


# ------------------------------------------------------------------------------- the micro sweep


@pytest.fixture(scope="session")
def sweep_cache(tmp_path_factory) -> Path:
    """The session's persistent compilation cache (above), else one for the session: every sweep's `--jax-cache`."""
    shared = os.environ.get("JAX_COMPILATION_CACHE_DIR")
    return Path(shared) if shared else tmp_path_factory.mktemp("jax_cache")


@pytest.fixture(scope="session")
def micro_sweep_spec(tmp_path_factory) -> Path:
    """The micro sweep's spec (`micro.sweep_spec`: 3 points, one per KL coefficient)."""
    from micro import sweep_spec

    return sweep_spec(tmp_path_factory.mktemp("spec") / "micro.toml")


@pytest.fixture(scope="session")
def micro_sweep(micro_sweep_spec, sweep_cache, tmp_path_factory) -> Path:
    """The micro sweep run by the debug executor (in this process), built once for the session (once for all
    xdist workers); read-only."""
    from sweeps import launch

    with built_once(tmp_path_factory, "ref") as (root, build):
        out = root / "sweep"
        if build:
            assert launch.launch(micro_sweep_spec, out, executor="debug", jax_cache=sweep_cache, figures=False) == 0
    return out


# ------------------------------------------------------------------- the PPO probe (tests/ppo_probe.py)


@pytest.fixture(scope="session")
def probe_policy():
    """The probe's initial policy (graphdef, state): one compiled PPO program for every user."""
    from ppo_probe import make_policy

    return make_policy()


@pytest.fixture(scope="session")
def probe_grid_run(probe_policy):
    """`runner.train_grid` of the probe config (CFG, GRID: 40 updates, evaluations every 10); read-only."""
    from ppo_probe import CFG, GOLD, GRID, REWARD, make_bank

    from rl import runner

    return runner.train_grid(probe_policy, REWARD, GOLD, make_bank(), CFG, GRID)


# ---------------------------------------------------------------------------------- a best-of-n pool


@pytest.fixture(scope="session")
def bon_pool():
    """A best-of-n pool of 3 prompts x 32 responses from a random one-layer policy in the default world,
    gold-scored: (world, gold RM, pool, BonConfig). Read-only."""
    from bon.pools import BonConfig, make_pool
    from gold_rm.gold import GoldRM
    from gold_rm.world import World, WorldConfig
    from lm.model import ModelConfig, init

    world = World(WorldConfig())
    gold = GoldRM(world)
    cfg = ModelConfig(vocab_size=world.vocab_size, n_ctx=world.seq_len, n_layer=1, d_model=16, n_head=2)
    graphdef, state = init(cfg, 0)
    bcfg = BonConfig(n_prompts=3, pool_size=32, batch_size=48)
    return world, gold, make_pool(world, gold, graphdef, state, bcfg, progress=False), bcfg


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs():
    """Drop JAX's in-memory compiled programs after each test module. One process runs the whole suite, and
    every CPU executable keeps its own memory mappings. Without this, XLA's compiler crashed with a segmentation
    fault at the same late test in two full runs (test_text_world, passing alone); with it the process holds
    2k-11k mappings (the kernel's limit, vm.max_map_count, is 65530 here). Programs compiled again later come
    from the persistent cache above."""
    yield
    jax.clear_caches()
