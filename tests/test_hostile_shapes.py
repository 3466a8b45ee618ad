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
import csv
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
from demo_data import write_finished_workspace
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from overopt.cli import main

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
    write_finished_workspace(tpl / "study", tpl / "sweep")
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
    """argv with the names of the case's files made paths in the case directory."""
    return [case / a if a in names or os.path.lexists(case / a) else a for a in argv]


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


# ---- oversized numbers in JSON logs, CSV, JSON lines and configs

HUGE_INT = st.integers(4301, 12000).map(lambda n: "9" * n) | st.integers(4301, 12000).map(lambda n: "-" + "7" * n)
NOT_FINITE = st.sampled_from(["1e309", "-1e309", "Infinity", "-Infinity", "NaN", "inf", "-inf", "nan"])
BIG = st.one_of(HUGE_INT, NOT_FINITE, st.sampled_from(["1e308", "1" + "0" * 400 + ".5", "-0.0", "4.9e-324"]))
LOG_SPOTS = ["kl", "rewards/gold/mean", "completions/mean_length", "step", "epoch", "loss", "num_tokens"]
# format -> (verb, what the case copies, argv after the verb, the keys or columns a value may go into)
NUMBER_FORMATS = {
    "state": ("fit", [RUN], [RUN, *FIT_FLAGS], LOG_SPOTS + ["global_step", "seed"]),
    "log_jsonl": ("fit", ["log.jsonl"], ["log.jsonl", *FIT_FLAGS], LOG_SPOTS),
    "points_csv": ("fit", ["points.csv"], ["points.csv", "--n-boot", "5"], ["kl", "gold", "rm_params"]),
    "points_jsonl": ("fit", ["points.csv"], ["points.jsonl", "--n-boot", "5"], ["kl", "gold", "rm_params", "n"]),
    "samples_csv": ("bon", ["samples.csv"], ["samples.csv", "--n-boot", "5"], ["proxy", "gold", "prompt", "response"]),
    "samples_jsonl": ("bon", ["samples.jsonl"], ["samples.jsonl", "--n-boot", "5"], ["proxy", "gold", "prompt"]),
    "run_args": ("fit", [RUN], [RUN, *FIT_FLAGS, "--pool-runs", "seeds"], ["seed"]),
    "figures_state": ("figures", [RUN], [RUN, *FIT_FLAGS[:2], "--only", "predicted_peaks", "--no-report"], ["kl"]),
    "spec": ("sweep launch", [], ["spec.toml", "--dry-run"], ["bon.seed", "rl.kl_coefs", "labels.flip_frac"]),
    "set": ("study", [], ["--print-config", "--preset", "tiny"], ["bon.pool_size", "labels.flip_frac", "rl.seeds"]),
}
USED = {"kl", "gold", "proxy", "rewards/gold/mean"}  # a value these hold is the curve's: a bad one is refused


def _with_number(case: Path, fmt: str, spot: str, row: int, value: str) -> list[str]:
    """Write the case's input of `fmt` with `value` (its text as written) at (`spot`, `row`); extra argv."""
    mark = "__NUMBER__"
    if fmt in ("state", "log_jsonl", "figures_state"):
        state = json.loads((FIX / "trl116" / STATE).read_text())
        entries = state["log_history"]
        if spot in ("global_step", "seed"):
            state[spot] = mark
        else:
            entries[row % len(entries)][spot] = mark
        text = json.dumps(state) if fmt != "log_jsonl" else "".join(json.dumps(e) + "\n" for e in entries)
        (case / (STATE if fmt != "log_jsonl" else "log.jsonl")).write_text(text.replace(f'"{mark}"', value))
    elif fmt in ("points_csv", "samples_csv"):
        name = "points.csv" if fmt == "points_csv" else "samples.csv"
        df = pd.read_csv(case / name, dtype=str, keep_default_na=False)
        df.loc[row % len(df), spot] = mark
        (case / name).write_text(df.to_csv(index=False).replace(mark, value))
    elif fmt in ("points_jsonl", "samples_jsonl"):
        df = (
            pd.read_csv(case / "points.csv")
            if fmt == "points_jsonl"
            else pd.read_json(case / "samples.jsonl", lines=True)
        )
        df["n"] = range(1, len(df) + 1) if fmt == "points_jsonl" else None
        recs = df.drop(columns=["n"] if fmt == "samples_jsonl" else []).to_dict("records")
        recs[row % len(recs)][spot] = mark
        text = "".join(json.dumps(r) + "\n" for r in recs).replace(f'"{mark}"', value)
        (case / ("points.jsonl" if fmt == "points_jsonl" else "samples.jsonl")).write_text(text)
    elif fmt == "run_args":
        (case / RUN / "training_args.json").write_text(f'{{"seed": {value}, "output_dir": "{RUN}"}}')
    elif fmt == "spec":
        body = f"[{value}]" if spot != "rl.kl_coefs" else f"[[0.0, {value}]]"
        (case / "spec.toml").write_text(f'preset = "tiny"\n[axes]\n"{spot}" = {body}\n')
    elif fmt == "set":
        return ["--set", f"{spot}={value if spot != 'rl.seeds' else f'[{value}]'}"]
    return []


@settings(max_examples=45, **SETTINGS)
@given(fmt=st.sampled_from(sorted(NUMBER_FORMATS)), value=BIG, row=st.integers(0, 40), data=st.data())
def test_generated_oversized_numbers(hws, fmt, value, row, data):
    verb, names, argv, spots = NUMBER_FORMATS[fmt]
    spot = data.draw(st.sampled_from(spots))
    case = new_case(hws, *names)
    extra = _with_number(case, fmt, spot, row, value)
    outs = {"fit": ["--json", case / "out.json"], "bon": ["--json", case / "out.json"]}.get(verb, [])
    outs += ["--out", case / "figs"] if verb in ("figures", "sweep launch") else []
    code, text = call(
        hws, [*verb.split(), *_in(case, names, argv), *extra, *outs], outputs=[case / "out.json", case / "figs"]
    )
    bad = value.lstrip("-").isdigit() or value.lower().lstrip("-") in ("1e309", "infinity", "nan", "inf")
    if bad and spot in USED:
        assert code == 2, text  # never fitted, never an internal error
    if code == 0 and outs[:1] == ["--json"]:
        result = json.loads((case / "out.json").read_text())
        assert result["fits"], text


# ---- prompts as a user has them: ids, text, token-id lists, nested lists, objects


PROMPT = st.one_of(
    st.integers(-3, 12),
    st.integers(-3, 12).map(str),  # "1" beside 1
    st.text(alphabet="ab1 [],{}:", max_size=6),
    st.lists(st.integers(0, 9), max_size=4),
    st.integers(0, 3).map(lambda k: [7] * 300 + [k]),  # long token-id lists sharing a prefix
    st.lists(
        st.lists(st.integers(0, 2), max_size=2) | st.dictionaries(st.sampled_from("ab"), st.integers(0, 2)), max_size=2
    ),
    st.dictionaries(st.sampled_from("ab"), st.integers(0, 2) | st.lists(st.integers(0, 2), max_size=2), max_size=2),
    st.sampled_from([True, False, None, [], {}, [[]], [{}], [["a", 1]], {"a": 1}, [1, "1"], [1, 1]]),
)


CONFUSABLE = [
    (1, "1"),
    (True, 1),
    (False, 0),
    ([True, 2], [1, 2]),
    ([[]], [{}]),
    ({"a": 1}, [["a", 1]]),
    ({"a": [1]}, [["a", [1]]]),
    ([1, 2], "[1, 2]"),
    ([7] * 300 + [1], [7] * 300 + [2]),
]


def _canonical(value) -> str:
    """Two prompts are one exactly when these agree (objects by their items, in any order)."""
    return json.dumps(value, sort_keys=True)


def _is_missing(value) -> bool:
    return value is None or value == "" or value == []


TEXT_PROMPT = st.one_of(
    st.text(alphabet='01 .e+-aN,"', max_size=5),
    st.sampled_from(["01", "1", "1.0", " 1", "+1", "1e0", "NA", "None", "nan", "null", "[1, 2]", "007", "7", ""]),
)


@st.composite
def prompt_table(draw) -> tuple[str, list, list[list[float]], list[list[float]]]:
    """(format, prompts, proxy scores, gold scores): JSON lines with prompts of any JSON value, or CSV with text
    prompts (numbers as written: "01" and "1" are two)."""
    fmt = draw(st.sampled_from(["jsonl", "jsonl", "csv"]))
    prompts = draw(st.lists(PROMPT if fmt == "jsonl" else TEXT_PROMPT, min_size=2, max_size=5, unique_by=_canonical))
    if fmt == "jsonl" and draw(st.booleans()):  # two values that print, compare or hash alike: two prompts
        pair = list(draw(st.sampled_from(CONFUSABLE)))
        prompts = list({_canonical(p): p for p in [*pair, *prompts]}.values())[:5]
    n = draw(st.integers(4, 6))
    score = st.sampled_from([0.0, 0.5, 1.0, 1.5, 2.0])  # ties within a pool
    proxy = [draw(st.lists(score, min_size=n, max_size=n)) for _ in prompts]
    gold = [draw(st.lists(st.floats(-1, 1).map(lambda x: round(x, 3)), min_size=n, max_size=n)) for _ in prompts]
    return fmt, prompts, proxy, gold


def _write_samples(path: Path, prompts, proxy, gold, interleave: bool) -> None:
    rows = [(p, x, g) for p, xs, gs in zip(prompts, proxy, gold) for x, g in zip(xs, gs)]
    if interleave:  # rows of a prompt need not be adjacent
        n = len(proxy[0])
        rows = [rows[i * n + j] for j in range(n) for i in range(len(prompts))]
    if path.suffix == ".csv":
        with path.open("w", newline="") as f:
            csv.writer(f).writerows([("prompt", "proxy", "gold"), *rows])
        return
    path.write_text("".join(json.dumps({"prompt": p, "proxy": x, "gold": g}) + "\n" for p, x, g in rows))


@settings(max_examples=25, **SETTINGS)
@given(table=prompt_table(), interleave=st.booleans())
def test_generated_prompts_are_keyed_by_their_contents(hws, table, interleave):
    """A table whose prompts are any JSON values gives the result of the same table with plain ids: no two
    distinct prompts merge (1 and "1", [[]] and [{}], {"a": 1} and [["a", 1]], true and 1), no list is keyed by
    its printed form; a missing prompt (null, "", []) is refused."""
    fmt, prompts, proxy, gold = table
    case = new_case(hws)
    _write_samples(case / f"s.{fmt}", prompts, proxy, gold, interleave)
    _write_samples(case / f"ids.{fmt}", [f"p{i:03d}" for i in range(len(prompts))], proxy, gold, interleave)
    out, ids = case / "s.json", case / "ids.json"
    code, text = call(hws, ["bon", case / f"s.{fmt}", "--n-boot", "8", "--json", out], outputs=[out])
    if any(_is_missing(p) for p in prompts):
        assert code == 2 and "prompt" in text, text
        return
    plain, plain_text = call(hws, ["bon", case / f"ids.{fmt}", "--n-boot", "8", "--json", ids], outputs=[ids])
    assert code == plain, (text, plain_text)  # the same table: refused (constant gold, ...) alike
    if code == 0:
        _same(json.loads(out.read_text()), json.loads(ids.read_text()))


# ---- trainer logs whose steps repeat or go backwards, and legitimate entries sharing a step

PERTURB = [
    "none",
    "dup_entry",
    "dup_later",
    "concat",
    "swap",
    "repeat_step",
    "backwards_far",
    "eval_at_step",
    "summary",
]
LEGIT = ("none", "eval_at_step", "summary")  # TRL writes eval entries and a final summary at a training step


def _entries() -> list[dict]:
    return json.loads((FIX / "trl116" / STATE).read_text())["log_history"]


def _perturb(entries: list[dict], how: str, i: int, k: int) -> list[dict]:
    e = [dict(x) for x in entries]
    i = 1 + i % (len(e) - 2)
    if how == "dup_entry":
        e.insert(i + 1, dict(e[i]))
    elif how == "dup_later":
        e.insert(min(len(e), i + 1 + k), dict(e[i]))
    elif how == "concat":  # a second run's history (or the same, restarted) appended
        e += [dict(x) for x in e[: 1 + k % len(e)]]
    elif how == "swap":
        e[i], e[i + 1] = e[i + 1], e[i]
    elif how == "repeat_step":
        e[i]["step"] = e[i - 1]["step"]
    elif how == "backwards_far":
        e[i + 1]["step"] = e[max(0, i - 1 - k)]["step"]
    elif how == "eval_at_step":
        ev = {"eval_kl": 0.1, "eval_rewards/gold/mean": 0.5, "eval_runtime": 1.0}
        e.insert(i + 1, {**ev, "step": e[i]["step"], "epoch": e[i].get("epoch", 0)})
    elif how == "summary":
        e.append({"train_runtime": 12.5, "train_loss": 0.01, "step": e[-1]["step"], "epoch": e[-1].get("epoch", 1)})
    return e


def _write_log(case: Path, fmt: str, entries: list[dict]) -> Path:
    if fmt == "state":
        run = case / "run" / "checkpoint-60"
        run.mkdir(parents=True)
        (run / "trainer_state.json").write_text(json.dumps({"log_history": entries, "global_step": 60}))
        return case / "run"
    if fmt == "jsonl":
        (case / "log.jsonl").write_text("".join(json.dumps(x) + "\n" for x in entries))
        return case / "log.jsonl"
    pd.DataFrame(entries).to_csv(case / "log.csv", index=False)
    return case / "log.csv"


@settings(max_examples=30, **SETTINGS)
@given(
    how=st.sampled_from(PERTURB),
    fmt=st.sampled_from(["state", "jsonl", "csv"]),
    i=st.integers(0, 60),
    k=st.integers(0, 20),
    figures=st.integers(0, 5).map(lambda v: v == 0),
)
def test_generated_repeated_and_backwards_steps(hws, how, fmt, i, k, figures):
    """Two histories concatenated, a step logged twice or out of order: refused (exit 2) naming the step; an eval
    entry or the final summary at a training step is no repeat: the log fits as it does without them."""
    case = new_case(hws)
    target = _write_log(case, fmt, _perturb(_entries(), how, i, k))
    if figures:
        argv = ["figures", target, *FIT_FLAGS[:2], "--only", "predicted_peaks", "--no-report", "--out", case / "figs"]
        code, text = call(hws, argv, outputs=[case / "figs"])
    else:
        out = case / "fit.json"
        code, text = call(hws, ["fit", target, *FIT_FLAGS, "--json", out], outputs=[out])
    if how not in LEGIT:
        assert code == 2 and "step" in text and ("repeats" in text or "goes backwards" in text), text
        return
    assert code == 0, text
    if not figures:
        result, key = json.loads(out.read_text()), ("steps", fmt)
        if key not in _BASELINES:
            plain = new_case(hws)
            base_out = plain / "fit.json"
            call(hws, ["fit", _write_log(plain, fmt, _entries()), *FIT_FLAGS, "--json", base_out], outputs=[base_out])
            _BASELINES[key] = json.loads(base_out.read_text())
        _same(result, _BASELINES[key])


# ---- one input given twice (a link to the command's own input), and distinct runs sharing a name

SECOND = ["same", "symlink", "hardlink", "dot_path", "checkpoint", "copy_same_name", "copy_renamed"]
# (verb, input, argv after the inputs)
TWICE = [
    ("fit", "points.csv", ["--n-boot", "5"]),
    ("fit", "log.jsonl", FIT_FLAGS),
    ("fit", RUN, FIT_FLAGS),
    ("bon", "samples.csv", ["--n-boot", "5"]),
    ("bon", "samples.jsonl", ["--n-boot", "5"]),
]


@settings(max_examples=25, **SETTINGS)
@given(twice=st.sampled_from(TWICE), second=st.sampled_from(SECOND), first_last=st.booleans())
def test_generated_inputs_given_twice(hws, twice, second, first_last):
    """An input named twice (the same path, a link to it, a checkpoint of a run given whole) is refused: read
    twice, its rows would count twice and narrow every interval. A copy is a distinct input: each run its own
    curve (runs sharing a directory name are told apart by the directory above), a copied table pooled."""
    verb, name, flags = twice
    case = new_case(hws, name)
    first = case / name
    if second == "checkpoint" and name != RUN:
        second = "symlink"
    other = {
        "same": first,
        "symlink": case / f"link_{name}",
        "hardlink": case / f"hard_{name}",
        "dot_path": case / "." / name,
        "checkpoint": first / "checkpoint-50",
        "copy_same_name": case / "b" / name,
        "copy_renamed": case / f"copy_{name}",
    }[second]
    if second == "symlink":
        other.symlink_to(first, target_is_directory=first.is_dir())
    elif second == "hardlink":
        if first.is_dir():
            other = case / "." / name
        else:
            os.link(first, other)
    elif second.startswith("copy"):
        other.parent.mkdir(exist_ok=True)
        (shutil.copytree if first.is_dir() else shutil.copy)(first, other)
    inputs = [first, other] if first_last else [other, first]
    out = case / "out.json"
    code, text = call(hws, [verb, *inputs, *flags, "--json", out], outputs=[out])
    if not second.startswith("copy"):
        assert code == 2 and ("given twice" in text or "read twice" in text), text
        return
    if verb == "bon" or name == "points.csv":  # two tables: concatenated (a prompt's pool doubles: refused or not)
        assert code in (0, 2), text
        return
    assert code == 0, text
    fits = json.loads(out.read_text())["fits"]
    runs = sorted(f["run"] for f in fits)
    assert len(runs) == 2 and len(set(runs)) == 2, runs  # each run its own curve, never pooled by name
    alone = baseline(hws, verb, [name], [name, *flags])["fits"]
    for f in fits:
        assert f["alpha"] == pytest.approx(alone[0]["alpha"], rel=1e-9), (f, alone)
