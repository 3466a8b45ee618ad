"""Generated hostile shapes (issue 33), the companion of tests/test_bad_inputs.py's property tests: special files
(FIFOs, device nodes, links to an endless device), symbolic links (out of the run, dangling, looping, to a
directory, to the command's own input), oversized numbers (integers of thousands of digits, inf, nan, 1e309) in
JSON logs, CSV, JSON lines and configs, list-valued prompts (lists, nested lists, objects) and duplicated or
backwards steps in trainer logs, at `fit`, `bon`, `figures`, `verify` and `sweep status`.

The properties, every example: the command exits 0 (`verify`, `sweep status`: 1 reporting damage, as
documented) or 2 with exactly one stderr line "overopt: error: ..." and no traceback; it finishes within
`HANG_S` (a FIFO or a device never blocks it: an alarm fails the example); on exit 2 nothing under the
workspace changes (no output, no half-written ".tmp" file), on exit 0 only its declared outputs are new; the
`outside` directory its links point into and /dev/null are unchanged. Where the right answer is known it is
checked: a link to a good copy of an input gives the plain input's result, a refused output path is refused
(exit 2) and left as it was, prompts keyed by their contents give the result of the same table with plain ids,
a log with a repeated or backwards step is refused naming the step, a legitimate one (eval entries and the
final summary at a training step) fits as the log without them. Hypothesis runs a bounded, derandomized set of
examples (deterministic in CI). Commands run in process (`overopt.cli.main`)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import stat
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pandas as pd
import pytest
from demo_data import write_demo
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.config import to_dict
from core.store import Run
from overopt.cli import main
from study.presets import tiny

HANG_S = 30
SETTINGS = dict(
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FIX = Path(__file__).resolve().parent / "fixtures_trl"
RUN = "grpo_s1"  # a TRL 1.16 GRPO run (tests/fixtures_trl/trl116)
STATE = f"{RUN}/checkpoint-50/trainer_state.json"
FIT_FLAGS = ["--kl-per-token", "completions/mean_length", "--n-boot", "5"]


# ---- the workspace: a template, copied into case/ for each example; `outside` is what links point into


def _finished_run(runs: Path, prefix: str) -> None:
    run = Run.open(runs, {"stage": prefix}, prefix=prefix)
    run.write_points(pd.DataFrame({"method": ["bon"] * 3, "kl": [0.0, 1.0, 2.0], "gold": [0.0, 0.4, 0.3]}))
    run.mark_done({"seconds": 0})


def _samples_rows() -> list[tuple]:
    return [
        (f"q{p}", (j * 7 + p) % 5 / 2, ((j * 3 + p) % 4) / 3 + 0.1 * p, f"r{j}") for p in range(4) for j in range(6)
    ]


def _samples_csv(rows) -> str:
    return "prompt,proxy,gold,response\n" + "".join(f"{p},{x},{g},{r}\n" for p, x, g, r in rows)


@pytest.fixture(scope="module")
def hws(tmp_path_factory):
    base = tmp_path_factory.mktemp("shapes")
    outside = tmp_path_factory.mktemp("outside")
    tpl = base / "tpl"
    tpl.mkdir()
    write_demo(tpl / "study")
    _finished_run(tpl / "study" / "runs", "bon-rm-s")
    sweep = tpl / "sweep"
    _finished_run(sweep / "runs", "rl-rm-s")
    point = Run.open(sweep / "points", to_dict(tiny()))
    point.mark_done()
    (sweep / "sweep.json").write_text(json.dumps({"name": "s", "points": [{"id": point.id, "values": {}}]}))
    shutil.copytree(FIX / "trl116" / RUN, tpl / RUN)
    (tpl / "log.jsonl").write_text(
        "".join(json.dumps(e) + "\n" for e in json.loads((tpl / STATE).read_text())["log_history"])
    )
    good = "".join(f"bon,{k / 2},{0.5 * k - 0.05 * k * k},1000\n" for k in range(10))
    (tpl / "points.csv").write_text("method,kl,gold,rm_params\n" + good)
    (tpl / "samples.csv").write_text(_samples_csv(_samples_rows()))
    (tpl / "samples.jsonl").write_text(
        "".join(json.dumps(dict(zip(("prompt", "proxy", "gold", "response"), r))) + "\n" for r in _samples_rows())
    )
    (outside / "secret.txt").write_text("secret\n")
    for name in ("points.csv", "samples.csv", "samples.jsonl", "log.jsonl"):
        shutil.copy(tpl / name, outside / name)
    shutil.copy(tpl / STATE, outside / "trainer_state.json")
    return base, outside


def tree(root: Path) -> dict:
    """{relative path: (file type, size, mtime, link target)} of everything under root, links not followed; a
    directory by its type only (a probe file made and removed in it, as `overopt fit` checks --json, is no
    change: its entries are compared)."""
    out = {}
    for d, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(d) / name
            st_ = p.lstat()
            link = os.readlink(p) if stat.S_ISLNK(st_.st_mode) else None
            kind = stat.S_IFMT(st_.st_mode)
            seen = (kind,) if stat.S_ISDIR(st_.st_mode) else (kind, st_.st_size, st_.st_mtime_ns, link)
            out[str(p.relative_to(root))] = seen
    return out


def _device_state():
    st_ = os.stat(os.devnull)
    return stat.S_IFMT(st_.st_mode), st_.st_rdev


class Hang(Exception):
    pass


@contextlib.contextmanager
def alarm(seconds: int):
    """Raise Hang in the main thread after `seconds` (a blocking open or read is interrupted)."""

    def ring(signum, frame):
        raise Hang(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def new_case(hws, *names) -> Path:
    """An empty case directory with copies of the template's `names` (links kept as links)."""
    base, _ = hws
    case = base / "case"
    if case.exists():
        shutil.rmtree(case)
    case.mkdir()
    for n in names:
        src = base / "tpl" / n
        (shutil.copytree(src, case / n, symlinks=True) if src.is_dir() else shutil.copy(src, case / n))
    return case


def call(hws, argv, codes=(0, 2), outputs=()) -> tuple[int, str]:
    """Run `overopt argv` in process under an alarm; check the properties (module docstring). `outputs`: the
    paths (files, or directories whose contents are new) an exit 0 may write."""
    base, outside = hws
    before, before_out, dev = tree(base), tree(outside), _device_state()
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            with alarm(HANG_S):
                code = main([str(a) for a in argv])
        except Hang as e:
            code = f"hang: {e}"
    text = err.getvalue()
    lines = text.strip().splitlines()
    shown = f"argv={[str(a)[-60:] for a in argv]} code={code} stderr={text[-800:]!r}"
    assert code in codes, shown
    assert "Traceback" not in text and "internal error" not in text, shown
    if code == 2:
        assert len(lines) == 1 and lines[0].startswith("overopt: error: "), shown
    if code == 0:
        assert all(line.startswith("[overopt] ") for line in lines), shown
    after = tree(base)
    allowed = {str(Path(o).relative_to(base)) for o in outputs} if code in (0, 1) else set()
    changed = {p for p in after.keys() | before.keys() if after.get(p) != before.get(p)}
    stray = {p for p in changed if not any(p == a or p.startswith(a + os.sep) for a in allowed)}
    assert not stray, f"{shown} changed={sorted(stray)[:8]}"
    assert not [p for p in after if p.endswith(".tmp") or "/.tmp" in p], shown
    assert tree(outside) == before_out and _device_state() == dev, shown
    return code, text


# ---- special files and links where an input is read

SPECIAL = [
    "fifo",
    "null_node",
    "zero_node",
    "to_zero",
    "to_null",
    "dangling",
    "loop",
    "dir",
    "to_dir",
    "to_garbage",
    "empty",
    "to_good",
    "hardlink_good",
]
GOOD_KINDS = ("to_good", "hardlink_good")  # a valid copy of the input, read through a link


def put(path: Path, kind: str, outside: Path, good: str | None = None) -> None:
    """Replace whatever is at `path` by a `kind` (SPECIAL); `good`: the name of the outside copy of its content."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind in ("null_node", "zero_node"):
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3 if kind == "null_node" else 5))
    elif kind in ("to_zero", "to_null"):
        path.symlink_to("/dev/zero" if kind == "to_zero" else os.devnull)
    elif kind == "dangling":
        path.symlink_to(path.parent / "nowhere")
    elif kind == "loop":
        path.symlink_to(path.name)
    elif kind == "dir":
        path.mkdir()
    elif kind == "to_dir":
        path.symlink_to(outside, target_is_directory=True)
    elif kind == "to_garbage":
        path.symlink_to(outside / "secret.txt")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "to_good":
        path.symlink_to(outside / good)
    elif kind == "hardlink_good":
        os.link(outside / good, path)
    else:
        raise AssertionError(kind)


# (verb, what the case copies, the file replaced, the outside copy of its content, argv after the verb, codes)
PLACES = [
    ("fit", ["points.csv"], "points.csv", "points.csv", ["points.csv", "--n-boot", "5"], (0, 2)),
    ("fit", ["log.jsonl"], "log.jsonl", "log.jsonl", ["log.jsonl", *FIT_FLAGS], (0, 2)),
    ("fit", [RUN], STATE, "trainer_state.json", [RUN, *FIT_FLAGS], (0, 2)),
    ("fit", [RUN], f"{RUN}/README.md", None, [RUN, *FIT_FLAGS], (0, 2)),
    ("fit", [RUN], f"{RUN}/training_args.json", None, [RUN, *FIT_FLAGS], (0, 2)),
    ("bon", ["samples.csv"], "samples.csv", "samples.csv", ["samples.csv", "--n-boot", "5"], (0, 2)),
    ("bon", ["samples.jsonl"], "samples.jsonl", "samples.jsonl", ["samples.jsonl", "--n-boot", "5"], (0, 2)),
    ("verify", ["study"], "study/study.json", None, ["study"], (0, 1, 2)),
    ("verify", ["study"], "RUNFILE:DONE", None, ["study"], (0, 1, 2)),
    ("verify", ["study"], "RUNFILE:points.parquet", None, ["study"], (0, 1, 2)),
    ("sweep status", ["sweep"], "sweep/sweep.json", None, ["sweep"], (0, 1, 2)),
    ("sweep status", ["sweep"], "POINTFILE:DONE", None, ["sweep"], (0, 1, 2)),
    ("figures", ["study"], "study/fits.json", None, ["study", "--only", "predicted_peaks", "--no-report"], (0, 2)),
    ("figures", ["study"], "study/points.parquet", None, ["study", "--only", "predicted_peaks", "--no-report"], (2,)),
]


def _resolve(case: Path, rel: str) -> Path:
    if rel.startswith(("RUNFILE:", "POINTFILE:")):
        where = case / ("study/runs" if rel.startswith("RUN") else "sweep/points")
        run = next(p for p in sorted(where.iterdir()) if p.is_dir())
        return run / rel.split(":", 1)[1]
    return case / rel


_BASELINES: dict = {}


def _in(case: Path, names, argv) -> list:
    """argv with the template names it holds made paths in the case directory."""
    return [case / a if a in names else a for a in argv]


def baseline(hws, verb: str, names, argv) -> dict:
    """The --json result of `verb argv` on the unchanged inputs (computed once)."""
    key = (verb, tuple(names), tuple(argv))
    if key not in _BASELINES:
        case = new_case(hws, *names)
        out = case / "base.json"
        call(hws, [*verb.split(), *_in(case, names, argv), "--json", out], codes=(0,), outputs=[out])
        _BASELINES[key] = json.loads(out.read_text())
    return _BASELINES[key]


def _same(a: dict, b: dict) -> None:
    """Two --json results agree (points and fits; `source`-like paths and messages aside)."""
    for part in ("points", "fits"):
        x, y = pd.DataFrame(a.get(part, [])), pd.DataFrame(b.get(part, []))
        cols = [c for c in x.columns if c in y.columns and pd.api.types.is_numeric_dtype(x[c])]
        assert len(x) == len(y), part
        pd.testing.assert_frame_equal(
            x[cols].reset_index(drop=True), y[cols].reset_index(drop=True), check_exact=False, rtol=1e-9
        )


@settings(max_examples=40, **SETTINGS)
@given(place=st.sampled_from(PLACES), kind=st.sampled_from(SPECIAL))
def test_generated_special_files_and_links_at_inputs(hws, place, kind):
    verb, names, rel, good, argv, codes = place
    if kind in GOOD_KINDS and good is None:
        kind = "to_garbage"
    case = new_case(hws, *names)
    put(_resolve(case, rel), kind, hws[1], good)
    out = case / "out.json"
    json_flag = ["--json", out] if verb in ("fit", "bon") else []
    figs = ["--out", case / "figs"] if verb == "figures" else []
    argv = [*verb.split(), *_in(case, names, argv), *json_flag, *figs]
    code, text = call(hws, argv, codes=codes, outputs=[out, case / "figs"])
    top = rel in names  # the command's own argument is the special file
    if top and kind not in GOOD_KINDS and kind != "empty":
        assert code == 2, text
    if kind in GOOD_KINDS and code == 0 and json_flag:  # a link to a good copy reads as the copy
        _same(json.loads(out.read_text()), baseline(hws, verb, names, place[4]))
    if top and kind in GOOD_KINDS:
        assert code == 0, text


# ---- special files and links where an output is written

TARGETS = [
    "absent",
    "regular",
    "fifo",
    "null_node",
    "to_null",
    "to_garbage",
    "dangling",
    "loop",
    "dir",
    "to_dir",
    "to_input",
    "hardlink_input",
    "the_input",
]
# (verb, what the case copies, argv after the verb, the input an output may be pointed at, the output flag)
WRITERS = [
    ("fit", ["points.csv"], ["points.csv", "--n-boot", "5"], "points.csv", "--json"),
    ("fit", [RUN], [RUN, *FIT_FLAGS], STATE, "--json"),
    ("bon", ["samples.csv"], ["samples.csv", "--n-boot", "5"], "samples.csv", "--json"),
    ("bon", ["samples.jsonl"], ["samples.jsonl", "--n-boot", "5"], "samples.jsonl", "--points"),
    ("figures", ["points.csv"], ["points.csv", "--only", "predicted_peaks", "--no-report"], "points.csv", "--out"),
]


@settings(max_examples=30, **SETTINGS)
@given(writer=st.sampled_from(WRITERS), kind=st.sampled_from(TARGETS), suffix=st.sampled_from([".json", ".csv"]))
def test_generated_output_paths(hws, writer, kind, suffix):
    verb, names, argv, input_rel, flag = writer
    _, outside = hws
    case = new_case(hws, *names)
    suffix = ".jsonl" if flag == "--points" and suffix == ".json" else suffix
    target = case / (input_rel if kind == "the_input" else f"out{suffix if flag != '--out' else ''}")
    if kind == "regular":
        target.write_text("an old result\n")
    elif kind == "to_input":
        target.symlink_to(case / input_rel)
    elif kind == "hardlink_input":
        os.link(case / input_rel, target)
    elif kind == "to_dir" and flag == "--out":  # a link to a directory of the user's: written into
        (case / "real").mkdir()
        target.symlink_to(case / "real", target_is_directory=True)
    elif kind not in ("absent", "the_input"):
        put(target, kind, outside)
    seen = tree(case)
    code, text = call(hws, [verb, *_in(case, names, argv), flag, target], outputs=[target, case / "real"])
    valid = kind in ("absent", "regular") if flag != "--out" else kind in ("absent", "dir", "to_dir")
    if not valid:
        assert code == 2, text  # refused before any work: never renamed over a device, a link or an input
        assert tree(case) == seen, text
        return
    assert code == 0, text
    if flag == "--json":
        _same(json.loads(target.read_text()), baseline(hws, verb, names, argv))
    elif flag == "--points":
        back = pd.read_csv(target) if suffix == ".csv" else pd.read_json(target, lines=True)
        assert len(back) > 0 and {"method", "kl", "gold"} <= set(back.columns), text
    else:
        assert any(p.suffix == ".png" for p in target.rglob("*")), text
