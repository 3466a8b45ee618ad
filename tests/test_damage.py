"""Damage to a finished tiny study: `overopt verify` reports it without changing anything; a resume
quarantines the damaged runs, recomputes them and gives points identical to the undamaged study's.

What a resume does, by damage (every one is caught by the run's manifest, core.integrity):
  truncated points.parquet of a BoN stage, truncated pool.npz, deleted proxy checkpoint, same-size
  byte flips (comparisons.npz), a bad middle line of a finished RL run's metrics.jsonl:
      the run is moved whole to DIR/quarantine/<id>-<stamp>/ and recomputed (deterministic here).
  a bad middle line of an unfinished RL run's metrics.jsonl (no DONE, so no manifest; resuming from
  its checkpoint needs that history): exit 2, one line naming the file and the line; nothing rewritten.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil

import pandas as pd
import pytest
from micro import PPO_UPDATES, study_argv

from overopt.cli import main

pytestmark = pytest.mark.slow  # repairs copies of the session's micro study (conftest.micro_study)


def _study(out, *extra):
    return main(study_argv(out, *extra))


@pytest.fixture
def built(micro_study):
    return micro_study


def _run(root, prefix):
    """The first (by name) finished run of a stage: the micro study has several proxy and BoN runs."""
    return sorted((root / "runs").glob(f"{prefix}-*"))[0]


def truncate(path, keep=0.5):
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])


def flip(path):
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 8):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def bad_middle_line(path):
    lines = path.read_bytes().split(b"\n")
    lines[2] = lines[2][: len(lines[2]) // 2]
    path.write_bytes(b"\n".join(lines))


# damage name -> (stage prefix, file in the run, how)
DAMAGE = {
    "bon_points_truncated": ("bon", "points.parquet", truncate),
    "pool_truncated": ("pool", "pool.npz", truncate),
    "proxy_checkpoint_deleted": ("proxy", "proxy/state", lambda p: shutil.rmtree(p)),
    "metrics_middle_line": ("rl", "metrics.jsonl", bad_middle_line),
    "bytes_flipped_same_size": ("labels", "comparisons.npz", flip),
}


def damage(root, name):
    prefix, rel, how = DAMAGE[name]
    run = _run(root, prefix)
    how(run / rel)
    return run


def tree(root):
    """Every path under root: its sha256 (files) and mtime."""
    return {
        str(p): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None, p.lstat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
    }


@pytest.mark.parametrize("name", sorted(DAMAGE))
def test_verify_reports_each_damage_and_changes_nothing(built, tmp_path, capsys, name):
    d = tmp_path / "s"
    shutil.copytree(built, d)
    assert main(["verify", str(d)]) == 0
    capsys.readouterr()
    run = damage(d, name)
    before = tree(tmp_path)
    assert main(["verify", str(d)]) == 1
    out = capsys.readouterr().out.splitlines()
    prefix, rel, _ = DAMAGE[name]
    [line] = [x for x in out if x.startswith("damaged")]
    assert f"runs/{run.name}: {rel}" in line
    assert "1 damaged" in out[-1]
    assert tree(tmp_path) == before


def test_resume_quarantines_recomputes_and_gives_identical_points(built, tmp_path, capsys):
    d = tmp_path / "s"
    shutil.copytree(built, d)
    damaged = {damage(d, name).name for name in DAMAGE}
    (d / "points.parquet").write_bytes(b"PAR1")  # a top-level table too: the finish rewrites it
    capsys.readouterr()
    assert _study(d, "--resume") == 0
    err = capsys.readouterr().err
    for rid in damaged:
        assert f"runs/{rid}: " in err and "recomputing it" in err
    assert "not reproducible" not in err  # each recomputation gave the bytes its manifest recorded
    stamp = re.compile(r"-\d{8}T\d{6}Z(-\d+)?$")
    assert sorted(stamp.sub("", p.name) for p in (d / "quarantine").iterdir()) == sorted(damaged)
    pd.testing.assert_frame_equal(pd.read_parquet(d / "points.parquet"), pd.read_parquet(built / "points.parquet"))
    assert main(["verify", str(d)]) == 0


def test_unfinished_rl_run_with_a_bad_middle_metrics_line_exits_2_and_rewrites_nothing(built, tmp_path, capsys):
    d = tmp_path / "s"
    shutil.copytree(built, d)
    rl = _run(d, "rl")
    (rl / "DONE").unlink()  # interrupted after its last checkpoint: resumable, unverifiable
    (rl / "points.parquet").unlink()
    bad_middle_line(rl / "metrics.jsonl")
    before = (rl / "metrics.jsonl").read_bytes()
    capsys.readouterr()
    assert _study(d, "--resume") == 2
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip() and not x.startswith("[overopt]")]
    assert len(err) == 1 and err[0].startswith("overopt: error: ")
    assert f"runs/{rl.name}/metrics.jsonl: line 3 is not a JSON object" in err[0]
    assert (rl / "metrics.jsonl").read_bytes() == before
    assert json.loads((rl / "checkpoint.json").read_text())["step"] == PPO_UPDATES
