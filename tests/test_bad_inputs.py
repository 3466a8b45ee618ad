"""Generated bad inputs at every verb (hypothesis): configs (--set), sweep specs, points tables and flags.
Whatever comes in, `overopt` exits 0 or 2 (`verify`: 1 when it finds damage, as documented) with at most
one stderr line and no warning, writes nothing outside --out and never changes a finished run. A valid
input runs only as --print-config, --dry-run or one figure into --out; the study pipeline and the sweep
executors are replaced by functions that fail loudly, so nothing is launched. Commands run in process
(`main(argv)`); one smoke case a verb runs the installed entry point."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from demo_data import write_finished_workspace
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.config import to_dict
from core.errors import UsageError
from overopt.cli import main
from study.presets import resolve, tiny

QUIET = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
SETTINGS = dict(deadline=None, database=None, suppress_health_check=QUIET)
LAUNCHED = "a real study or sweep was launched"


# ---- the workspace: a finished study and a finished sweep that nothing may change


def _no_launch(*args, **kwargs):
    """Replaces study.cli.Study and the sweep executors: no study is ever launched here."""
    raise AssertionError(LAUNCHED)


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """The workspace, and the safety net (no pipeline, no executor) for the whole module."""
    import study.cli
    import sweeps.launch
    from figures.cli import run as _figures  # noqa: F401  (import the verbs before warnings are recorded)
    from overopt.fit import run as _fit  # noqa: F401
    from sweeps.cli import run as _sweep  # noqa: F401

    root = tmp_path_factory.mktemp("ws")
    write_finished_workspace(root / "finished", root / "sweep")
    (root / "afile").write_text("not a directory")
    (root / "dangling").symlink_to(root / "nowhere")
    (root / "inputs").mkdir()
    good = "".join(f"bon,{k / 2},{0.5 * k - 0.05 * k * k}\n" for k in range(10))
    (root / "inputs" / "good.csv").write_text("method,kl,gold\n" + good)
    (root / "inputs" / "good.toml").write_text('preset = "tiny"\n[axes]\n"labels.flip_frac" = [0.0, 0.1]\n')
    (root / "out").mkdir()
    fixtures = Path(__file__).resolve().parent / "fixtures_trl"
    (root / "trl").mkdir()
    for name in ("grpo_run", "ppo_run", "grpo_log_history.jsonl", "wandb_kl.csv", "wandb_gold.csv"):
        (shutil.copytree if (fixtures / name).is_dir() else shutil.copy)(fixtures / name, root / "trl" / name)
    rows = "".join(f"p{p},{(j * 7 + p) % 5 / 2},{(j * 3 + p) % 4 / 3},{j % 3}\n" for p in range(3) for j in range(8))
    (root / "inputs" / "samples.csv").write_text("prompt,proxy,gold,proxy_x\n" + rows)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(study.cli, "Study", _no_launch)
        for name in ("run_local", "run_debug", "run_slurm"):
            mp.setattr(sweeps.launch, name, _no_launch)
        yield root


def snapshot(root: Path) -> dict:
    """{path: (size, mtime)} of everything under root but inputs/ and out/ (what no command may change)."""
    mine = [p for p in root.rglob("*") if not {root / "inputs", root / "out"} & {p, *p.parents}]
    return {str(p): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in mine}


def call(ws: Path, argv: list[str], codes=(0, 2)) -> tuple[int, str]:
    """Run `overopt argv` in process; check the promises; clear out/. Returns (exit code, stderr)."""
    before = snapshot(ws)
    out, err = io.StringIO(), io.StringIO()
    with warnings.catch_warnings(record=True) as caught, redirect_stdout(out), redirect_stderr(err):
        warnings.simplefilter("always")
        code = main([str(a) for a in argv])
    text = err.getvalue()
    lines = text.strip().splitlines()
    shown = f"argv={[str(a)[:80] for a in argv]} code={code} stderr={text[-600:]!r}"
    assert LAUNCHED not in text, shown
    assert code in codes, shown
    if "--debug" not in argv and code != 0:  # --debug adds the traceback
        assert len(lines) <= 1, shown
    if code == 0:  # what was read (one line a run), KLs clipped, a warning: each one line of its own
        assert all(line.startswith("[overopt] ") for line in lines), shown
    assert code != 2 or lines[-1].startswith("overopt: error: "), shown
    noisy = [w for w in caught if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning))]
    assert not noisy, f"{shown} warnings={[str(w.message)[:200] for w in noisy]}"
    assert snapshot(ws) == before, shown
    for p in (ws / "out").iterdir():  # what a command wrote under --out goes before the next one
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    return code, text


def _leaves(d: dict, prefix: str = "") -> list[str]:
    return [x for k, v in d.items() for x in (_leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else [prefix + k])]


KEYS = _leaves(to_dict(tiny())) + ["nope", "policy.nope", "a..b", "rl.ppo", "ladder", "ladder.sizes[0].name", ""]
TEXT = st.characters(blacklist_categories=("Cs",))  # any character but lone surrogates (not encodable)
_DIMS = ("name", "n_layer", "d_model", "n_head")
SIZE = st.tuples(
    st.sampled_from(["a", "x/../../y", ".h", "..", "a b", "ok-1", "é", ""]), *map(st.integers, (-2, -8, -1), (3, 64, 8))
)
SIZE = SIZE.map(lambda t: repr([dict(zip(_DIMS, t))]))
TEXT_VALUE = st.one_of(
    st.integers(-3, 70).map(str),
    st.floats(-2, 2).map(repr),
    st.integers(-(10**25), 10**25).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(
        "1e999 -1e999 nan inf true none [] [[]] {} {'a':1} 'x' () [0.0,-1] [1,1] ['nope'] 1_000 0x10".split()
    ),
    st.sampled_from(["[" * 60, "'a' 'b'", "--set"]),
    st.text(TEXT, max_size=20),
    st.integers(10_001, 40_000).map(lambda n: "9" * n),
    SIZE,
)
PAIR = st.tuples(st.sampled_from(KEYS), TEXT_VALUE).map(lambda kv: f"{kv[0]}={kv[1]}")
OVERRIDE = st.one_of(PAIR, PAIR, st.text(TEXT, max_size=30))  # mostly key=value


def _config_is_valid(overrides: list[str], preset: str = "tiny") -> bool:
    try:
        resolve(preset, overrides)
    except Exception:  # noqa: BLE001 - UsageError, or a bug that main must answer too: run it for real
        return False
    return True


@settings(max_examples=60, **SETTINGS)
@given(overrides=st.lists(OVERRIDE, min_size=1, max_size=4), to_finished=st.booleans())
def test_generated_study_configs(ws, overrides, to_finished):
    sets = [a for o in overrides for a in ("--set", o)]
    valid = _config_is_valid(overrides)
    out = ws / "finished" if to_finished else ws / "out" / "study"
    call(ws, ["study", *(["--print-config"] if valid else ["--out", out]), *sets], codes=(0,) if valid else (2,))
    assert not (ws / "out" / "study").exists()


# ---- sweep specs


def toml_value(v) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(map(toml_value, v)) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + " }"
    text = json.dumps(v, ensure_ascii=False)  # strings, numbers and true/false as TOML writes them
    return text if isinstance(v, str) else text.lower().replace("infinity", "inf")


SCALAR = st.one_of(
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(TEXT, max_size=8),
    st.sampled_from(["rm-s", "x/../y", "map", "nope"]),
    st.integers(-2, 40),
)
VALUE = st.recursive(
    SCALAR,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(KEYS[:30]), inner, max_size=3)
    ),
    max_leaves=8,
)
AXIS_KEY = st.sampled_from([k for k in KEYS if k] + ["ladder.sizes", "rl.kl_coefs", "x.y"])


@st.composite
def spec_text(draw) -> bytes:
    kind = draw(st.sampled_from(["structured"] * 5 + ["text", "bytes"]))
    if kind != "structured":
        return draw(st.binary(max_size=200)) if kind == "bytes" else draw(st.text(TEXT, max_size=200)).encode()
    top = {"preset": st.sampled_from(["tiny", "small", "nope", 3]), "name": st.sampled_from(["ok", "a/b", "..", ".h"])}
    top.update({k: VALUE for k in ("junk", "base", "axes")})
    keys = draw(st.lists(st.sampled_from(list(top)), max_size=2, unique=True))
    lines = [f"{k} = {toml_value(draw(top[k]))}" for k in keys]
    lines = ['preset = "tiny"', *lines] if "preset" not in keys and draw(st.booleans()) else lines
    axes = st.one_of(st.lists(VALUE, max_size=3), VALUE)
    for header, values, n in (
        ("[base]", VALUE, 1),
        ("[axes]", axes, 1),
        ("[[zip]]", axes, 2),
        ("[[exclude]]", VALUE, 1),
    ):
        for _ in range(draw(st.integers(0, n))):
            body = draw(st.dictionaries(AXIS_KEY, values, max_size=3))
            quote = json.dumps if header != "[base]" else str  # [base] takes dotted keys as nested tables
            lines += [header] + [f"{quote(k)} = {toml_value(v)}" for k, v in body.items()]
    return ("\n".join(lines) + "\n").encode()


def _spec_is_valid(path: Path) -> bool:
    from sweeps.spec import expand, load_spec

    try:
        expand(load_spec(path))
    except Exception:  # noqa: BLE001 - UsageError, or a bug main must turn into exit 2 as well
        return False
    return True


@settings(max_examples=50, **SETTINGS)
@given(text=spec_text())
def test_generated_specs(ws, text):
    path = ws / "inputs" / "spec.toml"
    path.write_bytes(text)
    out = ws / "out" / "sweep"
    valid = _spec_is_valid(path)
    call(
        ws, ["sweep", "launch", path, "--out", out, *(["--dry-run"] if valid else [])], codes=(0, 2) if valid else (2,)
    )
    assert not out.exists()


# ---- points tables

CELL = st.one_of(
    st.floats(0, 5).map(repr),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**15), 10**15).map(str),
    st.sampled_from(["bon", "rl", "True", "False", "", "x", "1e300", "-1", "nan", "inf", "0", "1", "2.5", '"a,b"']),
)
COLUMN = st.sampled_from(["method", "kl", "gold", "gold_se", "rm_params", "seed", "n", "prompt", "kl_coef", "junk"])
_NUM = {"kl": (0, 8), "gold": (-2, 2), "gold_se": (0.01, 0.5)}
_SOME = {"method": "bon rl", "rm_params": "1000 10000 100000", "seed": "0 1 2", "n": "1 2 4 8 16 64"}
_SOME.update(prompt="0 1 2 3", kl_coef="0.0 0.1", junk="a b abc")
PLAUSIBLE = {  # a cell each column would hold in a real table
    **{c: st.sampled_from(v.split()) for c, v in _SOME.items()},
    **{c: st.floats(*r).map(repr) for c, r in _NUM.items()},
}


@st.composite
def table(draw) -> tuple[str, bytes]:
    """(suffix, content): mostly a plausible table with at most one odd cell; else anything."""
    kind = draw(st.sampled_from(["plausible"] * 3 + ["csv", "jsonl", "bytes"]))
    if kind == "bytes":
        return "csv", draw(st.binary(max_size=120))
    if kind == "plausible":
        extra = [c for c in PLAUSIBLE if c not in ("method", "kl", "gold")]
        cols = ["method", "kl", "gold", *draw(st.lists(st.sampled_from(extra), max_size=3, unique=True))]
        rows = [[draw(PLAUSIBLE[c]) for c in cols] for _ in range(draw(st.integers(0, 25)))]
        if rows and draw(st.booleans()):
            rows[draw(st.integers(0, len(rows) - 1))][draw(st.integers(0, len(cols) - 1))] = draw(CELL)
        kind = draw(st.sampled_from(["csv", "jsonl"]))
    else:
        cols = draw(st.lists(COLUMN, min_size=0, max_size=6))
        rows = draw(st.lists(st.lists(CELL, min_size=len(cols), max_size=len(cols) + 1), max_size=25))
    if kind == "csv":
        return "csv", ("\n".join([",".join(cols), *(",".join(r) for r in rows)]) + "\n").encode()
    return "jsonl", "".join(json.dumps({c: _json_or_text(v) for c, v in zip(cols, r)}) + "\n" for r in rows).encode()


def _json_or_text(cell: str):
    try:
        return json.loads(cell)
    except ValueError:
        return cell


# one token each (--flag=value); OUT and WS stand for the output folder and the workspace
FIT_FLAGS = st.lists(
    st.sampled_from(
        "--by=method --by= --by=nope --method=rl --method=power --method=nope --kl-col=gold --gold-col=junk"
        " --shared-alpha --resample=points --resample=seed --resample=nope --seed=-1 --seed=3 --d-cut=1.0"
        " --d-cut=nan --d-cut=-2 --n-boot=-1 --n-boot=1000000000 --n-boot=x --json=OUT/fit.json"
        " --json=OUT/new/dir/fit.json --json=WS/afile/fit.json --json=WS/dangling --json=OUT --nope"
        " --kl-per-token=completions/mean_length --kl-per-token=response_length --kl-per-token=0 --kl-per-token=nan"
        " --kl-per-token=-2 --kl-per-token=50 --kl-per-token=1 --kl-per-token= --kl-per-token=1e99"
        " --recentre=first --recentre=none --recentre=0.5 --recentre=nan --recentre=x --recentre=1e300"
        " --kl-col=objective/kl --gold-col=rewards/gold/mean --gold-col=train/rewards/gold/mean".split()
    ),
    max_size=4,
)
# inputs that name their method, and trainer logs (tests/fixtures_trl, copied into the workspace)
FIT_INPUTS = [
    "WS/inputs/good.csv:bon",
    "WS/inputs/good.csv:rl",
    "WS/inputs/good.csv:nope",
    "WS/inputs/good.csv:",
    "WS/trl/grpo_run",
    "WS/trl/grpo_run/checkpoint-20",
    "WS/trl/grpo_run/config.json",
    "WS/trl/grpo_run/runs",
    "WS/trl/ppo_run",
    "WS/trl/ppo_run:bon",
    "WS/trl/grpo_log_history.jsonl",
    "WS/trl/wandb_kl.csv",
    "WS/trl/wandb_gold.csv",
]


def _fill(ws: Path, argv: list[str]) -> list[str]:
    return [a.replace("OUT", str(ws / "out")).replace("WS", str(ws)) for a in argv]


@settings(max_examples=50, **SETTINGS)
@given(tab=table(), flags=FIT_FLAGS)
def test_generated_tables_at_fit_and_figures(ws, tab, flags):
    from figures.data import load_data

    suffix, data = tab
    path = ws / "inputs" / f"points.{suffix}"
    for old in (ws / "inputs").glob("points.*"):
        old.unlink()
    path.write_bytes(data)
    call(ws, ["fit", path, "--n-boot", "5", *_fill(ws, flags)])
    try:  # figures reads the same table from a directory; only a table it refuses is run (drawing is slow)
        load_data(ws / "inputs")
    except Exception:  # noqa: BLE001
        call(ws, ["figures", ws / "inputs", "--out", ws / "out" / "figs"], codes=(2,))
        assert not (ws / "out" / "figs").exists()


# ---- trainer logs and samples tables (issue 21)

LOG_KEYS = ["kl", "objective/kl", "rewards/gold/mean", "gold", "reward", "completions/mean_length", "step", "epoch"]
LOG_KEYS += ["response_length", "train_runtime", "eval_kl", "objective/scores", "learning_rate", "junk"]
LOG_VALUE = st.one_of(
    st.floats(0, 40),
    st.floats(0, 40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-5, 10**15),
    st.sampled_from([None, True, "x", "", [1, 2], {"a": 1}, 1e300, -1.0, 0.0]),
)


@st.composite
def trainer_log(draw) -> tuple[str, bytes]:
    """(file name, content): a log_history (trainer_state.json or JSON lines) with odd keys and values."""
    entries = draw(st.lists(st.dictionaries(st.sampled_from(LOG_KEYS), LOG_VALUE, max_size=8), max_size=20))
    if draw(st.integers(0, 3)) == 0:  # a plausible log whose steps repeat or go backwards (issue 33)
        steps = draw(st.lists(st.integers(0, 6), min_size=3, max_size=12))
        entries = [{"step": s, "objective/kl": 0.1 * (i + 1), "gold": 0.01 * i} for i, s in enumerate(steps)]
    kind = draw(st.sampled_from(["state", "jsonl", "state_odd"]))
    if kind == "jsonl":
        return "log.jsonl", "".join(json.dumps(e) + "\n" for e in entries).encode()
    state = {"log_history": entries, "global_step": 3} if kind == "state" else draw(st.sampled_from([[], {}, 3]))
    return "trainer_state.json", json.dumps(state).encode()


LOG_FLAGS = st.lists(
    st.sampled_from(
        "--kl-per-token=completions/mean_length --kl-per-token=response_length --kl-per-token=1 --kl-per-token=0"
        " --gold-col=rewards/gold/mean --kl-col=objective/kl --kl-col=junk --recentre=first --recentre=2"
        " --method=rl --by=run --json=OUT/fit.json".split()
    ),
    max_size=4,
)


@settings(max_examples=60, **SETTINGS)
@given(log=trainer_log(), flags=LOG_FLAGS, spec=st.sampled_from(["", ":rl", ":bon"]))
def test_generated_trainer_logs_at_fit(ws, log, flags, spec):
    name, data = log
    folder = ws / "inputs" / "run"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    (folder / name).write_bytes(data)
    target = folder if name == "trainer_state.json" and not spec else folder / name
    call(ws, ["fit", f"{target}{spec}", "--n-boot", "5", *_fill(ws, flags)])


SAMPLE_COLUMNS = ["prompt", "proxy", "gold", "proxy_0", "proxy_1", "proxy_2", "ref_logprob", "response", "rm_params"]
BON_FLAGS = st.lists(
    st.sampled_from(
        "--objective=mean --objective=uwo --objective=max --uwo-lambda=0.5 --uwo-lambda=-1 --uwo-lambda=nan"
        " --pool-size=4 --pool-size=0 --pool-size=99 --pool-size=x --recentre=first --recentre=x --n-boot=5"
        " --n-boot=-1 --seed=-1 --json=OUT/bon.json --json=WS/afile/b.json --json=WS/dangling --json=OUT --nope".split()
    ),
    max_size=4,
)


@st.composite
def samples_table(draw) -> tuple[str, bytes]:
    """(suffix, content): a samples table, mostly plausible (prompts with 4-8 samples) with odd cells."""
    if draw(st.integers(0, 5)) == 0:
        return "csv", draw(st.binary(max_size=120))
    cols = ["prompt", "gold", *draw(st.sampled_from([["proxy"], ["proxy_0", "proxy_1"], ["proxy_0", "proxy_2"]]))]
    cols += draw(st.lists(st.sampled_from(SAMPLE_COLUMNS), max_size=2, unique=True))
    cols = list(dict.fromkeys(c for c in cols if draw(st.integers(0, 12)) or c not in ("prompt", "gold")))
    sizes = draw(st.lists(st.integers(1, 8), min_size=1, max_size=4))
    rows = [[_sample_cell(draw, c, p, j) for c in cols] for p, n in enumerate(sizes) for j in range(n)]
    for _ in range(draw(st.integers(0, 2))):
        if rows and cols:
            rows[draw(st.integers(0, len(rows) - 1))][draw(st.integers(0, len(cols) - 1))] = draw(CELL)
    if draw(st.booleans()):
        return "csv", ("\n".join([",".join(cols), *(",".join(r) for r in rows)]) + "\n").encode()
    return "jsonl", "".join(json.dumps({c: _json_or_text(v) for c, v in zip(cols, r)}) + "\n" for r in rows).encode()


def _sample_cell(draw, col: str, prompt: int, j: int) -> str:
    if col == "prompt":  # an id, or token ids (a list: JSON lines keep it one) sharing a long prefix
        return draw(st.sampled_from([f"q{prompt}", str(prompt), json.dumps([7] * 300 + [prompt])]))
    if col in ("response", "ref_logprob"):
        return str(-float(j % 3))
    if col == "rm_params":
        return draw(st.sampled_from(["1000", "10000"]))
    return repr(draw(st.floats(-3, 3)))


@settings(max_examples=60, **SETTINGS)
@given(tab=samples_table(), flags=BON_FLAGS)
def test_generated_samples_at_bon(ws, tab, flags):
    suffix, data = tab
    for old in (ws / "inputs").glob("gen_samples.*"):
        old.unlink()
    path = ws / "inputs" / f"gen_samples.{suffix}"
    path.write_bytes(data)
    call(ws, ["bon", path, *_fill(ws, flags)])


# ---- flags at every verb

PATHS = ["WS/finished", "WS/sweep", "WS/missing", "WS/afile", "WS/dangling", "OUT/new", ""]


FLAGS = {  # the flags each verb is given (a few at random), one token each
    "study": "--preset=tiny --preset=nope --preset= --replicate=-3 --replicate=0 --replicate=2 --replicate=x"
    f" --replicate={2**70} --resume --out=WS/finished --out=WS/afile --out=WS/dangling --out=OUT/study"
    " --out=WS/sweep --no-progress --print-config --debug --nope",
    "figures": "--only=predicted_peaks --only=nope --only= --only=, --only=extrapolation,nope --out=OUT/figs"
    " --out=WS/afile --out=WS/dangling --no-report",
    "sweep launch": "--out=OUT/sweep --out=WS/finished --out=WS/afile --out=WS/dangling --out=WS/sweep"
    " --executor=local --executor=debug --executor=slurm --executor=nope --max-parallel=0 --max-parallel=-1"
    " --max-parallel=2 --max-parallel=x --timeout-min=0 --timeout-min=-5 --timeout-min=10 --gpus-per-job=-1"
    " --gpus-per-job=2 --mem-gb=0 --mem-gb=8 --jax-cache=OUT/cache --no-figures --dry-run",
    "sweep status": "--nope",
    "verify": "--nope",
}


@st.composite
def verb_argv(draw) -> list[str]:
    verb = draw(
        st.sampled_from(["study", "fit", "bon", "figures", "sweep launch", "sweep status", "verify", "nope", ""])
    )
    argv = verb.split()
    if verb == "fit":
        inputs = draw(st.lists(st.sampled_from(["WS/inputs/good.csv", *PATHS, *FIT_INPUTS]), min_size=1, max_size=2))
        return argv + inputs + draw(FIT_FLAGS)
    if verb == "bon":
        inputs = draw(st.lists(st.sampled_from(["WS/inputs/samples.csv", "WS/inputs/good.csv", *PATHS]), max_size=2))
        return argv + inputs + draw(BON_FLAGS)
    if verb == "sweep launch":
        argv.append(draw(st.sampled_from(["WS/inputs/good.toml", *PATHS])))
    elif verb in ("figures", "sweep status", "verify"):
        argv.append(draw(st.sampled_from(PATHS)))
    argv += draw(st.lists(st.sampled_from(FLAGS[verb].split()), max_size=4)) if verb in FLAGS else []
    if verb == "study":
        argv += [a for o in draw(st.lists(OVERRIDE, max_size=2)) for a in ("--set", o)]
    return argv


def _make_safe(ws: Path, argv: list[str]) -> list[str]:
    """The argv, changed only where it would run for real: a valid study prints its config, a valid sweep
    spec is a dry run, a figures command that would draw draws one figure into --out without the report."""
    from overopt.cli import build_parser

    try:
        args = build_parser(argv[0] if argv else None).parse_args(argv)
    except (UsageError, SystemExit):
        return argv
    verb = getattr(args, "verb", None)
    if verb == "study" and not args.print_config:  # a study DIR would accept: only new, not --resume
        new = args.out is None or (Path(args.out) == ws / "out" / "study" and not args.resume)
        extra = [f"replicate={args.replicate}"] if args.replicate is not None else []
        return argv + ["--print-config"] if new and _config_is_valid([*args.overrides, *extra], args.preset) else argv
    if verb == "sweep" and args.action == "launch" and not args.dry_run and _spec_is_valid(Path(args.spec)):
        return argv + ["--dry-run"]
    if verb == "figures":
        from figures.cli import parse_only
        from figures.data import load_data

        try:
            parse_only(args.only)
            load_data(Path(args.inputs[0]))
        except Exception:  # noqa: BLE001
            return argv
        return [
            "figures",
            args.inputs[0],
            "--only",
            "predicted_peaks",
            "--no-report",
            "--out",
            str(ws / "out" / "figs"),
        ]
    return argv


@settings(max_examples=60, **SETTINGS)
@given(argv=verb_argv())
def test_generated_flags_at_every_verb(ws, argv):
    argv = _make_safe(ws, _fill(ws, argv))
    verify = argv[:1] == ["verify"] or argv[:2] == ["--debug", "verify"]
    call(ws, argv, codes=(0, 1, 2) if verify else (0, 2))


# ---- smoke cases through the installed entry point: one a verb (every other case runs in process)

ENTRY_POINT_CASES = (
    ("study --set policy.n_head=0 --out OUT/s", "policy.n_head"),
    ("fit WS/nope.csv", "no such"),
    ("bon WS/nope.csv", "no such"),
    ("figures WS/missing", "not a directory"),
    ("sweep launch WS/nope.toml --out OUT/sw", "no such spec file"),
    ("sweep status WS/missing", "no overopt sweep here"),
    ("verify WS/missing", "not a directory"),
)


def test_entry_point_subprocess(ws):
    exe = Path(sys.executable).with_name("overopt")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "overopt.cli"]
    before = snapshot(ws)
    for argv, match in ENTRY_POINT_CASES:
        res = subprocess.run(cmd + _fill(ws, argv.split()), capture_output=True, text=True, timeout=300)
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 2 and len(lines) == 1 and match in lines[0], (argv, res.stderr)
        assert lines[0].startswith("overopt: error: ") and not res.stdout, (argv, res.stdout)
    assert not list((ws / "out").iterdir()) and snapshot(ws) == before
