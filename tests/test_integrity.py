"""Integrity of finished runs (core.integrity, core.store.stage_run) and strict metrics reading."""

from __future__ import annotations

import json
import re
import threading
from argparse import Namespace

import pandas as pd
import pytest
from locks import wait_until_blocked

from core import integrity
from core.errors import UsageError
from core.integrity import check_run, check_tree, lock_dir, quarantine, run_status
from core.store import Run, read_metrics, stage_run


def snapshot(root):
    """Every path under root with its bytes (files) and mtime: what 'changes nothing' compares."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[str(p)] = (p.read_bytes() if p.is_file() and not p.is_symlink() else None, st.st_mtime_ns)
    return out


def finished(root, config, prefix="bon", payload=b"x" * 100):
    r = Run.open(root, config, prefix=prefix)
    (r.path / "sub").mkdir(exist_ok=True)
    (r.path / "sub" / "data.bin").write_bytes(payload)
    r.log({"loss": 1.0}, step=1)
    r.write_points(pd.DataFrame({"kl": [0.0, 1.0], "gold": [0.0, 0.5]}))
    r.mark_done({"seconds": 1.0})
    return r


def test_done_holds_a_manifest_of_every_guarded_file(tmp_path):
    r = finished(tmp_path / "runs", {"a": 1})
    for name in (".lock", "RUNNING", "FAILED", "worker.log"):
        (r.path / name).write_text("volatile")
    (r.path / ".points.parquet.123.tmp").write_text("staging")
    done = json.loads((r.path / "DONE").read_text())
    assert done["seconds"] == 1.0
    m = done["manifest"]
    assert m["format"] == "overopt-manifest/1" and m["algorithm"] == "sha256"
    assert sorted(m["files"]) == ["config.json", "metrics.jsonl", "points.parquet", "sub/data.bin"]
    assert m["files"]["sub/data.bin"]["size"] == 100 and len(m["files"]["sub/data.bin"]["sha256"]) == 64
    assert check_run(r.path) == [] and run_status(r.path) == ("ok", [])


@pytest.mark.parametrize(
    "damage, needle",
    [
        (lambda p: (p / "points.parquet").unlink(), "points.parquet: missing"),
        (lambda p: (p / "points.parquet").write_bytes(b"PAR1" * 5), "points.parquet: size 20"),
        (lambda p: (p / "sub" / "data.bin").write_bytes(b"y" + b"x" * 99), "sub/data.bin: sha256 differs"),
        (lambda p: (p / "DONE").write_text('{"manif'), "DONE: unreadable"),
        (lambda p: (p / "DONE").write_text('{"manifest": 3}'), "DONE: unreadable: its manifest is malformed"),
        (lambda p: ((p / "sub" / "data.bin").unlink(), (p / "sub" / "data.bin").mkdir()), "not a regular file"),
    ],
)
def test_each_damage_is_found_and_checking_changes_nothing(tmp_path, damage, needle):
    root = tmp_path / "runs"
    r = finished(root, {"a": 1})
    ok = finished(root, {"a": 2})
    damage(r.path)
    before = snapshot(tmp_path)
    assert any(needle in line for line in check_run(r.path)), check_run(r.path)
    rows = check_tree(root)
    assert rows and {x["run"] for x in rows} == {f"runs/{r.id}"} and {x["status"] for x in rows} == {"damaged"}
    assert check_run(ok.path) == []
    assert snapshot(tmp_path) == before  # no lock file, no marker, no mtime touched


def test_legacy_done_without_manifest_is_unverified_and_reused_as_is(tmp_path):
    root, q = tmp_path / "runs", tmp_path / "quarantine"
    r = finished(root, {"a": 1})
    (r.path / "DONE").write_text("{}")
    (r.path / "points.parquet").write_bytes(b"garbage")
    assert run_status(r.path)[0] == "unverified"
    assert check_tree(root) == [
        {
            "run": f"runs/{r.id}",
            "file": "DONE",
            "problem": check_run(r.path)[0].split(": ", 1)[1],
            "status": "unverified",
        }
    ]
    with stage_run(root, {"a": 1}, "bon", q) as run:
        assert run.done  # trusted as before manifests existed: not quarantined, not rewritten
    assert not q.exists() and (r.path / "DONE").read_text() == "{}"


def _compute(root, q, config, prefix, payload, logs, calls):
    with stage_run(root, config, prefix, q, log=logs.append) as run:
        if not run.done:
            calls.append(run.id)
            finished(root, config, prefix, payload)
    return run


def test_damaged_run_is_quarantined_whole_and_recomputed(tmp_path):
    root, q = tmp_path / "runs", tmp_path / "quarantine"
    logs, calls = [], []
    r = _compute(root, q, {"a": 1}, "pool", b"x" * 100, logs, calls)
    dep = finished(root, {"pool": r.id}, "bon")
    (r.path / "sub" / "data.bin").write_bytes(b"x" * 10)
    again = _compute(root, q, {"a": 1}, "pool", b"x" * 100, logs, calls)
    assert calls == [r.id, r.id] and again.path == r.path and check_run(r.path) == []
    [moved] = list(q.iterdir())
    assert moved.name.startswith(f"{r.id}-") and (moved / "sub" / "data.bin").read_bytes() == b"x" * 10
    assert len(logs) == 1 and f"runs/{r.id}: sub/data.bin: size 10 bytes" in logs[0] and str(moved) in logs[0]
    assert check_run(dep.path) == [] and dep.path.exists()  # reproduced: its dependents stay


def test_unreadable_done_is_recomputed(tmp_path):
    root, q = tmp_path / "runs", tmp_path / "quarantine"
    logs, calls = [], []
    r = _compute(root, q, {"a": 1}, "pool", b"x" * 100, logs, calls)
    (r.path / "DONE").write_bytes(b"\xff\xfe")
    _compute(root, q, {"a": 1}, "pool", b"x" * 100, logs, calls)
    assert len(calls) == 2 and check_run(r.path) == [] and "DONE: unreadable" in logs[0]


def test_a_recomputation_that_differs_quarantines_what_was_computed_from_the_old_copy(tmp_path):
    root, q = tmp_path / "runs", tmp_path / "quarantine"
    logs, calls = [], []
    a = _compute(root, q, {"a": 1}, "pool", b"x" * 100, logs, calls)
    b = finished(root, {"pool": a.id, "k": 1}, "bon")
    c = finished(root, {"bon": b.id}, "rl")  # depends on a through b
    other = finished(root, {"a": 2}, "pool")
    (a.path / "points.parquet").unlink()
    _compute(root, q, {"a": 1}, "pool", b"z" * 100, logs, calls)  # not the bytes the manifest recorded
    assert "sub/data.bin differs from the damaged copy's manifest" in logs[1] and "2 run(s)" in logs[1]
    assert not b.path.exists() and not c.path.exists() and other.path.exists()
    stamp = re.compile(r"-\d{8}T\d{6}Z(-\d+)?$")
    assert sorted(stamp.sub("", p.name) for p in q.iterdir()) == sorted([a.id, b.id, c.id])
    assert integrity.dependents(root, a.id) == []


def test_a_run_that_cannot_be_moved_away_is_a_one_line_usage_error(tmp_path):
    root = tmp_path / "runs"
    r = finished(root, {"a": 1}, "pool")
    (r.path / "points.parquet").write_bytes(b"")
    q = tmp_path / "quarantine"
    q.write_text("a file where the quarantine should go")
    with pytest.raises(UsageError, match=rf"^runs/{r.id}: points.parquet: size 0 bytes.*cannot be recomputed$"):
        with stage_run(root, {"a": 1}, "pool", q):
            pass
    assert (r.path / "points.parquet").read_bytes() == b""  # left where it was, reported


def test_quarantine_names_never_collide(tmp_path):
    q = tmp_path / "q"
    for _ in range(3):
        d = tmp_path / "runs" / "bon-1"
        d.mkdir(parents=True)
        quarantine(d, q)
    assert len(list(q.iterdir())) == 3


def test_a_waiter_on_a_quarantined_run_locks_the_new_one(tmp_path):
    path = tmp_path / "runs" / "pool-1"
    path.mkdir(parents=True)
    order = []

    def waiter():
        with lock_dir(path):
            order.append("waiter")
            order.append((path / ".lock").stat().st_ino)

    with lock_dir(path):
        t = threading.Thread(target=waiter)
        t.start()
        wait_until_blocked(path / ".lock", gave_up=lambda: bool(order))  # the waiter waits on the old lock file
        quarantine(path, tmp_path / "q")
        path.mkdir()
        (path / ".lock").touch()
        order.append("mover")
    t.join(5)
    assert order[:2] == ["mover", "waiter"] and order[2] == (path / ".lock").stat().st_ino


# ------------------------------------------------------------------------------------------ metrics


def test_only_a_torn_last_line_is_tolerated(tmp_path, capsys):
    r = Run.open(tmp_path, {"a": 1})
    r.log({"x": 1}, step=1)
    r.log({"x": 2}, step=2)
    p = r.path / "metrics.jsonl"
    with open(p, "ab") as f:
        f.write(b'{"x": 3, "st')
    assert r.metrics() == [{"x": 1, "step": 1}, {"x": 2, "step": 2}]
    assert "torn last line 3 skipped" in capsys.readouterr().err
    r.log({"x": 4}, step=3)  # the torn fragment is cut off first, not glued to the new row
    assert read_metrics(p, warn=False) == ([{"x": 1, "step": 1}, {"x": 2, "step": 2}, {"x": 4, "step": 3}], None)
    lines = p.read_bytes().split(b"\n")
    lines[1] = b'{"x": 2, "st'
    p.write_bytes(b"\n".join(lines))
    before = p.read_bytes()
    with pytest.raises(UsageError, match=r"metrics.jsonl: line 2 is not a JSON object"):
        r.metrics()
    assert p.read_bytes() == before


def test_a_whole_last_row_without_its_newline_is_kept(tmp_path):
    r = Run.open(tmp_path, {"a": 1})
    p = r.path / "metrics.jsonl"
    p.write_bytes(b'{"x": 1}\n\n[1, 2]\n')
    with pytest.raises(UsageError, match="line 3"):  # valid JSON but not a row
        r.metrics()
    p.write_bytes(b'{"x": 1}\n{"x": 2}')
    assert r.metrics() == [{"x": 1}, {"x": 2}]
    r.log({"x": 3})
    assert r.metrics() == [{"x": 1}, {"x": 2}, {"x": 3}]
    p.write_bytes(b'{"x": 1}\n\xff\xfe\n')
    with pytest.raises(UsageError, match="line 2"):
        r.metrics()


# ------------------------------------------------------------------------------------------ verify


def test_verify_reports_without_changing_anything(tmp_path, capsys):
    from overopt import verify

    root = tmp_path / "study"
    good = finished(root / "runs", {"a": 1})
    bad = finished(root / "runs", {"a": 2})
    legacy = finished(root / "runs", {"a": 3})
    (legacy.path / "DONE").write_text("{}")
    (root / "study.json").write_text(json.dumps({"runs": [good.id, "bon-gone"]}))
    (root / "fits.json").write_text("{}")
    assert verify.run(Namespace(dir=str(root))) == 1
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith("unverified") and legacy.id in line for line in out)
    assert any(line.startswith("damaged") and "runs/bon-gone: missing, named by study.json" in line for line in out)
    assert "3 runs: 2 verified, 1 unverified, 0 damaged" in out[-1]
    (bad.path / "points.parquet").write_bytes(b"PAR1")
    (root / "points.parquet").write_bytes(b"PAR1 not a table")
    (root / "study.json").write_text(json.dumps({"runs": [good.id]}))
    before = snapshot(tmp_path)
    assert verify.run(Namespace(dir=str(root))) == 1
    out = capsys.readouterr().out.splitlines()
    assert any(f"runs/{bad.id}: points.parquet: size 4 bytes" in line for line in out)
    assert any(line.startswith("damaged") and "points.parquet: unreadable" in line for line in out)
    assert snapshot(tmp_path) == before
    (root / "points.parquet").unlink()
    bad.mark_done()  # the run as it is now: verified
    assert verify.run(Namespace(dir=str(root))) == 0
    with pytest.raises(UsageError, match="not a directory"):
        verify.run(Namespace(dir=str(tmp_path / "nope")))
    with pytest.raises(UsageError, match="holds no overopt study"):
        verify.run(Namespace(dir=str(root / "runs" / good.id)))


def test_verify_checks_a_sweeps_points_and_shared_runs(tmp_path, capsys):
    from overopt import verify

    root = tmp_path / "sweep"
    (root).mkdir()
    (root / "sweep.json").write_text(json.dumps({"points": []}))
    shared = finished(root / "runs", {"a": 1})
    point = Run.open(root / "points", {"point": 1})
    (point.path / "out").mkdir()
    (point.path / "out" / "study.json").write_text(json.dumps({"runs": [shared.id, "rl-quarantined"]}))
    (point.path / "out" / "points.parquet").write_bytes(b"table")
    point.mark_done()
    (point.path / "worker.log").write_text("appended after DONE: not guarded")
    before = snapshot(tmp_path)
    assert verify.run(Namespace(dir=str(root))) == 1
    assert snapshot(tmp_path) == before
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"damaged    runs/rl-quarantined: missing, named by points/{point.id}/out/study.json"
    assert "2 runs: 2 verified" in out[-1]
    (point.path / "out" / "points.parquet").write_bytes(b"tablE")
    assert verify.run(Namespace(dir=str(root))) == 1
    out = capsys.readouterr().out.splitlines()
    assert f"damaged    points/{point.id}: out/points.parquet: sha256 differs" in out[0]
    # a point's out/ alone: its tables are read; the runs it names live in the sweep's runs/, not checked
    assert verify.run(Namespace(dir=str(point.path / "out"))) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[0].startswith("damaged    points.parquet: unreadable")


def test_verify_reports_a_sweep_json_without_points(tmp_path, capsys):
    from overopt.verify import run as verify_run

    (tmp_path / "sweep.json").write_text(json.dumps({"name": "x"}))
    assert verify_run(Namespace(dir=str(tmp_path))) == 1
    assert "sweep.json: no list of points" in capsys.readouterr().out
    (tmp_path / "sweep.json").write_text(json.dumps({"name": "x", "points": [{"id": "../up", "values": {}}]}))
    assert verify_run(Namespace(dir=str(tmp_path))) == 1
    assert "point 0 is not" in capsys.readouterr().out
