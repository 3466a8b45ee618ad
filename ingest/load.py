"""Points from any input: run directories, study and sweep directories, points files, trainer logs.

`load_points(inputs)` reads every input (`ingest.point_files.read_input`: tables and trainer logs), turns
trainer logs into points (`ingest.trainer_logs.log_frame`), maps the KL and gold columns, applies the input
specs (`PATH:bon`, `--kl-per-token`, `--recentre`: `ingest.input_specs`), concatenates, and validates the
table (`scaling.points.validate_points`, the schema). `with_prompt_rows` swaps a study's best-of-n mean
curves for its per-prompt rows (DIR/bon_prompts.parquet). Every problem with the input raises `UsageError`
with a one-line message.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from core.errors import UsageError
from ingest.event_logs import merge_logs
from ingest.input_specs import convert_table, parse_spec
from ingest.input_specs import recentre as recentre_gold
from ingest.point_files import given_once, read_file, read_input
from ingest.run_dirs import NO_SEED, one_source_a_run
from ingest.trainer_logs import TrainerLog, close_names, log_frame
from scaling.points import (
    BON_PROMPTS,
    GROUP_COLS,
    found_columns,
    quoted_or,
    swap_bon_rows,
    upgrade_columns,
    validate_points,
)


def load_points(inputs, kl_col: str = "kl", gold_col: str = "gold", **options) -> pd.DataFrame:
    """Read and concatenate points from every input, map column names, and validate.

    Arguments:
      inputs: paths (str or Path), each optionally `PATH:bon` / `PATH:rl` (`input_specs.parse_spec`): run
        dirs, dirs holding runs at any depth, .parquet/.csv/.jsonl files, trainer logs (a Hugging Face
        `trainer_state.json`, a trainer output or `checkpoint-N` directory, a JSON-lines dump of
        `log_history`, TensorBoard event files, W&B CSV exports: `ingest.trainer_logs`).
      kl_col, gold_col: names of the KL and gold columns in the inputs (renamed to `kl` and `gold`); in a
        trainer log "kl" and "gold" find the trainer's known names.
      options: see `load_points_with_sources`.
    Returns: one DataFrame with `kl` and `gold` as float64 and tiny negative KLs clipped to 0.
    """
    return load_points_with_sources(inputs, kl_col, gold_col, **options)[0]


def load_points_with_sources(
    inputs,
    kl_col: str = "kl",
    gold_col: str = "gold",
    *,
    kl_per_token=None,
    recentre=None,
    need_method=False,
    evals=False,
    algo=None,
    pool_runs=None,
) -> tuple[pd.DataFrame, list[dict]]:
    """`load_points`, and a list saying, for each trainer log (or converted table), which KL (units,
    conversion) and gold it used (`ingest.trainer_logs.log_frame`'s `source`).

    Options: kl_per_token (None, a length column or a number: `input_specs.parse_kl_per_token`; a per-token
    KL without it is refused); recentre (None, "first" or a number: `input_specs.recentre`); need_method
    (every input must say its method: a `method` column, `PATH:bon`/`PATH:rl`, or a trainer log's "rl");
    evals (trainer logs: their evaluation entries, `eval_kl` and `eval_rewards/gold/mean`); algo (the
    optimizer of every trainer log, else what each records); pool_runs (None: each trainer run its own
    curve, its `run` a grouping column; "seeds": the runs are seeds of one config, `seed` the seed each
    records, else its name, so intervals are over runs; "curve": one curve, intervals over points).
    """
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    if not inputs:
        raise UsageError("no input given")
    items = []  # (method spec, TrainerLog or (DataFrame, where, foreign))
    given: dict = {}  # (file identity, method spec) -> the input that named it first
    for src in inputs:
        path, method = parse_spec(src)
        given_once(given, src, path, method)
        items += [(method, item) for item in read_input(path)]
    logs = one_source_a_run(merge_logs([item for _, item in items if isinstance(item, TrainerLog)]))
    distinct_runs(logs)
    specs = {id(item): m for m, item in items if isinstance(item, TrainerLog)}
    items = [(m, item) for m, item in items if not isinstance(item, TrainerLog)]
    items += [(specs.get(id(log)), log) for log in logs]
    frames, sources = [], []
    table_cols: set = set()  # every column of the tables (not trainer logs) read
    for method, item in items:
        if isinstance(item, TrainerLog):
            df, source = log_frame(item, kl_col, gold_col, kl_per_token, evals=evals, algo=algo)
            where = item.where
        else:
            df, where, foreign = item
            table_cols.update(str(c) for c in df.columns)
            df = upgrade_columns(df, keep=(kl_col, gold_col))
            table_cols.update(str(c) for c in df.columns)
            df = _map_columns(df, kl_col, gold_col, where)
            df, source = convert_table(df, kl_per_token, where) if foreign else (df, None)
        if source is not None:
            sources.append(source)
        if method is not None:
            df = df.assign(method=method)
        elif need_method and ("method" not in df.columns or df["method"].isna().any()):
            raise UsageError(
                f"{where}: no 'method' column (or empty cells): say which law with {where}:bon or {where}:rl,"
                " or --method LAW for every input"
            )
        if recentre is not None:
            df = recentre_gold(df, recentre, GROUP_COLS + ("seed", "run")).assign(recentred=str(recentre))
        frames.append(df)  # a seed or run: its own curve
    if not logs:  # a column asked for by name that no input has: say so (the fallback is for mixed inputs)
        for col, flag, std in ((kl_col, "--kl-col", "kl"), (gold_col, "--gold-col", "gold")):
            if col != std and col not in table_cols:
                found = _found_cols(table_cols)
                raise UsageError(f"{flag} {col}: no input has a '{col}' column (columns found: {found})")
    if kl_per_token is not None and not any(s.get("kl_per_token") is not None for s in sources):
        raise UsageError(
            f"--kl-per-token {kl_per_token}: no input has a per-token KL to convert (a trainer log whose KL is"
            f" per token, or a table with a '{kl_per_token}' column)"
        )
    if (evals or pool_runs or algo) and not logs:
        flag = "--eval" if evals else "--pool-runs" if pool_runs else "--algo"
        raise UsageError(f"{flag} applies to trainer logs, and no input is one")
    if pool_runs is not None:
        pool(frames, sources, pool_runs)
    df = pd.concat(frames, ignore_index=True, sort=False) if len(frames) > 1 else frames[0]
    return validate_points(df, source=str(inputs[0]) if len(inputs) == 1 else "points"), sources


def distinct_runs(logs: list[TrainerLog]) -> None:
    """Rename, in place, trainer runs that share a name (two inputs `a/grpo` and `b/grpo`, or two TensorBoard
    directories of one output directory; a run's events beside its trainer_state.json are read once before:
    `ingest.run_dirs.one_source_a_run`): by the directory above the run, else by the file each came from, else
    numbered, so each is its own curve and never pooled silently. W&B exports of one run (a
    panel a file) are merged by name before (`merge_logs`) and keep it."""
    files: dict = {}
    for log in logs:  # `run` and `run/checkpoint-50` given together: one log read twice (a W&B export holds
        where = _identity(log.where.split(" + ")[0])  # several runs, and its panels are merged: not this)
        if log.kind == "wandb" or None in where:
            continue
        if files.setdefault((where, log.run, log.kind), log) is not log:
            raise UsageError(f"{log.where}: read twice (two of the inputs hold this log): give each run once")
    by_name: dict = {}
    for log in logs:
        if log.run is not None and log.kind != "wandb":
            by_name.setdefault(log.run, []).append(log)
    for name, same in by_name.items():
        if len(same) < 2:
            continue
        for how in (_by_parent, _by_file):
            names = [how(log, name) for log in same]
            if len(set(names)) == len(names):
                break
        else:
            names = [f"{name}#{i}" for i in range(1, len(same) + 1)]
        for log, new in zip(same, names, strict=True):
            log.run = new


def _identity(path: str) -> tuple:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return (None, path)
    return (st.st_dev, st.st_ino)


def _by_parent(log: TrainerLog, name: str) -> str:
    parts = Path(log.where.split(" + ")[0]).resolve().parts
    at = max((i for i, p in enumerate(parts) if p == name), default=len(parts) - 1)  # a run dir, else the file
    return f"{parts[at - 1]}/{name}" if at > 0 else name


def _by_file(log: TrainerLog, name: str) -> str:
    return f"{name}/{Path(log.where.split(' + ')[0]).name}"


POOL = ("seeds", "curve")


def pool(frames: list[pd.DataFrame], sources: list[dict], how: str) -> None:
    """Pool the trainer runs' frames in place (`how`: "seeds" or "curve"; see `load_points_with_sources`).

    "seeds": a run's `seed` is the seed it records when every run records one and no two the same; else every
    run is keyed by its name, and each run's source says so (`seed_line` makes it one warning line)."""
    if how not in POOL:
        raise UsageError(f"--pool-runs must be one of {', '.join(POOL)}, got {how!r}")
    runs = [s for s in sources if s.get("format") not in (None, "table") or s.get("trainer")]
    recorded = [s.get("seed") for s in runs]
    by_seed = how == "seeds" and None not in recorded and len(set(recorded)) == len(recorded)
    seeds = {s.get("run"): s.get("seed") for s in runs}
    for i, df in enumerate(frames):
        if "run" not in df.columns or "algo" not in df.columns:
            continue
        if how == "seeds":
            names = df["run"].astype(str)
            df = df.assign(seed=names.map(seeds) if by_seed else names)
        frames[i] = df.drop(columns="run")
    for s in runs:
        if how == "curve":
            s["pooled"] = "pooled into one curve"
        elif by_seed:
            s["pooled"] = f"seed {s.get('seed')}"
        else:
            why = "no seed recorded" if s.get("seed") is None else f"seed {s['seed']} shared with another run"
            s["pooled"] = f"seed '{s.get('run')}' (the run's name: {why})"
            s["seed_unverified"] = why


def seed_line(sources: list[dict]) -> str | None:
    """One warning line when runs pooled as seeds were keyed by their names (a run records no seed, or two
    record the same): which runs, and where a seed was looked for. None when every run's own seed was used."""
    runs = [s for s in sources if s.get("seed_unverified")]
    if not runs:
        return None
    missing = [str(s.get("run") or s["input"]) for s in runs if s.get("seed") is None]
    shared = [f"{s.get('run') or s['input']} ({s['seed']})" for s in runs if s.get("seed") is not None]
    parts = [f"{', '.join(missing)}: {NO_SEED}"] if missing else []
    parts += [f"the same seed in {', '.join(shared)}"] if shared else []
    return (
        "warning: --pool-runs seeds: " + "; ".join(parts) + ". Every run is taken as a distinct seed by its name:"
        " the interval over runs holds only if they are independent seeds of one config"
    )


def _found_cols(cols: set) -> str:
    names = sorted(cols)
    return ", ".join(names[:40]) + (f", ... ({len(names)} in all)" if len(names) > 40 else "")


def _map_columns(df: pd.DataFrame, kl_col: str, gold_col: str, where: str) -> pd.DataFrame:
    """Rename the user's KL/gold columns to `kl`/`gold` (a mapped column replaces an existing one)."""
    # a mapped name that this input lacks falls back to the standard name (run dirs mixed with foreign files)
    kl_col = kl_col if kl_col in df.columns or "kl" not in df.columns else "kl"
    gold_col = gold_col if gold_col in df.columns or "gold" not in df.columns else "gold"
    missing = [c for c in (kl_col, gold_col) if c not in df.columns]
    if missing:
        hint = " (map it with --kl-col/--gold-col)" if (kl_col, gold_col) == ("kl", "gold") else ""
        cols = [str(c) for c in df.columns]
        close = "".join(close_names(c, cols) for c in missing)
        raise UsageError(f"{where}: no {quoted_or(missing)} column{hint}{close} (columns found: {found_columns(df)})")
    out = df.copy()
    for src, dst in ((kl_col, "kl"), (gold_col, "gold")):
        if src != dst:
            values = out.pop(src)
            out[dst] = values
    return out


def with_prompt_rows(df: pd.DataFrame, inputs) -> pd.DataFrame:
    """`df` (loaded from `inputs`) with its best-of-n rows replaced by the per-prompt rows of the study or
    sweep directory it was read from (DIR/bon_prompts.parquet): the same fitted estimate, and intervals
    that resample prompts. Unchanged for any other input (several inputs, files, run directories, an input
    given a method with DIR:METHOD)."""
    inputs = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    if len(inputs) != 1 or "method" not in df.columns:
        return df
    path, method = parse_spec(inputs[0])
    marked = (path / "study.json").exists() or (path / "sweep.json").exists()
    if method or not (path.is_dir() and marked and (path / "points.parquet").exists()):
        return df
    if not (path / BON_PROMPTS).exists():
        return df
    return swap_bon_rows(df, read_file(path / BON_PROMPTS))
