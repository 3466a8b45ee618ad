"""Readers do not trust what they open (core.safe_read), as a class: a FIFO, an endless device behind a
symlink, a directory or an oversized file where a JSON file should be is refused at once; an integer of any
length is invalid JSON, never an internal error."""

from __future__ import annotations

import json
import os
import time

import pytest

from core import safe_read
from core.errors import UsageError
from core.integrity import read_done
from core.store import read_metrics
from overopt.cli import main


def test_special_files_and_limits(tmp_path):
    os.mkfifo(tmp_path / "fifo.json")
    os.symlink("/dev/zero", tmp_path / "zero.json")
    (tmp_path / "dir.json").mkdir()
    t0 = time.time()
    for name, kind in (("fifo.json", "FIFO"), ("zero.json", "device"), ("dir.json", "directory")):
        with pytest.raises(UsageError, match=kind):
            safe_read.read_json(tmp_path / name)
    assert time.time() - t0 < 5  # nothing blocked, nothing read without end
    (tmp_path / "big.json").write_text("[" + "0," * 600 + "0]")
    with pytest.raises(UsageError, match="more than the 1,000 bytes"):
        safe_read.read_json(tmp_path / "big.json", limit=1000)
    assert safe_read.read_json(tmp_path / "big.json") == [0] * 601
    (tmp_path / "int.json").write_text('{"step": ' + "9" * 5000 + "}")
    with pytest.raises(json.JSONDecodeError):
        safe_read.read_json(tmp_path / "int.json")
    assert safe_read.loads('{"a": 12345678901234567890}') == {"a": 12345678901234567890}


def test_a_run_marker_that_is_a_fifo_or_a_huge_integer_is_damage_not_a_hang(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    os.mkfifo(run / "DONE")
    with pytest.raises(ValueError, match="FIFO"):
        read_done(run)
    (run / "DONE").unlink()
    (run / "DONE").write_text('{"n": ' + "1" * 5000 + "}")
    with pytest.raises(ValueError):
        read_done(run)


def test_a_metrics_line_with_a_huge_integer_is_damage_not_an_internal_error(tmp_path):
    """metrics.jsonl (read by a resumed study): json.loads raises a plain ValueError, not a JSONDecodeError, for
    an integer beyond Python's 4,300 digits; the line is damage named by its number, as any other bad line."""
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": ' + "9" * 5000 + '}\n{"step": 3}\n')
    with pytest.raises(UsageError, match="line 2 is not a JSON object"):
        read_metrics(path)
    path.write_text('{"step": 1}\n{"step": ' + "9" * 5000)  # as the torn last line: left out, said
    rows, torn = read_metrics(path, warn=False)
    assert rows == [{"step": 1}] and torn is not None
    with pytest.raises(json.JSONDecodeError, match="an integer of 5000 digits"):
        safe_read.loads('{"kl": ' + "9" * 5000 + "}")


def test_verify_and_sweep_status_on_special_files(tmp_path, capsys):
    study = tmp_path / "s"
    (study / "runs").mkdir(parents=True)
    os.symlink("/dev/zero", study / "study.json")
    t0 = time.time()
    code = main(["verify", str(study)])
    assert code in (0, 1, 2) and time.time() - t0 < 20
    capsys.readouterr()
    sweep = tmp_path / "w"
    sweep.mkdir()
    os.mkfifo(sweep / "sweep.json")
    t0 = time.time()
    assert main(["sweep", "status", str(sweep)]) == 2 and time.time() - t0 < 20  # refused, not blocked
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def _finished_run(tmp_path):
    from core.store import Run

    run = Run.open(tmp_path / "runs", {"x": 1}, prefix="r")
    (run.path / "table.json").write_text('{"a": 1}')
    run.mark_done({})
    return run.path


@pytest.mark.parametrize(
    "entry,problem",
    [
        ({"../../etc/passwd": {"size": 1, "sha256": "0"}}, "plain relative path"),
        ({"/etc/passwd": {"size": 1, "sha256": "0"}}, "plain relative path"),
        ({"table.json": "garbage"}, "integer size"),
        ({"table.json": {"size": True, "sha256": "0"}}, "integer size"),
        ({"link": {"size": 1, "sha256": "0"}}, "outside its run"),
        ({}, "not in the manifest"),  # a forged empty list guards nothing: the table is reported
    ],
)
def test_manifests_are_validated(tmp_path, entry, problem):
    """Manifest entries inside their run, well-formed, and every guarded file listed (core.integrity)."""
    from core.integrity import run_status

    path = _finished_run(tmp_path)
    assert run_status(path)[0] == "ok"
    os.symlink("/etc", path / "link")
    done = json.loads((path / "DONE").read_text())
    done["manifest"]["files"] = entry
    (path / "DONE").write_text(json.dumps(done))
    status, problems = run_status(path)
    assert status == "damaged" and any(problem in p for _, p in problems), problems


def test_verify_reports_runs_as_a_file_symlinked_runs_and_empty_points(tmp_path, capsys):
    study = tmp_path / "s"
    study.mkdir()
    (study / "runs").write_text("not a directory")
    assert main(["verify", str(study)]) == 1 and "not a directory" in capsys.readouterr().out
    (study / "runs").unlink()
    _finished_run(study)
    os.symlink(tmp_path, study / "runs" / "elsewhere")
    import pandas as pd

    pd.DataFrame({"kl": []}).to_parquet(study / "points.parquet")
    assert main(["verify", str(study)]) == 1
    out = capsys.readouterr().out
    assert "runs/elsewhere: a symbolic link" in out and "points.parquet: no rows" in out


def test_store_and_sweep_readers_never_block_and_links_are_damage(tmp_path, capsys):
    """Class 3, 4, 5: FIFO markers do not hang `sweep status`; a dangling or escaping link at DONE or a top
    table is damage for `verify`; a symlinked run directory is reported by `sweep status`."""
    from core.store import Run

    w = tmp_path / "w"
    (w / "points" / "p1").mkdir(parents=True)
    (w / "runs").mkdir()
    (w / "sweep.json").write_text('{"points": [{"id": "p1", "values": {}}]}')
    os.mkfifo(w / "points" / "p1" / "FAILED")
    os.symlink(tmp_path, w / "runs" / "linked")
    t0 = time.time()
    assert main(["sweep", "status", str(w)]) == 0 and time.time() - t0 < 10
    out = capsys.readouterr().out
    assert "FAILED marker is not a regular file" in out and "runs/linked: a symbolic link" in out
    s = tmp_path / "s"
    run = Run.open(s / "runs", {"x": 1}, prefix="r")
    run.mark_done({})
    (s / "study.json").write_text(json.dumps({"runs": [run.id]}))
    assert main(["verify", str(s)]) == 0
    capsys.readouterr()
    (run.path / "DONE").unlink()
    os.symlink("nowhere", run.path / "DONE")
    os.symlink("/etc/hostname", s / "fits.json")
    assert main(["verify", str(s)]) == 1
    out = capsys.readouterr().out
    assert "DONE: unreadable: a symbolic link to nothing" in out and "fits.json: a symbolic link out of" in out


def test_ingest_reads_are_bounded_regular_file_reads(tmp_path, capsys):
    """Class 6: a FIFO or /dev/zero given as a trainer log or a table is one stderr line and exit 2, never a hang."""
    os.mkfifo(tmp_path / "log.jsonl")
    os.symlink("/dev/zero", tmp_path / "z.csv")
    os.mkfifo(tmp_path / "p.parquet")
    t0 = time.time()
    for name, kind in (("log.jsonl", "FIFO"), ("z.csv", "device"), ("p.parquet", "FIFO")):
        assert main(["fit", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert kind in err and len(err.strip().splitlines()) == 1
    assert time.time() - t0 < 20
