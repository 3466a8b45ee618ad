"""What the figures read (points, fits, proxies, study setup) and the slicing they share.

`load_data(DIR)` reads `DIR/points.parquet` (or builds it with `ingest.load.load_points`),
`DIR/fits.json` (or computes it with `scaling.fitting.fit_table`), `DIR/proxies.parquet` and `DIR/study.json`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core import safe_read
from core.errors import UsageError
from ingest.load import load_points, load_points_with_sources, seed_line
from ingest.trainer_logs import clipped_line
from scaling.laws import LAWS
from scaling.points import (
    GROUP_COLS,
    is_max_rule,
    is_ppo_algo,
    max_rule,
    ppo_algo,
    single_objective,
    validate_points,
)


class Skip(Exception):
    """A figure whose inputs are absent: `reason` is one line for the report."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class FigureData:
    """Everything a figure may read. `fits` has keys fits, scaling (and advance when the fitter wrote it)."""

    points: pd.DataFrame
    fits: dict = field(default_factory=lambda: {"fits": [], "scaling": []})
    proxies: pd.DataFrame | None = None
    study: dict | None = None
    root: Path | None = None
    notes: list[str] = field(default_factory=list)


def load_data(root: str | Path) -> FigureData:
    """Read a study or sweep directory. Raises UsageError when it holds no points.

    Arguments: root, the directory. Returns: FigureData.
    """
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"{root}: not a directory")
    notes = []
    if (root / "points.parquet").exists():
        points = _read(root / "points.parquet", safe_read.read_parquet)
    else:
        points = load_points([root])
    if points is None or len(points) == 0:
        raise UsageError(f"{root}: no points to plot")
    for col in ("method", "kl", "gold"):
        if col not in points.columns:
            raise UsageError(f"{root}: points table has no '{col}' column")
    points = validate_points(points, source=f"{root}: points table")  # NaN or huge gold is never drawn
    if (root / "fits.json").exists():
        fits = check_fits(_read(root / "fits.json", safe_read.read_json), root / "fits.json")
    else:
        from scaling.fitting import fit_table  # here, not at the top: the fitting modules load only without fits.json

        fits = fit_table(points)
    fits.setdefault("fits", [])
    fits.setdefault("scaling", [])
    proxies = _read(root / "proxies.parquet", safe_read.read_parquet) if (root / "proxies.parquet").exists() else None
    study = _read(root / "study.json", safe_read.read_json) if (root / "study.json").exists() else None
    return FigureData(points=points, fits=fits, proxies=proxies, study=study, root=root, notes=notes)


def load_inputs(inputs, options: dict, root: Path) -> FigureData:
    """What `overopt fit` reads (points files, trainer runs and logs; `ingest.load`, with the same input
    options), fitted as it fits them. Raises UsageError as `overopt fit` does."""
    from scaling.fitting import fit_table  # here, not at the top: the fitting modules load only when fitting

    points, sources = load_points_with_sources(inputs, **options)
    notes = [line for line in (clipped_line(sources), seed_line(sources)) if line]  # what fit's stderr says
    return FigureData(points=points, fits=fit_table(points, n_boot=0), root=root, notes=notes)


def _read(path: Path, reader):
    """reader(path), or UsageError naming the file when it is truncated or damaged."""
    try:
        return reader(path)
    except (OSError, ValueError) as e:  # ValueError: JSON, UTF-8; pyarrow's errors are ArrowInvalid (ValueError)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
        raise UsageError(f"{path} is unreadable ({first}); rerun the study or sweep to rewrite it") from None
    except Exception as e:  # any other parser error (e.g. pyarrow's ArrowException) is the file, not our bug
        raise UsageError(f"{path} is unreadable ({type(e).__name__}); rerun to rewrite it") from None


# the numeric fields of fits.json's rows that the figures and the report read (None where not fitted)
_NUMBERS = (
    "alpha beta gamma r2 r2_unweighted rmse aic d_max d_peak gold_peak slope intercept d_cut rmse_test"
    " rmse_test_full d_peak_full"
).split()
_INTERVALS = "alpha_ci beta_ci alpha_ci_jac beta_ci_jac slope_ci intercept_ci slope_ci_sizes".split()


def check_fits(fits, path: Path) -> dict:
    """fits.json's structure: {"fits": [row], "scaling": [row], "advance"?: [row]}, each row a table whose
    known numbers are numbers or null, intervals pairs or null, `law` a known law. UsageError otherwise."""

    def bad(what: str) -> UsageError:
        return UsageError(f"{path} is damaged: {what}; rerun `overopt fit` or the study to rewrite it")

    if not isinstance(fits, dict):
        raise bad("not a JSON object")
    for key in ("fits", "scaling", "advance"):
        rows = fits.get(key, [])
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise bad(f"'{key}' is not a list of rows")
        for i, row in enumerate(rows):
            for name in _NUMBERS:
                v = row.get(name)
                if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                    raise bad(f"{key}[{i}].{name} is not a number")
            for name in _INTERVALS:
                v = row.get(name)
                ok = v is None or (
                    isinstance(v, list) and len(v) == 2 and all(x is None or isinstance(x, (int, float)) for x in v)
                )
                if not ok:
                    raise bad(f"{key}[{i}].{name} is not an interval")
            if key == "fits" and (not isinstance(row.get("law"), str) or row["law"] not in LAWS):
                raise bad(f"fits[{i}] has no known law")
    return fits


def group_cols(df: pd.DataFrame, extra: tuple[str, ...] = ()) -> list[str]:
    """The grouping columns present in `df` (plus `extra`), in a fixed order."""
    return [c for c in (*GROUP_COLS, *extra) if c in df.columns]


def need_variation(df: pd.DataFrame, col: str, what: str) -> None:
    """Raise Skip unless `col` exists in df with at least two distinct non-null values.

    Arguments: df; col, the column; what, the sweep's name for the Skip reason (e.g. "data-size").
    """
    if col not in df.columns or df[col].dropna().nunique() < 2:
        raise Skip(f"no {what} variation (fewer than two {col} values)")


METHOD_TITLES = {"bon": "best-of-n", "rl": "RL (PPO)"}


def method_title(method: str, df: pd.DataFrame) -> str:
    """A panel's title for `method`: the optimizer a foreign run names (`algo`: "GRPO", "RLOO"; several
    joined), else best-of-n / RL (PPO); "(gold recentred)" when the loader recentred it."""
    rows = df[df["method"] == method] if "method" in df.columns else df
    algos = sorted({str(a) for a in rows["algo"].dropna()}) if "algo" in rows.columns else []
    title = "/".join(a.upper() for a in algos) if algos and algos != ["rl"] else METHOD_TITLES.get(method, method)
    if "recentred" in rows.columns and rows["recentred"].notna().any():
        title += " (gold recentred)"
    return title


def methods_in(df: pd.DataFrame) -> list[str]:
    """The optimization methods present in df: bon, rl first in that order, then the rest sorted."""
    present = set(df["method"].dropna()) if "method" in df.columns else set()
    return [m for m in ("bon", "rl") if m in present] + sorted(present - {"bon", "rl"})


def main_slice(df: pd.DataFrame, keep: tuple[str, ...] = ()) -> pd.DataFrame:
    """The main study within a sweep: fix every grouping column not in `keep` at its default value.

    Defaults: the largest data_size, the smallest kl_coef (0 in Gao), the most common policy_params,
    a single proxy (objective "single" or absent), best-of-n's max rule (rule "max" or absent), RL's PPO
    (algo "ppo" or absent). Rows with NaN in a column (e.g. kl_coef for BoN, rule for RL) are kept.
    """
    out = df
    if "objective" not in keep:
        out = single_objective(out)
    if "rule" not in keep:
        out = max_rule(out)
    if "algo" not in keep and "algo" in out.columns:
        ppo = is_ppo_algo(out["algo"])
        rl = out["method"].eq("rl") if "method" in out.columns else pd.Series(True, index=out.index)
        if has_runs(out):  # trainer runs keep their optimizer: each run is its own curve (`curve_hue`)
            out = out[out["run"].notna() | ppo]
        elif (ppo & rl).any():
            out = out[ppo]
        # else no RL row is PPO's (trainer runs pooled by --pool-runs): every optimizer kept, told apart by algo
    for col, pick in (("data_size", "max"), ("kl_coef", "min"), ("policy_params", "mode")):
        if col not in out.columns or col in keep:
            continue
        vals = out[col].dropna()
        if vals.empty:
            continue
        if pick == "max":
            v = vals.max()
        elif pick == "min":
            v = vals.min()
        else:
            v = vals.mode().iloc[0]
        # Per method: BoN rows carry NaN kl_coef, and a method may have its own default.
        out = out[out[col].isna() | (out[col] == v)]
    return out


NO_RUN = "(no run)"  # the curve label of rows without a `run` beside trainer runs (a points table's)


def has_runs(df: pd.DataFrame) -> bool:
    """Whether df holds trainer runs read by `ingest` (a `run` column with a value): each run is one curve."""
    return "run" in df.columns and bool(df["run"].notna().any())


CATEGORICAL = ("run", "algo")  # curve columns told apart by name (the others are sizes)


def curve_hue(df: pd.DataFrame) -> str | None:
    """The column that tells one curve of a panel from another: `run` for trainer runs (each run its own
    curve: two runs are never pooled into one), else `algo` where several optimizers are left (trainer runs
    pooled by --pool-runs, one curve an optimizer), else the proxy size `rm_params`, else None (one curve)."""
    if has_runs(df):
        return "run"
    if "algo" in df.columns and df["algo"].dropna().nunique() > 1:
        return "algo"
    return "rm_params" if "rm_params" in df.columns else None


def curve_labels(df: pd.DataFrame, hue: str) -> pd.Series:
    """The value of `hue` on each row, to group curves by: for `run` and `algo`, rows without one are labelled
    NO_RUN (a groupby would drop them)."""
    if hue not in CATEGORICAL:
        return df[hue]
    return df[hue].astype(object).where(df[hue].notna(), NO_RUN).astype(str).rename(hue)


def curve(df: pd.DataFrame, x: str | None = None) -> pd.DataFrame:
    """Pool seeds: mean kl, gold, proxy (any numeric column) per `x` (n for BoN, step for RL), sorted by kl.

    Returns a frame with columns kl, d = sqrt(kl), and the means.
    """
    if x is None:
        x = "n" if "n" in df.columns and df["n"].notna().any() else ("step" if "step" in df.columns else "kl")
        if x == "n" and "rule" in df.columns and not is_max_rule(df["rule"]).all():
            x = "kl"  # another selection rule: one row a parameter value, n fixed or missing
    num = [c for c in df.columns if c != x and pd.api.types.is_numeric_dtype(df[c]) and c not in GROUP_COLS]
    g = df.dropna(subset=[x]).groupby(x, as_index=False)[num].mean(numeric_only=True) if x in df else df
    g = g.sort_values("kl").reset_index(drop=True)
    g["d"] = np.sqrt(np.clip(g["kl"].to_numpy(float), 0.0, None))
    return g


def match_fit(fits: list[dict], **key) -> dict | None:
    """The fit row whose grouping values equal `key` on every key the row has (NaN equals None/NaN)."""

    def eq(a, b):
        na = a is None or (isinstance(a, float) and math.isnan(a))
        nb = b is None or (isinstance(b, float) and math.isnan(b))
        if na or nb:
            return na and nb
        if isinstance(a, (int, float, np.number)) and isinstance(b, (int, float, np.number)):
            return math.isclose(float(a), float(b), rel_tol=1e-9)
        return a == b

    for row in fits:
        if all(eq(row[k], v) for k, v in key.items() if k in row):
            return row
    return None


def key_of(group_values, cols: list[str]) -> dict:
    """The dict {col: value} of a groupby key (scalar or tuple)."""
    if not isinstance(group_values, tuple):
        group_values = (group_values,)
    return {c: (v.item() if isinstance(v, np.generic) else v) for c, v in zip(cols, group_values, strict=False)}


def law_curve(row: dict, d: np.ndarray) -> np.ndarray:
    """The fitted law of fit row `row` evaluated at distances `d` (scaling.laws.LAWS[row['law']])."""
    law = LAWS[row["law"]]
    return law.fn(d, *[row[p] for p in law.params])


def lstsq_fit(d: np.ndarray, gold: np.ndarray, law: str) -> tuple[float, float]:
    """Least-squares (alpha, beta) of the bon or rl law; both are linear in (alpha, beta), so this is exact.

    bon: gold = alpha d - beta d^2; rl: gold = alpha d - beta d log d (d = 0 dropped).
    """
    d = np.asarray(d, float)
    gold = np.asarray(gold, float)
    keep = d > 0 if law == "rl" else np.isfinite(d)
    d, gold = d[keep], gold[keep]
    second = d * d if law == "bon" else d * np.log(d)
    design = np.stack([d, -second], axis=1)
    (alpha, beta), *_ = np.linalg.lstsq(design, gold, rcond=None)
    return float(alpha), float(beta)


def run_cols(df: pd.DataFrame) -> list[str]:
    """Columns that identify one optimization run: the grouping columns, the proxy's name, and the seed."""
    return group_cols(df, extra=("rm_name", "seed"))


def most_overoptimized(df: pd.DataFrame) -> tuple[dict, pd.DataFrame]:
    """The run whose gold drops most from its peak to its last point (ordered by kl).

    Returns: (its key {col: value}, its rows sorted by kl). Raises Skip when no run has two points.
    """
    cols = run_cols(df)
    best, best_drop = None, -np.inf
    for k, g in df.groupby(cols, dropna=False, sort=True) if cols else [((), df)]:
        if len(g) < 2:
            continue
        g = g.sort_values("kl")
        gold = g["gold"].to_numpy(float)
        drop = float(np.nanmax(gold) - gold[-1])
        if drop > best_drop:
            best, best_drop = (key_of(k, cols), g), drop
    if best is None:
        raise Skip("no run with at least two points")
    return best


def fit_points(points: pd.DataFrame, row: dict) -> pd.DataFrame:
    """The points a fit row was fitted to: equal on every grouping column the row names (None matches NaN);
    a row without `objective` takes the single-proxy points, one without `rule` the max rule's, one without
    `algo` PPO's."""
    sel = points
    for col in GROUP_COLS:
        if col not in sel.columns:
            continue
        if col not in row:
            if col == "objective":
                sel = single_objective(sel)
            elif col == "rule":
                sel = max_rule(sel)
            elif col == "algo":
                sel = ppo_algo(sel)
            continue
        v = row[col]
        if v is None or (isinstance(v, float) and math.isnan(v)):
            sel = sel[sel[col].isna()]
        elif isinstance(v, str):
            sel = sel[sel[col] == v]
        else:
            sel = sel[np.isclose(pd.to_numeric(sel[col], errors="coerce").to_numpy(float), float(v))]
    return sel
