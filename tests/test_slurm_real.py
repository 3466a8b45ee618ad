"""A real Slurm (issue 36, item 6): the smoke sweep through `--executor slurm --wait` on whatever Slurm
answers here (`.ci/slurm-up` starts a one-node one where slurm-wlm and munge are installed). Skipped, with
the reason, where `sinfo` does not answer. Run once on the development machine after `.ci/slurm-up` installed
and started Slurm (Debian 12, slurm-wlm 22.05.8): passed in 238 s on 2 cores under a load of 12."""

import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _slurm_reason() -> str | None:
    if shutil.which("sinfo") is None:
        return "no Slurm here: sinfo is not on PATH (.ci/slurm-up starts one where slurm-wlm is installed)"
    try:
        r = subprocess.run(["sinfo", "-h"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"sinfo failed: {e}"
    return None if r.returncode == 0 else f"sinfo exit {r.returncode}: {r.stderr.strip()[:200]}"


REASON = _slurm_reason()


@pytest.mark.skipif(REASON is not None, reason=str(REASON))
def test_smoke_sweep_through_slurm(tmp_path):
    from overopt.cli import main
    from sweeps.spec import expand, load_spec

    spec = ROOT / "sweeps" / "specs" / "smoke.toml"
    out = tmp_path / "sweep"
    args = ["sweep", "launch", str(spec), "--out", str(out), "--executor", "slurm", "--wait", "--gpus-per-job", "0"]
    assert main(args + ["--cpus-per-task", "1", "--no-figures"]) == 0
    ids = [p.id for p in expand(load_spec(spec))]
    assert all((out / "points" / i / "DONE").exists() for i in ids)
    assert len(pd.read_parquet(out / "points.parquet")) > 0
