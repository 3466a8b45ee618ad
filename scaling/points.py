"""Load and check points tables: run directories, study/sweep directories, points files, trainer logs.

The points table is long format (see DESIGN.md): `method`, `kl` (nats, >= 0), `gold`, optional `proxy`,
`rm_params`, `data_size`, `kl_coef`, `policy_params`, `seed`, `n`, `step`, optional `gold_se`, `objective`,
`replicate`, `ensemble_size`, `rule` (best-of-n's selection rule: max, soft, poisson, regularized; missing
means max) and `prompt` (unit-level best-of-n rows: one a prompt and n); any other column passes through
untouched, except old names, which are renamed (`RENAMED`: `kl_est` is now `kl_exact`). Every problem with
the input raises `UsageError` with a one-line message.

The table's contract for its readers: `GROUP_COLS` (what a curve is grouped by, seeds pooled), `SIZE_COLS`
(the sizes the coefficients scale with), which rows optimize a single proxy (`is_single_objective`) and which
best-of-n rows select by the maximum (`is_max_rule`): the main slice every criterion and figure reads is both.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import UsageError
from scaling.point_files import no_duplicates, read_file, read_input

# KL estimates a little below 0 are noise (k1 estimator on finite samples); below this they are an error.
NEG_KL_TOL = 1e-6
# KL, gold and gold_se beyond this magnitude are a unit or parsing mistake (and overflow the fits' squares)
MAX_ABS = 1e12

# The columns one curve is grouped by (seeds and prompts pooled): `overopt fit`'s default grouping, and the
# figures'. `replicate` (the whole study with every seed derived from one index) is a grouping column so that
# replicates are never pooled by accident; `rule` so that best-of-n's selection rules are never pooled.
GROUP_COLS = (
    "method",
    "rm_params",
    "data_size",
    "kl_coef",
    "policy_params",
    "objective",
    "replicate",
    "ensemble_size",
    "rule",
)
# The grouping columns that are sizes: the fitted coefficients scale against log10 of these.
SIZE_COLS = ("rm_params", "data_size", "policy_params")
SINGLE = "single"  # the `objective` of a run that optimizes one proxy (not an ensemble)
MAX_RULE = "max"  # best-of-n's own rule: keep the response the ranking score likes best
RULES = (MAX_RULE, "soft", "poisson", "regularized")  # `rule` of best-of-n rows (bon.selection)
RENAMED = {"kl_est": "kl_exact", "kl_est_se": "kl_exact_se"}  # old column name -> new (tables written before)


def _missing_or(value, named: str):
    """Whether `value` (a Series, or one value) is missing (None, NA, NaN) or equals `named`: a mask or a bool."""
    if isinstance(value, pd.Series):
        return value.isna() | (value == named)
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return True
    return bool(value == named)


def is_single_objective(objective):
    """Whether rows optimize a single proxy: their `objective` is missing (None, NaN) or "single".

    Arguments: objective, a Series (the `objective` column) or one value (a fit row's or a key's).
    Returns: a boolean mask like the Series, or a bool for one value.
    """
    return _missing_or(objective, SINGLE)


def single_objective(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of df that optimize a single proxy (all rows when df has no `objective` column)."""
    if "objective" not in df.columns:
        return df
    return df[is_single_objective(df["objective"])]


def is_max_rule(rule):
    """Whether best-of-n rows select by the maximum: their `rule` is missing (None, NaN) or "max" (RL rows,
    which have no rule, count as max: a filter by rule keeps them).

    Arguments: rule, a Series (the `rule` column) or one value (a fit row's or a key's).
    Returns: a boolean mask like the Series, or a bool for one value.
    """
    return _missing_or(rule, MAX_RULE)


def max_rule(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of df of the max rule, and every row without a rule (all rows when df has no `rule` column)."""
    if "rule" not in df.columns:
        return df
    return df[is_max_rule(df["rule"])]


def fill_max_rule(df: pd.DataFrame) -> pd.DataFrame:
    """df with best-of-n rows that have no `rule` set to "max" (when df has `rule` and `method` columns)."""
    if "rule" not in df.columns or "method" not in df.columns:
        return df
    rule = df["rule"].astype(object)
    return df.assign(rule=rule.mask(rule.isna() & (df["method"] == "bon"), MAX_RULE))


def upgrade_columns(df: pd.DataFrame, keep=()) -> pd.DataFrame:
    """df with the old column names of `RENAMED` under their new names (`kl_est` -> `kl_exact`): renamed when
    the new name is absent, else merged into it where it is missing. `keep`: names left as they are (a
    column the user asked for by its old name)."""
    old = [c for c in RENAMED if c in df.columns and c not in keep]
    if not old:
        return df
    df = df.rename(columns={c: RENAMED[c] for c in old if RENAMED[c] not in df.columns})
    for c in old:
        if c in df.columns:  # both names: the new one wins, the old one fills its gaps
            df[RENAMED[c]] = df[RENAMED[c]].fillna(df.pop(c))
    return df


def load_points(inputs, kl_col: str = "kl", gold_col: str = "gold", **options) -> pd.DataFrame:
    """Read and concatenate points from every input, map column names, and validate.

    Arguments:
      inputs: paths (str or Path), each optionally `PATH:bon` / `PATH:rl` (`input_specs.parse_spec`): run
        dirs, dirs holding runs at any depth, .parquet/.csv/.jsonl files, trainer logs (a Hugging Face
        `trainer_state.json`, a trainer output or `checkpoint-N` directory, a JSON-lines dump of
        `log_history`, TensorBoard event files, W&B CSV exports: `scaling.trainer_logs`).
      kl_col, gold_col: names of the KL and gold columns in the inputs (renamed to `kl` and `gold`); in a
        trainer log "kl" and "gold" find the trainer's known names.
      options: see `load_points_with_sources`.
    Returns: one DataFrame with `kl` and `gold` as float64 and tiny negative KLs clipped to 0.
    """
    return load_points_with_sources(inputs, kl_col, gold_col, **options)[0]


def load_points_with_sources(
    inputs, kl_col: str = "kl", gold_col: str = "gold", *, kl_per_token=None, recentre=None, need_method=False
) -> tuple[pd.DataFrame, list[dict]]:
    """`load_points`, and a list saying, for each trainer log (or converted table), which KL (units,
    conversion) and gold it used (`scaling.trainer_logs.log_frame`'s `source`).

    Options: kl_per_token (None, a length column or a number: `input_specs.parse_kl_per_token`; a per-token
    KL without it is refused); recentre (None, "first" or a number: `input_specs.recentre`); need_method
    (every input must say its method: a `method` column, `PATH:bon`/`PATH:rl`, or a trainer log's "rl").
    """
    from scaling.event_logs import merge_logs
    from scaling.input_specs import convert_table, parse_spec
    from scaling.input_specs import recentre as recentre_gold
    from scaling.trainer_logs import TrainerLog, log_frame

    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    if not inputs:
        raise UsageError("no input given")
    items = []  # (method spec, TrainerLog or (DataFrame, where, foreign))
    for src in inputs:
        path, method = parse_spec(src)
        items += [(method, item) for item in read_input(path)]
    logs = merge_logs([item for _, item in items if isinstance(item, TrainerLog)])
    specs = {id(item): m for m, item in items if isinstance(item, TrainerLog)}
    items = [(m, item) for m, item in items if not isinstance(item, TrainerLog)]
    items += [(specs.get(id(log)), log) for log in logs]
    frames, sources = [], []
    table_cols: set = set()  # every column of the tables (not trainer logs) read
    for method, item in items:
        if isinstance(item, TrainerLog):
            df, source = log_frame(item, kl_col, gold_col, kl_per_token)
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
        frames.append(recentre_gold(df, recentre, GROUP_COLS + ("seed", "run")))  # a seed or run: its own curve
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
    df = pd.concat(frames, ignore_index=True, sort=False) if len(frames) > 1 else frames[0]
    return validate_points(df, source=str(inputs[0]) if len(inputs) == 1 else "points"), sources


def validate_points(df: pd.DataFrame, source: str = "points") -> pd.DataFrame:
    """Check a points table: `kl` and `gold` present, numeric, finite; KL >= -1e-6; `gold_se` > 0 where given
    (NaN means the row has no standard error); `rule`, where given, one of `RULES`.

    Arguments: df (a points table); source (named in messages). Returns: a copy with kl clipped at 0, old
    column names upgraded (`upgrade_columns`) and, when there is a `rule` column, "max" on the best-of-n rows
    without one (so the max rule's rows are one group however they were written).
    """
    no_duplicates(df.columns, source)
    df = upgrade_columns(df)
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
    if "rule" in df.columns:
        rule = df["rule"].astype(object)
        bad = sorted({str(v) for v in rule[rule.notna()] if not (isinstance(v, str) and v in RULES)})
        if bad:
            raise UsageError(
                f"{source}: column 'rule' has unknown value(s) {', '.join(map(repr, bad[:5]))}"
                f" (rules: {', '.join(RULES)})"
            )
        df = fill_max_rule(df)
    return df


def _names(cols) -> str:
    return " or ".join(f"'{c}'" for c in cols)


def _found(df: pd.DataFrame) -> str:
    from scaling.trainer_logs import all_keys

    return all_keys([str(c) for c in df.columns])


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
        from scaling.trainer_logs import close_names

        hint = " (map it with --kl-col/--gold-col)" if (kl_col, gold_col) == ("kl", "gold") else ""
        cols = [str(c) for c in df.columns]
        close = "".join(close_names(c, cols) for c in missing)
        raise UsageError(f"{where}: no {_names(missing)} column{hint}{close} (columns found: {_found(df)})")
    out = df.copy()
    for src, dst in ((kl_col, "kl"), (gold_col, "gold")):
        if src != dst:
            values = out.pop(src)
            out[dst] = values
    return out


BON_PROMPTS = "bon_prompts.parquet"  # a study's or sweep's per-prompt best-of-n rows


def swap_bon_rows(points: pd.DataFrame, prompts: pd.DataFrame) -> pd.DataFrame:
    """`points` with its best-of-n rows (mean curves) replaced by the per-prompt rows `prompts`: those of the
    rules `prompts` holds (the max rule's when it has no `rule` column); other rules keep their mean curves."""
    bon = points["method"] == "bon"
    if "rule" in points.columns:
        held = set(prompts["rule"].fillna(MAX_RULE)) if "rule" in prompts.columns else {MAX_RULE}
        bon &= points["rule"].astype(object).fillna(MAX_RULE).isin(held)
    return pd.concat([points[~bon], prompts], ignore_index=True)


def with_prompt_rows(df: pd.DataFrame, inputs) -> pd.DataFrame:
    """`df` (loaded from `inputs`) with its best-of-n rows replaced by the per-prompt rows of the study or
    sweep directory it was read from (DIR/bon_prompts.parquet): the same fitted estimate, and intervals
    that resample prompts. Unchanged for any other input (several inputs, files, run directories, an input
    given a method with DIR:METHOD)."""
    from scaling.input_specs import parse_spec

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
