"""Run store: atomic writes, stable run ids, metrics, DONE, locks; config overrides."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field

import pandas as pd
import pytest

from core import store
from core.config import from_dict, merge, parse_overrides
from core.errors import UsageError
from core.store import Run, atomic_write_text, find_runs, run_id


@dataclass(frozen=True)
class Inner:
    lr: float = 1e-3
    steps: int = 10


@dataclass(frozen=True)
class Outer:
    name: str = "x"
    sizes: tuple[int, ...] = (1, 2)
    inner: Inner = field(default_factory=Inner)
    flag: bool = False


def test_interrupted_write_leaves_previous_file_intact(tmp_path, monkeypatch):
    p = tmp_path / "f.json"
    atomic_write_text(p, "old")

    def boom(src, dst):
        raise KeyboardInterrupt  # the process dies between writing the temp file and the rename

    monkeypatch.setattr(store.os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(p, "new")
    assert p.read_text() == "old"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["f.json"]  # no temp file left behind


def test_run_id_stable_across_processes_and_sensitive_to_every_field():
    cfg = Outer()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = (
        f"import sys; sys.path.insert(0, {root!r}); from tests.test_store import Outer; "
        "from core.store import run_id; print(run_id(Outer()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "123"},
    )
    assert out.stdout.strip() == run_id(cfg)
    variants = [
        dataclasses.replace(cfg, name="y"),
        dataclasses.replace(cfg, sizes=(1, 3)),
        dataclasses.replace(cfg, inner=Inner(lr=2e-3)),
        dataclasses.replace(cfg, inner=Inner(steps=11)),
        dataclasses.replace(cfg, flag=True),
    ]
    ids = {run_id(v) for v in variants}
    assert len(ids) == len(variants) and run_id(cfg) not in ids


def test_run_lifecycle(tmp_path):
    r = Run.open(tmp_path, {"a": 1}, prefix="bon")
    assert r.id.startswith("bon-") and json.loads((r.path / "config.json").read_text()) == {"a": 1}
    r.log({"objective": {"kl": 0.5}}, step=3)
    with open(r.path / "metrics.jsonl", "a") as f:
        f.write('{"torn": ')  # a kill in the middle of a line
    assert r.metrics() == [{"objective/kl": 0.5, "step": 3}]
    assert not r.done and find_runs(tmp_path) == []
    r.write_points(pd.DataFrame({"kl": [0.0, 1.0], "gold": [0.0, 0.3]}))
    r.mark_done()
    assert r.done and [x.id for x in find_runs(tmp_path)] == [r.id]
    again = Run.open(tmp_path, {"a": 1}, prefix="bon")
    assert again.done and again.points()["gold"].tolist() == [0.0, 0.3]


def test_lock_serialises_two_holders(tmp_path):
    from locks import wait_until_blocked  # here: a subprocess below imports this module without tests/ on its path

    r = Run.open(tmp_path, {"a": 1})
    order = []
    a_holds = threading.Event()

    def first():
        with r.lock():
            order.append("a+")
            a_holds.set()
            wait_until_blocked(r.path / ".lock", gave_up=lambda: "b+" in order)  # b waits for a's lock
            order.append("a-")

    def second():
        a_holds.wait()
        with r.lock():
            order.append("b+")
            order.append("b-")

    ts = [threading.Thread(target=f) for f in (first, second)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert order == ["a+", "a-", "b+", "b-"]


def test_overrides_merge_and_type_check():
    cfg = merge(Outer(), parse_overrides(["inner.lr=0.5", "sizes=[4,5,6]", "flag=true", "name=abc"]))
    assert cfg == Outer(name="abc", sizes=(4, 5, 6), inner=Inner(lr=0.5), flag=True)
    assert merge(Outer(), parse_overrides(["inner.steps=3"])).inner.steps == 3
    with pytest.raises(UsageError, match="unknown config key 'inner.nope'"):
        merge(Outer(), parse_overrides(["inner.nope=1"]))
    with pytest.raises(UsageError, match="inner.steps"):
        merge(Outer(), parse_overrides(["inner.steps=1.5"]))
    with pytest.raises(UsageError, match="flag"):
        merge(Outer(), parse_overrides(["flag=3"]))
    with pytest.raises(UsageError, match="key=value"):
        parse_overrides(["oops"])
    assert from_dict(Outer, {"inner": {"lr": 1}}).inner.lr == 1.0


@pytest.mark.parametrize(
    "name", ["x/../../ESC", "..", ".hidden", "a b", "a\\b", "", "a" * 101, "a..b", "é", "a\x00b", "/abs"]
)
def test_unsafe_names_are_refused(name):
    with pytest.raises(UsageError, match=r"^bad size name '"):
        store.safe_name(name, "size")


@pytest.mark.parametrize("name", ["rm-a", "tiny", "x_1.5", "A" * 100, "p-0123abcd"])
def test_safe_names_pass(name):
    assert store.safe_name(name, "size") == name


def test_unsafe_stage_prefix_writes_nothing(tmp_path):
    root = tmp_path / "out" / "runs"
    with pytest.raises(UsageError, match="bad stage name 'proxy-x/../../../ESC'"):
        Run.open(root, {"a": 1}, prefix="proxy-x/../../../ESC")
    assert list(tmp_path.rglob("*")) == []


def test_symlinked_escape_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    r = Run.open(tmp_path / "runs", {"a": 1}, prefix="bon")
    (r.path / "metrics.jsonl").symlink_to(outside / "stolen.jsonl")
    with pytest.raises(UsageError, match="outside"):
        r.log({"x": 1})
    (r.path / "points.parquet").symlink_to(outside / "p.parquet")
    with pytest.raises(UsageError, match="outside"):
        r.write_points(pd.DataFrame({"kl": [0.0]}))
    # a run directory that is itself a symlink out of the runs root
    root = tmp_path / "runs2"
    root.mkdir()
    rid = run_id({"b": 2}, "lm")
    (root / rid).symlink_to(outside, target_is_directory=True)
    with pytest.raises(UsageError, match="outside"):
        Run.open(root, {"b": 2}, prefix="lm")
    assert list(outside.iterdir()) == []


def test_unreadable_config_of_an_unfinished_run_is_one_line(tmp_path):
    r = Run.open(tmp_path, {"a": 1}, prefix="rl")
    (r.path / "config.json").write_bytes(b'{"a": \xff')
    with pytest.raises(UsageError, match=rf"config.json is unreadable; move .*{r.id} away"):
        Run.open(tmp_path, {"a": 1}, prefix="rl")


def test_a_field_marked_omit_default_keeps_ids_while_at_its_default():
    import dataclasses

    from core.store import OMIT_DEFAULT, run_id

    @dataclasses.dataclass(frozen=True)
    class Before:
        a: int = 1

    @dataclasses.dataclass(frozen=True)
    class After:
        a: int = 1
        knob: int = dataclasses.field(default=0, metadata=OMIT_DEFAULT)

    @dataclasses.dataclass(frozen=True)
    class Plain:
        a: int = 1
        knob: int = 0

    assert run_id(After()) == run_id(Before()) == run_id({"a": 1})
    assert run_id(After(knob=3)) != run_id(Before()) and run_id(After(knob=3)) == run_id({"a": 1, "knob": 3})
    assert run_id(Plain()) != run_id(Before())  # unmarked fields always count
