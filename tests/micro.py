"""The micro study: the tiny-flattery preset (the first `tiny`) shrunk to seconds (two proxy sizes, a data-size
point, an ensemble of two, PPO against one proxy on a 2 x 3 grid). `conftest.micro_study` builds it once for the
session."""

from __future__ import annotations

from pathlib import Path

MICRO = [
    "policy.n_layer=1",
    "policy.d_model=32",
    "policy.corpus_size=2000",
    "policy.pretrain.steps=60",
    "labels.n_comparisons=800",
    "labels.n_init_samples=256",
    'ladder.sizes=[{"name":"rm-a","n_layer":1,"d_model":8,"n_head":2},{"name":"rm-b","n_layer":1,"d_model":16,"n_head":2}]',
    "ladder.ensemble_size=2",
    "ladder.data_sizes=[300]",
    "bon.n_prompts=4",
    "bon.pool_size=64",
    "rl.ppo.updates=6",
    "rl.ppo.eval_every=2",
    "rl.ppo.epochs=1",
    "rl.ppo.minibatches=1",
    "rl.ppo.fast_compile=true",
    "rl.ppo.batch_size=16",
    "rl.ppo.eval_batch=32",
    "rl.kl_coefs=[0.0,0.1]",
    "rl.proxies=['rm-b']",
]
PPO_UPDATES = 6  # rl.ppo.updates above: the last checkpoint of a finished RL run


def study_argv(out, *extra) -> list[str]:
    """`overopt study` argv for the micro study in `out` (extra arguments appended)."""
    args = ["study", "--preset", "tiny-flattery", "--out", str(out), "--no-progress"]
    for o in MICRO:
        args += ["--set", o]
    return args + [str(e) for e in extra]


def copy_study(src, dst):
    """A private copy of a shared study directory (for a test that resumes, damages or writes to it);
    file times are kept, so a test can tell whether a run was redone."""
    import shutil

    shutil.copytree(src, dst, symlinks=True)
    return dst


# ---------------------------------------------------------------------------------- the micro sweep

SMOKE = Path(__file__).resolve().parents[1] / "sweeps" / "specs" / "smoke.toml"
SWEEP_KL = (0.0, 0.1, 0.3)
"""The micro sweep: smoke.toml with one proxy size (rm-a), PPO for 6 updates, one point per KL coefficient, so
its points share every stage but PPO. `conftest.micro_sweep` runs it with the debug executor (the reference of
tests/test_sweep_kill.py and tests/test_slurm_real.py)."""


def sweep_spec(path, kls=SWEEP_KL):
    """Write the micro sweep's spec (one point per coefficient in `kls`) to `path`; returns `path`. A point's id
    depends on its config only, so a spec of fewer coefficients names the same points as the full one."""
    base = SMOKE.read_text().split("[axes]")[0].replace("updates = 10", "updates = 6")
    assert "updates = 6" in base
    axes = '[axes]\n"ladder.sizes" = [[{ name = "rm-a", n_layer = 1, d_model = 8, n_head = 2 }]]\n'
    axes += '"rl.kl_coefs" = [' + ", ".join(f"[{k}]" for k in kls) + "]\n"
    path.write_text(base + axes)
    return path


def same_points(a, b) -> None:
    """Two points tables hold the same rows: the same columns and run ids, numbers within rtol 1e-6."""
    import numpy as np
    import pandas as pd

    assert list(a.columns) == list(b.columns) and len(a) == len(b)
    assert list(a["run_id"]) == list(b["run_id"])
    for col in a.columns:
        if pd.api.types.is_numeric_dtype(a[col]):
            np.testing.assert_allclose(
                a[col].to_numpy(float), b[col].to_numpy(float), rtol=1e-6, atol=1e-9, equal_nan=True, err_msg=col
            )
        else:
            assert a[col].astype(str).tolist() == b[col].astype(str).tolist(), col
