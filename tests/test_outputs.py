"""Outputs go to regular files only, never over one of the command's inputs (core.outputs), as a class:
one check in `core.store.atomic_write_bytes`, the CLI protecting every verb's positional inputs."""

from __future__ import annotations

import os

import numpy as np
import pytest

from core.errors import UsageError
from core.outputs import check_output, protect_inputs
from core.store import atomic_write_text
from overopt.cli import main


def _samples(path):
    rng = np.random.default_rng(0)
    rows = [f"p{p},{rng.random()},{rng.random()}" for p in range(3) for _ in range(8)]
    path.write_text("prompt,proxy,gold\n" + "\n".join(rows) + "\n")
    return path


def test_check_output_by_kind(tmp_path):
    check_output(tmp_path / "absent.json")  # absent: fine
    (tmp_path / "f.json").write_text("{}")
    check_output(tmp_path / "f.json")  # an existing regular file is replaced
    os.symlink(tmp_path / "f.json", tmp_path / "link.json")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    for name, kind in (("link.json", "symbolic link"), ("fifo", "FIFO"), ("dir", "directory")):
        with pytest.raises(UsageError, match=kind):
            atomic_write_text(tmp_path / name, "x")
    with pytest.raises(UsageError, match="device"):
        check_output("/dev/null")
    assert (tmp_path / "f.json").read_text() == "{}" and os.path.islink(tmp_path / "link.json")
    with protect_inputs([tmp_path / "f.json"]):
        with pytest.raises(UsageError, match="inputs"):
            atomic_write_text(tmp_path / "f.json", "x")
    atomic_write_text(tmp_path / "f.json", "y")  # outside the block it is an ordinary file again
    assert (tmp_path / "f.json").read_text() == "y"


def test_verbs_never_write_over_an_input_or_a_special_file(tmp_path, capsys):
    s = _samples(tmp_path / "s.csv")
    before = s.read_bytes()
    assert main(["bon", str(s), "--json", str(s)]) == 2
    assert "one of this command's inputs" in capsys.readouterr().err and s.read_bytes() == before
    os.mkfifo(tmp_path / "ff")
    assert main(["bon", str(s), "--json", str(tmp_path / "ff")]) == 2  # refused, not blocked on the FIFO
    assert "FIFO" in capsys.readouterr().err
    out = tmp_path / "out.json"
    assert main(["bon", str(s), "--json", str(out)]) == 0 and main(["bon", str(s), "--json", str(out)]) == 0
    capsys.readouterr()
    assert main(["fit", str(out), "--json", str(out)]) == 2  # fit reading bon's output, told to write over it
    assert "inputs" in capsys.readouterr().err
    assert main(["fit", f"{out}:bon", "--json", str(out)]) == 2  # the ":bon" suffix names the same input
    capsys.readouterr()


def test_outputs_checked_before_any_work_and_never_over_an_input_directory(tmp_path, capsys):
    """Class 1 and 2: a bad output is refused up front (one stderr line, nothing printed before it), and a file
    inside an input directory (study/points.parquet) is an input, even behind a hard link."""
    s = _samples(tmp_path / "s.csv")
    os.mkfifo(tmp_path / "ff")
    assert main(["bon", str(s), "--points", str(tmp_path / "ff")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and "FIFO" in err
    study = tmp_path / "study"
    study.mkdir()
    (study / "points.csv").write_text("method,kl,gold\n" + "".join(f"bon,{k},{0.1 * k}\n" for k in range(6)))
    os.link(study / "points.csv", tmp_path / "hard.json")
    before = (study / "points.csv").read_bytes()
    for target in (study / "points.csv", tmp_path / "hard.json"):
        assert main(["fit", str(study), "--n-boot", "0", "--json", str(target)]) == 2
        out, err = capsys.readouterr()
        assert out == "" and "inputs" in err and len(err.strip().splitlines()) == 1
    assert (study / "points.csv").read_bytes() == before
    for verb in (["figures", str(study), "--out"], ["study", "--out"], ["sweep", "launch", str(s), "--out"]):
        assert main([*verb, str(tmp_path / "ff")]) == 2  # an output directory that is a FIFO: refused at once
        assert "FIFO" in capsys.readouterr().err
