"""Reading the files and directories that hold points tables, one problem one line (`UsageError`).

`read_input(path)` yields, for one input path, (DataFrame, description, foreign) tables and trainer logs
(`ingest.trainer_logs.TrainerLog`): a study's or sweep's points.parquet, the finished runs below a
directory, a points file (.parquet, .csv, .jsonl), a trainer's output, TensorBoard event files, W&B CSV
exports. `ingest.load.load_points` maps, concatenates and validates what it yields.
"""

from __future__ import annotations

import csv
import os
import stat
from pathlib import Path

import pandas as pd

from core import safe_read
from core.errors import UsageError, show
from core.store import find_runs
from ingest.event_logs import is_event_file, is_wandb_header, read_tensorboard, read_wandb_csv
from ingest.log_files import hf_model_config, read_jsonl_log, read_trainer_state, table_log
from ingest.run_dirs import read_trainer_dir, trainer_runs
from ingest.trainer_logs import is_trainer_log
from scaling.points import no_duplicates

FILE_SUFFIXES = (".parquet", ".pq", ".csv", ".jsonl", ".ndjson", ".json")
TEXT_COLUMNS = {"prompt": str, "response": str}
"""The columns of a samples table read from CSV as text: identities, compared as written."""


def given_once(given: dict, src, path: Path, method) -> None:
    """UsageError when input `src` (`path`, read with `method`) names a file or directory already given (the
    same path twice, or a link to it): read twice, its rows would count twice (a pool of doubled samples, a
    curve of doubled points, every interval narrowed). `given` collects the inputs seen."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return  # the reader says why
    key = (st.st_dev, st.st_ino, method)
    if key in given:
        what = "directory" if stat.S_ISDIR(st.st_mode) else "file"
        raise UsageError(
            f"{src}: the same {what} as the input {given[key]} (given twice, or a link to it): give each input once"
        )
    given[key] = src


def csv_header(path: Path) -> list[str]:
    """The first row of a CSV file as written (pandas renames a repeated name 'kl' to 'kl.1')."""
    with safe_read.open_file(path, text=True) as f:  # a FIFO or a device: refused, never blocked on
        return next(csv.reader(f), [])


def read_input(path: Path):
    """Yield, for one input path, (DataFrame, description, foreign) tables and TrainerLogs."""
    if not path.exists():
        raise UsageError(f"no such file or directory: {path}")
    if path.is_dir():
        yield from read_dir(path)
        return
    yield from read_foreign(path)


def read_dir(path: Path):
    """A study's or sweep's aggregated points.parquet (it carries the sweep's axis columns); else a trainer
    output or checkpoint directory's trainer_state.json; else the finished runs below `path` (DONE marker
    and points.parquet; a Hugging Face model's config.json is no run); else a top-level points file; else
    TensorBoard event files."""
    if (path / "points.parquet").exists() and ((path / "study.json").exists() or (path / "sweep.json").exists()):
        yield read_file(path / "points.parquet"), str(path / "points.parquet"), False
        return
    own = read_trainer_dir(path)
    if own is not None:
        yield own
        return
    runs, models = [], []
    for r in find_runs(path, done_only=False):
        is_model = not r.done and not (r.path / "points.parquet").exists() and hf_model_config(r.path / "config.json")
        (models if is_model else runs).append(r)
    done = [r for r in runs if r.done and (r.path / "points.parquet").exists()]
    if done:
        for r in done:
            yield read_file(r.path / "points.parquet"), str(r.path), False
        return
    own_run_unfinished = any(r.path.resolve() == path.resolve() for r in runs)
    for name in ("points.parquet", "points.csv", "points.jsonl"):
        top = path / name
        if top.exists() and not own_run_unfinished:
            yield from read_foreign(top)
            return
    if runs:
        raise UsageError(f"{path}: no finished run with points.parquet ({len(runs)} unfinished run(s))")
    logs = trainer_runs(path)  # trainer output dirs and event dirs below: one run each, none dropped
    if logs:
        yield from logs
        return
    if models:
        kind = hf_model_config(models[0].path / "config.json")
        raise UsageError(
            f"{path}: a Hugging Face model directory ({kind}), not an overopt run, and no trainer_state.json here"
            " or in a checkpoint-N/ below it: point at the trainer's output directory or a checkpoint, or call"
            " trainer.save_state()"
        )
    raise UsageError(f"{path}: no runs and no points file in this directory")


def read_foreign(path: Path):
    """Yield what one user-given file holds: a points table (DataFrame, description, True) or TrainerLogs."""
    if is_event_file(path):
        yield from read_tensorboard(path)
        return
    suffix = path.suffix.lower()
    if suffix == ".json":
        nonempty(path)
        points = json_points(path)
        yield (points, str(path), True) if points is not None else read_trainer_state(path)
        return
    if suffix in (".jsonl", ".ndjson"):
        nonempty(path)
        log = read_jsonl_log(path, safe_read.read_text(path, safe_read.MAX_LOG))
        if log is not None:
            yield log
            return
    df = read_file(path)
    if suffix == ".csv" and is_wandb_header(csv_header(path)):
        yield from read_wandb_csv(path, df)
    elif is_trainer_log(map(str, df.columns)):
        yield table_log(df, str(path), "parquet" if suffix in (".parquet", ".pq") else "table", path.stem)
    else:
        yield df, str(path), True


def json_points(path: Path) -> pd.DataFrame | None:
    """The points of an `overopt bon --json` (or `overopt fit`-style) result: {"points": [row, ...], ...};
    None for any other JSON (a trainer_state.json)."""
    try:
        data = safe_read.read_json(path)
    except (ValueError, RecursionError, OSError, UsageError):
        return None  # the trainer-state reader says why
    if not isinstance(data, dict) or "points" not in data or "log_history" in data:
        return None
    rows = data["points"]
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise UsageError(f"{path}: 'points' must be a non-empty list of rows (objects)")
    return pd.DataFrame(rows)


def jsonl_table(path: Path) -> pd.DataFrame:
    """A JSON-lines table, each line an object taken as written: text stays text (pandas' JSON reader turns
    "007" and "1" into numbers, merging prompt "1" with prompt 1 and response "007" with "7"), floats are
    read exactly, an integer too long to convert is bad input (see `core.safe_read.loads`)."""
    records = []
    for i, line in enumerate(safe_read.read_text(path, safe_read.MAX_LOG).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = safe_read.loads(line)
        except (ValueError, RecursionError) as e:
            first = (str(e).splitlines() or [type(e).__name__])[0]
            raise UsageError(f"unreadable file {path}: line {i}: {first}") from None
        if not isinstance(rec, dict):
            raise UsageError(f"unreadable file {path}: line {i} is {show(rec, 40)}, not a JSON object")
        records.append(rec)
    return pd.DataFrame.from_records(records) if records else pd.DataFrame()


def nonempty(path: Path) -> None:
    """UsageError for an empty file, or for anything not a regular file (a FIFO, a device: never opened)."""
    with safe_read.open_file(path, safe_read.MAX_TABLE) as f:
        size = os.fstat(f.fileno()).st_size
    if size == 0:
        raise UsageError(f"empty file: {path}")


def read_table(path: Path, text: bool = False) -> pd.DataFrame:
    """One .parquet/.csv/.jsonl table; every problem a one-line UsageError naming the file. text: a CSV's
    cells are taken as written ("NA", "None", "" are text; a numeric column's empty cell then fails as a
    number where it is read)."""
    if path.suffix.lower() == ".json":
        raise UsageError(f"unreadable format: {path} (expected .parquet, .csv or .jsonl)")
    return read_file(path, text)


def read_file(path: Path, text: bool = False) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix not in FILE_SUFFIXES or suffix == ".json":
        raise UsageError(
            f"unreadable format: {path} (expected .parquet, .csv, .jsonl, trainer_state.json or TensorBoard events)"
        )
    nonempty(path)
    try:
        if suffix in (".parquet", ".pq"):
            df = safe_read.read_parquet(path)
        elif suffix == ".csv":
            no_duplicates(csv_header(path), str(path))
            # text: "NA", "None" and empty cells are text (an empty completion), never missing values, and a
            # prompt or response is its text ("01" and "1" are two prompts, never the number 1)
            with safe_read.open_file(path, text=True) as f:
                df = pd.read_csv(f, keep_default_na=False, dtype=TEXT_COLUMNS) if text else pd.read_csv(f)
        else:
            df = jsonl_table(path)
    except UsageError:
        raise
    except Exception as e:  # any parser failure is the user's file, not our bug
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UsageError(f"unreadable file {path}: {first}") from None
    if len(df) == 0:
        raise UsageError(f"empty file: {path} (no rows)")
    no_duplicates(df.columns, str(path))
    return df
