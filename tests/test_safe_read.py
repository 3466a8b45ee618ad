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
