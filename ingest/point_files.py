"""Reading the files and directories that hold points tables, one problem one line (`UsageError`).

`read_input(path)` yields, for one input path, (DataFrame, description, foreign) tables and trainer logs
(`ingest.trainer_logs.TrainerLog`): a study's or sweep's points.parquet, the finished runs below a
directory, a points file (.parquet, .csv, .jsonl), a trainer's output, TensorBoard event files, W&B CSV
exports. `ingest.load.load_points` maps, concatenates and validates what it yields.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from core.errors import UsageError
from core.store import find_runs
from ingest.event_logs import event_dirs, is_event_file, is_wandb_header, read_tensorboard, read_wandb_csv
from ingest.log_files import (
    CHECKPOINT,
    hf_model_config,
    read_jsonl_log,
    read_trainer_state,
    table_log,
    trainer_dir_state,
)
from ingest.trainer_logs import is_trainer_log
from scaling.points import no_duplicates

FILE_SUFFIXES = (".parquet", ".pq", ".csv", ".jsonl", ".ndjson", ".json")


def csv_header(path: Path) -> list[str]:
    """The first row of a CSV file as written (pandas renames a repeated name 'kl' to 'kl.1')."""
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
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
    state = trainer_dir_state(path)
    if state is not None:
        run = path.resolve().parent.name if CHECKPOINT.fullmatch(path.resolve().name) else path.resolve().name
        yield read_trainer_state(state[0], run=run, note=state[1])
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
    if event_dirs(path):
        yield from read_tensorboard(path)
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
        yield read_trainer_state(path)
        return
    if suffix in (".jsonl", ".ndjson"):
        nonempty(path)
        log = read_jsonl_log(path, path.read_text())
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


def nonempty(path: Path) -> None:
    if path.stat().st_size == 0:
        raise UsageError(f"empty file: {path}")


def read_table(path: Path) -> pd.DataFrame:
    """One .parquet/.csv/.jsonl table; every problem a one-line UsageError naming the file."""
    if path.suffix.lower() == ".json":
        raise UsageError(f"unreadable format: {path} (expected .parquet, .csv or .jsonl)")
    return read_file(path)


def read_file(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix not in FILE_SUFFIXES or suffix == ".json":
        raise UsageError(
            f"unreadable format: {path} (expected .parquet, .csv, .jsonl, trainer_state.json or TensorBoard events)"
        )
    nonempty(path)
    try:
        if suffix in (".parquet", ".pq"):
            df = pd.read_parquet(path)
        elif suffix == ".csv":
            no_duplicates(csv_header(path), str(path))
            df = pd.read_csv(path)
        else:
            df = pd.read_json(path, lines=True)
    except UsageError:
        raise
    except Exception as e:  # any parser failure is the user's file, not our bug
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UsageError(f"unreadable file {path}: {first}") from None
    if len(df) == 0:
        raise UsageError(f"empty file: {path} (no rows)")
    no_duplicates(df.columns, str(path))
    return df
