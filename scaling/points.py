"""Load and check points tables: run directories, study/sweep directories, points files, HF trainer states.

The points table is long format (see DESIGN.md): `method`, `kl` (nats, >= 0), `gold`, optional `proxy`,
`rm_params`, `data_size`, `kl_coef`, `policy_params`, `seed`, `n`, `step`, optional `gold_se`, `objective`,
`replicate`, `ensemble_size` and `prompt` (unit-level best-of-n rows: one a prompt and n); any other column
passes through untouched. Every problem with the input raises
`UsageError` with a one-line message.

The table's contract for its readers: `GROUP_COLS` (what a curve is grouped by, seeds pooled), `SIZE_COLS`
(the sizes the coefficients scale with), and which rows optimize a single proxy (`is_single_objective`).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import UsageError
from core.store import find_runs

# KL estimates a little below 0 are noise (k1 estimator on finite samples); below this they are an error.
NEG_KL_TOL = 1e-6
# KL, gold and gold_se beyond this magnitude are a unit or parsing mistake (and overflow the fits' squares)
MAX_ABS = 1e12
FILE_SUFFIXES = (".parquet", ".pq", ".csv", ".jsonl", ".ndjson", ".json")

# The columns one curve is grouped by (seeds and prompts pooled): `overopt fit`'s default grouping, and the
# figures'. `replicate` (the whole study with every seed derived from one index) is a grouping column so that
# replicates are never pooled by accident.
GROUP_COLS = (
    "method",
    "rm_params",
    "data_size",
    "kl_coef",
    "policy_params",
    "objective",
    "replicate",
    "ensemble_size",
)
# The grouping columns that are sizes: the fitted coefficients scale against log10 of these.
SIZE_COLS = ("rm_params", "data_size", "policy_params")
SINGLE = "single"  # the `objective` of a run that optimizes one proxy (not an ensemble)


def is_single_objective(objective):
    """Whether rows optimize a single proxy: their `objective` is missing (None, NaN) or "single".

    Arguments: objective, a Series (the `objective` column) or one value (a fit row's or a key's).
    Returns: a boolean mask like the Series, or a bool for one value.
    """
    if isinstance(objective, pd.Series):
        return objective.isna() | (objective == SINGLE)
    if objective is None or objective is pd.NA or (isinstance(objective, float) and math.isnan(objective)):
        return True
    return bool(objective == SINGLE)


def single_objective(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of df that optimize a single proxy (all rows when df has no `objective` column)."""
    if "objective" not in df.columns:
        return df
    return df[is_single_objective(df["objective"])]


def load_points(inputs, kl_col: str = "kl", gold_col: str = "gold") -> pd.DataFrame:
    """Read and concatenate points from every input, map column names, and validate.

    Arguments:
      inputs: paths (str or Path): run dirs, dirs holding runs at any depth, .parquet/.csv/.jsonl files,
        or Hugging Face `trainer_state.json` files (their `log_history`; method defaults to `rl`).
      kl_col, gold_col: names of the KL and gold columns in the inputs (renamed to `kl` and `gold`).
    Returns: one DataFrame with `kl` and `gold` as float64 and tiny negative KLs clipped to 0.
    """
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    if not inputs:
        raise UsageError("no input given")
    frames = []
    for src in inputs:
        path = Path(src)
        for df, where in _read_input(path, kl_col, gold_col):
            frames.append(_map_columns(df, kl_col, gold_col, where))
    df = pd.concat(frames, ignore_index=True, sort=False) if len(frames) > 1 else frames[0]
    return validate_points(df, source=str(inputs[0]) if len(inputs) == 1 else "points")


def validate_points(df: pd.DataFrame, source: str = "points") -> pd.DataFrame:
    """Check a points table: `kl` and `gold` present, numeric, finite; KL >= -1e-6; `gold_se` > 0 where given
    (NaN means the row has no standard error).

    Arguments: df (a points table); source (named in messages). Returns: a copy with kl clipped at 0.
    """
    _no_duplicates(df.columns, source)
    missing = [c for c in ("kl", "gold") if c not in df.columns]
    if missing:
        raise UsageError(f"{source}: no {_names(missing)} column (columns found: {_found(df)})")
    if len(df) == 0:
        raise UsageError(f"{source}: no points")
    df = df.copy()
    for col in ("kl", "gold", "gold_se"):
        if col not in df.columns:
            continue
        raw = df[col]
        if pd.api.types.is_bool_dtype(raw) or (
            raw.dtype == object and raw.map(lambda v: isinstance(v, (bool, np.bool_))).any()
        ):
            raise UsageError(f"{source}: column '{col}' holds true/false values, not numbers")
        values = pd.to_numeric(raw, errors="coerce")
        bad_type = int((values.isna() & df[col].notna()).sum())
        if bad_type:
            raise UsageError(f"{source}: column '{col}' has {bad_type} non-numeric values")
        arr = values.to_numpy(dtype=float, na_value=np.nan)
        # a missing standard error (NaN) is allowed: that row has none (e.g. RL rows beside BoN rows)
        n_bad = int((~np.isfinite(arr) & ~(np.isnan(arr) & (col == "gold_se"))).sum())
        if n_bad:
            raise UsageError(f"{source}: column '{col}' has {n_bad} non-finite values (of {len(arr)})")
        n_huge = int((np.abs(np.nan_to_num(arr)) > MAX_ABS).sum())
        if n_huge:
            top = float(np.nanmax(np.abs(arr)))
            raise UsageError(
                f"{source}: column '{col}' has {n_huge} values beyond +-{MAX_ABS:g} (max |value| {top:.3g})"
            )
        df[col] = arr
    kl = df["kl"].to_numpy()
    n_neg = int((kl < -NEG_KL_TOL).sum())
    if n_neg:
        raise UsageError(f"{source}: column 'kl' has {n_neg} values below -1e-06 (min {kl.min():.3g})")
    df["kl"] = np.maximum(kl, 0.0)
    if "gold_se" in df.columns:
        n_nonpos = int((df["gold_se"].to_numpy() <= 0).sum())  # NaN compares False: not counted
        if n_nonpos:
            raise UsageError(f"{source}: column 'gold_se' has {n_nonpos} values <= 0 (must be > 0)")
    return df


def _no_duplicates(columns, source: str) -> None:
    """UsageError naming the column names given more than once (never one of them picked silently)."""
    names = [str(c) for c in columns]
    dups = sorted({c for c in names if names.count(c) > 1})
    if dups:
        raise UsageError(f"{source}: duplicate column(s) {', '.join(repr(c) for c in dups[:10])}")


def _csv_header(path: Path) -> list[str]:
    """The first row of a CSV file as written (pandas renames a repeated name 'kl' to 'kl.1')."""
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        return next(csv.reader(f), [])


def _names(cols) -> str:
    return " or ".join(f"'{c}'" for c in cols)


def _found(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]
    shown = ", ".join(cols[:20]) + (f", ... ({len(cols)} in all)" if len(cols) > 20 else "")
    return shown or "none"


def _map_columns(df: pd.DataFrame, kl_col: str, gold_col: str, where: str) -> pd.DataFrame:
    """Rename the user's KL/gold columns to `kl`/`gold` (a mapped column replaces an existing one)."""
    # a mapped name that this input lacks falls back to the standard name (run dirs mixed with foreign files)
    kl_col = kl_col if kl_col in df.columns or "kl" not in df.columns else "kl"
    gold_col = gold_col if gold_col in df.columns or "gold" not in df.columns else "gold"
    missing = [c for c in (kl_col, gold_col) if c not in df.columns]
    if missing:
        hint = " (map it with --kl-col/--gold-col)" if (kl_col, gold_col) == ("kl", "gold") else ""
        raise UsageError(f"{where}: no {_names(missing)} column{hint} (columns found: {_found(df)})")
    out = df.copy()
    for src, dst in ((kl_col, "kl"), (gold_col, "gold")):
        if src != dst:
            values = out.pop(src)
            out[dst] = values
    return out


def _read_input(path: Path, kl_col: str, gold_col: str):
    """Yield (DataFrame, description) for one input path."""
    if not path.exists():
        raise UsageError(f"no such file or directory: {path}")
    if path.is_dir():
        yield from _read_dir(path)
        return
    yield _read_file(path, kl_col, gold_col), str(path)


BON_PROMPTS = "bon_prompts.parquet"  # a study's or sweep's per-prompt best-of-n rows


def swap_bon_rows(points: pd.DataFrame, prompts: pd.DataFrame) -> pd.DataFrame:
    """`points` with its best-of-n rows (mean curves) replaced by the per-prompt rows `prompts`."""
    return pd.concat([points[points["method"] != "bon"], prompts], ignore_index=True)


def with_prompt_rows(df: pd.DataFrame, inputs) -> pd.DataFrame:
    """`df` (loaded from `inputs`) with its best-of-n rows replaced by the per-prompt rows of the study or
    sweep directory it was read from (DIR/bon_prompts.parquet): the same fitted estimate, and intervals
    that resample prompts. Unchanged for any other input (several inputs, files, run directories)."""
    inputs = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    if len(inputs) != 1 or "method" not in df.columns:
        return df
    path = Path(inputs[0])
    marked = (path / "study.json").exists() or (path / "sweep.json").exists()
    if not (path.is_dir() and marked and (path / "points.parquet").exists() and (path / BON_PROMPTS).exists()):
        return df
    return swap_bon_rows(df, _read_file(path / BON_PROMPTS, "kl", "gold"))


def _read_dir(path: Path):
    """A study's or sweep's aggregated points.parquet (it carries the sweep's axis columns); else the
    finished runs below `path` (DONE marker and points.parquet); else a top-level points file."""
    if (path / "points.parquet").exists() and ((path / "study.json").exists() or (path / "sweep.json").exists()):
        yield _read_file(path / "points.parquet", "kl", "gold"), str(path / "points.parquet")
        return
    runs = find_runs(path, done_only=False)
    done = [r for r in runs if r.done and (r.path / "points.parquet").exists()]
    if done:
        for r in done:
            yield _read_file(r.path / "points.parquet", "kl", "gold"), str(r.path)
        return
    own_run_unfinished = any(r.path.resolve() == path.resolve() for r in runs)
    for name in ("points.parquet", "points.csv", "points.jsonl"):
        top = path / name
        if top.exists() and not own_run_unfinished:
            yield _read_file(top, "kl", "gold"), str(top)
            return
    if runs:
        raise UsageError(f"{path}: no finished run with points.parquet ({len(runs)} unfinished run(s))")
    raise UsageError(f"{path}: no runs and no points file in this directory")


def _read_file(path: Path, kl_col: str, gold_col: str) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise UsageError(f"unreadable format: {path} (expected .parquet, .csv, .jsonl or trainer_state.json)")
    if path.stat().st_size == 0:
        raise UsageError(f"empty file: {path}")
    try:
        if suffix in (".parquet", ".pq"):
            df = pd.read_parquet(path)
        elif suffix == ".csv":
            _no_duplicates(_csv_header(path), str(path))
            df = pd.read_csv(path)
        elif suffix in (".jsonl", ".ndjson"):
            df = pd.read_json(path, lines=True)
        else:
            return _read_trainer_state(path, kl_col, gold_col)
    except UsageError:
        raise
    except Exception as e:  # any parser failure is the user's file, not our bug
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UsageError(f"unreadable file {path}: {first}") from None
    if len(df) == 0:
        raise UsageError(f"empty file: {path} (no rows)")
    _no_duplicates(df.columns, str(path))
    return df


def _read_trainer_state(path: Path, kl_col: str, gold_col: str) -> pd.DataFrame:
    """Hugging Face Trainer state: the `log_history` entries that carry both the KL and the gold key."""
    try:
        state = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"unreadable file {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(state, dict) or not isinstance(state.get("log_history"), list):
        raise UsageError(f"unreadable format: {path} (a .json input must hold a log_history list)")
    entries = [e for e in state["log_history"] if isinstance(e, dict)]
    rows = [e for e in entries if kl_col in e and gold_col in e]
    if not rows:
        keys = sorted({k for e in entries for k in e})
        shown = ", ".join(keys[:20]) or "none"
        raise UsageError(
            f"{path}: no log_history entry has both '{kl_col}' and '{gold_col}' (keys found: {shown});"
            " map them with --kl-col/--gold-col"
        )
    df = pd.DataFrame(rows)
    if "method" not in df.columns:
        df["method"] = "rl"
    # one trainer state is one run: name it by its directory so several can be told apart (--by run)
    df["run"] = path.resolve().parent.name
    return df
