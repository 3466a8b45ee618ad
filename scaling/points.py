"""The points table's schema and its check (`validate_points`); reading files into one is `ingest.load`.

The points table is long format (see DESIGN.md): `method`, `kl` (nats, >= 0), `gold`, optional `proxy`,
`rm_params`, `data_size`, `kl_coef`, `policy_params`, `seed`, `n`, `step`, optional `gold_se`, `objective`,
`replicate`, `ensemble_size`, `rule` (best-of-n's selection rule: max, soft, poisson, regularized; missing
means max), `algo` (an RL row's optimizer: ppo, grpo, ...; missing means ppo) and `prompt` (unit-level
best-of-n rows: one a prompt and n); any other column passes through untouched, except old names, which are
renamed (`RENAMED`: `kl_est` is now `kl_exact`). Every problem with the input raises `UsageError` with a
one-line message.

The table's contract for its readers: `GROUP_COLS` (what a curve is grouped by, seeds pooled), `SIZE_COLS`
(the sizes the coefficients scale with), which rows optimize a single proxy (`is_single_objective`) and which
best-of-n rows select by the maximum (`is_max_rule`), which RL rows come from PPO (`is_ppo_algo`): the main
slice every criterion and figure reads is all three.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from core.errors import UsageError, all_keys

# KL estimates a little below 0 are noise (k1 estimator on finite samples); below this they are an error.
NEG_KL_TOL = 1e-6
# KL, gold and gold_se beyond this magnitude are a unit or parsing mistake (and overflow the fits' squares)
MAX_ABS = 1e12

# The columns one curve is grouped by (seeds and prompts pooled): `overopt fit`'s default grouping, and the
# figures'. `replicate` (the whole study with every seed derived from one index) is a grouping column so that
# replicates are never pooled by accident; `rule` so that best-of-n's selection rules are never pooled; `algo`
# (the optimizer: ppo, grpo, dpo, ... or a foreign run's rloo) so that RL optimizers are never pooled; and `run`
# (a foreign run, named by its directory) so that trainer runs are pooled only on request (`ingest.load`'s
# pool_runs).
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
    "algo",
    "run",
)
# The grouping columns that are sizes: the fitted coefficients scale against log10 of these.
SIZE_COLS = ("rm_params", "data_size", "policy_params")
SINGLE = "single"  # the `objective` of a run that optimizes one proxy (not an ensemble)
MAX_RULE = "max"  # best-of-n's own rule: keep the response the ranking score likes best
RULES = (MAX_RULE, "soft", "poisson", "regularized")  # `rule` of best-of-n rows (bon.selection)
PPO = "ppo"  # the `algo` of an RL row without one: the optimizer of Gao et al.'s RL curves
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


def is_ppo_algo(algo):
    """Whether rows come from PPO or from no RL optimizer: their `algo` is missing (None, NaN) or "ppo"
    (best-of-n rows, which have no algo, count: a filter by algo keeps them).

    Arguments: algo, a Series (the `algo` column) or one value (a fit row's or a key's).
    Returns: a boolean mask like the Series, or a bool for one value.
    """
    return _missing_or(algo, PPO)


def ppo_algo(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of df from PPO, and every row without an algo (all rows when df has no `algo` column)."""
    if "algo" not in df.columns:
        return df
    return df[is_ppo_algo(df["algo"])]


def fill_ppo_algo(df: pd.DataFrame) -> pd.DataFrame:
    """df with RL rows that have no `algo` set to "ppo" (when df has `algo` and `method` columns)."""
    if "algo" not in df.columns or "method" not in df.columns:
        return df
    algo = df["algo"].astype(object)
    return df.assign(algo=algo.mask(algo.isna() & (df["method"] == "rl"), PPO))


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


def no_duplicates(columns, source: str) -> None:
    """UsageError naming the column names given more than once (never one of them picked silently)."""
    names = [str(c) for c in columns]
    dups = sorted({c for c in names if names.count(c) > 1})
    if dups:
        raise UsageError(f"{source}: duplicate column(s) {', '.join(repr(c) for c in dups[:10])}")


def validate_points(df: pd.DataFrame, source: str = "points") -> pd.DataFrame:
    """Check a points table: `kl` and `gold` present, numeric, finite; KL >= -1e-6; `gold_se` > 0 where given
    (NaN means the row has no standard error); `rule`, where given, one of `RULES`.

    Arguments: df (a points table); source (named in messages). Returns: a copy with kl clipped at 0, old
    column names upgraded (`upgrade_columns`) and, when there is a `rule` column, "max" on the best-of-n rows
    without one (so the max rule's rows are one group however they were written); likewise "ppo" on the RL
    rows without an `algo` when there is an `algo` column.
    """
    no_duplicates(df.columns, source)
    df = upgrade_columns(df)
    missing = [c for c in ("kl", "gold") if c not in df.columns]
    if missing:
        raise UsageError(f"{source}: no {quoted_or(missing)} column (columns found: {found_columns(df)})")
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
    return fill_ppo_algo(df)


def quoted_or(cols) -> str:
    """The names of missing columns for a message: 'a' or 'b'."""
    return " or ".join(f"'{c}'" for c in cols)


def found_columns(df: pd.DataFrame) -> str:
    """A table's column names, for a message (cut: `core.errors.all_keys`)."""
    return all_keys([str(c) for c in df.columns])


BON_PROMPTS = "bon_prompts.parquet"  # a study's or sweep's per-prompt best-of-n rows


def swap_bon_rows(points: pd.DataFrame, prompts: pd.DataFrame) -> pd.DataFrame:
    """`points` with its best-of-n rows (mean curves) replaced by the per-prompt rows `prompts`: those of the
    rules `prompts` holds (the max rule's when it has no `rule` column); other rules keep their mean curves."""
    bon = points["method"] == "bon"
    if "rule" in points.columns:
        held = set(prompts["rule"].fillna(MAX_RULE)) if "rule" in prompts.columns else {MAX_RULE}
        bon &= points["rule"].astype(object).fillna(MAX_RULE).isin(held)
    return pd.concat([points[~bon], prompts], ignore_index=True)
