"""Split a points table into the groups fitted one by one (`Group`, `make_groups`).

Default grouping: the columns of `GROUP_COLS` present (seeds and prompts pooled). Each group's law comes from
its `method` (`laws.DEFAULT_LAW`) or is forced; its weights are 1/gold_se^2 when every row has `gold_se`.

Rows may be unit-level: one row a (prompt, n) for best-of-n, one a (seed, step) for RL. The law is fitted to
all rows (for balanced best-of-n rows that is exactly the fit of the mean curve), while the fit statistics
describe the group's `curve`: the mean over units at each x (best-of-n: each `n`; RL: each `step`, mean kl
-> d and mean gold over seeds; otherwise each distinct kl).

Which unit an interval resamples (`interval`; `choose_interval`), with resample="auto":
- "prompts": a `prompt` (or `prompt_id`) column with >= MIN_CLUSTERS values: the cluster bootstrap over
  prompts. When the weights are 1/gold_se^2 with gold_se the same on every row of an x (the SE over prompts
  of the mean there), each resample re-estimates them from its own prompts (`reweight`);
- "seeds": a `seed` column with k >= 2 values, each with more points at d > 0 than the law has
  parameters: a Student t interval (k - 1 dof) on the seed-clustered standard error, which on a d grid
  shared by the seeds is the spread of the law fitted to each seed alone (`scaling.intervals`);
- "points": the bootstrap over points (rows), when neither applies.
resample="points" forces points; a column name forces that column as bootstrap clusters ("prompts" for a
prompt column, else "clusters"), falling back to points with fewer than 2 values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.errors import UsageError
from scaling.fmt import json_value
from scaling.laws import DEFAULT_LAW, LAWS
from scaling.points import GROUP_COLS, SIZE_COLS, is_max_rule

PROMPT_COLS = ("prompt", "prompt_id")
SEED_COL = "seed"
MIN_CLUSTERS = 3  # fewer prompts than this give too few distinct resamples: another unit is used
MIN_POINTS = 3
SE_RTOL = 1e-9  # gold_se counts as "the same on every row of an x" within this relative tolerance


@dataclass
class Group:
    """The rows of one group, ready to fit, and what their intervals resample.

    Fields: keys (group column -> value); method (label); law (name in LAWS); d, y, w: the rows fitted
    (d = sqrt(kl), d = 0 dropped for laws that need it), weights; levels: int codes of each row's x on the
    curve; curve_d, curve_y, curve_w: the curve (mean over units at each x; mean weight there) that the fit
    statistics describe; interval: "prompts", "seeds", "points" or "clusters"; unit: the interval's unit in
    words (for messages); clusters: int codes of each row's bootstrap cluster (one a row for points and
    seeds); reweight: resamples re-estimate the weights from their prompts (see the module docstring);
    seeds: int codes of each row's seed (None unless interval is "seeds"); seed_ids: the seed values;
    cluster_ids: the bootstrap clusters' values, in code order (prompt ids for "prompts"; () for points and
    seeds): groups with the same cluster_ids share their prompts, and their codes mean the same prompts.
    """

    keys: dict
    method: str
    law: str
    d: np.ndarray
    y: np.ndarray
    w: np.ndarray
    levels: np.ndarray
    curve_d: np.ndarray
    curve_y: np.ndarray
    curve_w: np.ndarray
    interval: str
    unit: str
    clusters: np.ndarray
    reweight: bool = False
    seeds: np.ndarray | None = None
    seed_ids: tuple = ()
    cluster_ids: tuple = ()

    @property
    def n_clusters(self) -> int:
        return int(self.clusters.max()) + 1 if len(self.clusters) else 0


def _label(keys: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in keys.items()) or "all points"


def resolve_by(df: pd.DataFrame, by) -> list[str]:
    """The grouping columns: `by` as a list ("a,b" split), or the GROUP_COLS present when None.
    UsageError for a column df lacks."""
    if by is None:
        return [c for c in GROUP_COLS if c in df.columns]
    if isinstance(by, str):
        by = [c.strip() for c in by.split(",") if c.strip()]
    unknown = [c for c in by if c not in df.columns]
    if unknown:
        raise UsageError(f"unknown --by column '{unknown[0]}' (columns: {', '.join(map(str, df.columns))})")
    return list(by)


def _law_for(method_arg: str, methods: list, keys: dict) -> tuple[str, str]:
    """(method label, law name) of one group."""
    label = ",".join(sorted(map(str, methods))) if methods else None
    if method_arg != "auto":
        return label or method_arg, method_arg
    if not methods:
        raise UsageError("points have no 'method' column: pass --method (" + ", ".join(LAWS) + ")")
    if len(methods) > 1:
        raise UsageError(f"group {_label(keys)} mixes methods {label}: add 'method' to --by or pass --method")
    if methods[0] not in DEFAULT_LAW:
        raise UsageError(f"no default law for method '{methods[0]}' (group {_label(keys)}): pass --method")
    return str(methods[0]), DEFAULT_LAW[methods[0]]


def curve_key(sub: pd.DataFrame, method: str) -> str:
    """The column whose values are the curve's x: `n` for best-of-n, `step` otherwise, when every row has
    one; else `kl` (also for best-of-n's other selection rules, whose `n` is fixed or missing: one row a
    parameter value, so each distinct kl is a point of the curve)."""
    col = "n" if method == "bon" else "step"
    if col == "n" and "rule" in sub.columns and not is_max_rule(sub["rule"]).all():
        return "kl"
    if col in sub.columns and sub[col].notna().all():
        return col
    return "kl"


def curve_of(levels: np.ndarray, kl: np.ndarray, y: np.ndarray, w: np.ndarray):
    """The mean over units at each level: (d = sqrt(mean kl), mean y, mean w), in level order."""
    n = np.bincount(levels).astype(float)
    mean = lambda v: np.bincount(levels, weights=v) / n
    return np.sqrt(mean(kl)), mean(y), mean(w)


def _codes(values: pd.Series) -> tuple[np.ndarray, tuple]:
    codes, uniques = pd.factorize(values, use_na_sentinel=False, sort=True)
    return codes.astype(np.int64), tuple(json_value(u) for u in uniques)


def _per_seed_ok(seeds: np.ndarray, d: np.ndarray, n_params: int) -> bool:
    """Every seed has more points at d > 0 than the law has parameters."""
    return bool(np.all(np.bincount(seeds, weights=(d > 0).astype(float)) > n_params))


def _same_se_per_level(se: np.ndarray, levels: np.ndarray) -> bool:
    """gold_se is the same on every row of a level (the SE of the mean over prompts there) and every level
    has 2 rows or more (a variance to re-estimate)."""
    L = int(levels.max()) + 1
    lo = np.full(L, np.inf)
    hi = np.full(L, -np.inf)
    np.minimum.at(lo, levels, se)
    np.maximum.at(hi, levels, se)
    return bool(np.all(hi - lo <= SE_RTOL * hi) and np.all(np.bincount(levels, minlength=L) >= 2))


def choose_interval(sub: pd.DataFrame, d: np.ndarray, law: str, resample: str = "auto") -> dict:
    """What a group's intervals resample (rules in the module docstring): a dict with interval, unit,
    clusters, cluster_ids, seeds and seed_ids (Group's fields)."""
    n = len(sub)
    points = {"interval": "points", "unit": "points", "clusters": np.arange(n, dtype=np.int64)}
    if resample == "points":
        return points
    if resample != "auto":  # a column forced as bootstrap clusters
        if sub[resample].nunique(dropna=False) < 2:
            return points
        codes, uniques = _codes(sub[resample])
        kind = "prompts" if resample in PROMPT_COLS else "clusters"
        what = f"{len(uniques)} prompts" + ("" if resample == "prompt" else f" (column {resample})")
        unit = what if kind == "prompts" else f"{len(uniques)} {resample}s"
        return {"interval": kind, "unit": unit, "clusters": codes, "cluster_ids": uniques}
    for col in PROMPT_COLS:
        if col in sub.columns and sub[col].nunique(dropna=False) >= MIN_CLUSTERS:
            codes, uniques = _codes(sub[col])
            unit = f"{len(uniques)} prompts" + ("" if col == "prompt" else f" (column {col})")
            return {"interval": "prompts", "unit": unit, "clusters": codes, "cluster_ids": uniques}
    if SEED_COL in sub.columns and sub[SEED_COL].nunique(dropna=False) >= 2:
        seeds, ids = _codes(sub[SEED_COL])
        if _per_seed_ok(seeds, d, len(LAWS[law].params)):
            return {**points, "interval": "seeds", "unit": f"{len(ids)} seeds", "seeds": seeds, "seed_ids": ids}
    return points


def make_groups(df: pd.DataFrame, by: list[str], method: str, resample: str = "auto") -> list[Group]:
    """Split a validated points table into Groups; UsageError for a group with < 3 points at d > 0."""
    parts = (
        [({}, df)]
        if not by
        else [
            (dict(zip(by, k if isinstance(k, tuple) else (k,), strict=True)), sub)
            for k, sub in df.groupby(by, dropna=False, sort=True)
        ]
    )
    groups = []
    for keys, sub in parts:
        keys = {k: json_value(v) for k, v in keys.items()}
        methods = sorted({json_value(m) for m in sub["method"].unique()}, key=str) if "method" in sub else []
        label, law = _law_for(method, methods, keys)
        d = np.sqrt(sub["kl"].to_numpy(dtype=float))
        n_pos = int((d > 0).sum())
        if n_pos < MIN_POINTS:
            raise UsageError(f"group {_label(keys)} has {n_pos} points with d > 0 (need {MIN_POINTS})")
        keep = d > 0 if LAWS[law].drop_zero else np.ones(len(d), bool)
        sub, d = sub[keep], d[keep]
        se = sub["gold_se"].to_numpy(dtype=float) if "gold_se" in sub.columns else np.full(len(sub), np.nan)
        # weighted by 1/se^2 only when every row of the group has a standard error
        weighted = bool(np.all(np.isfinite(se)))
        w = 1.0 / se**2 if weighted else np.ones(len(sub))
        y = sub["gold"].to_numpy(dtype=float)
        levels, _ = _codes(sub[curve_key(sub, label)])
        curve_d, curve_y, curve_w = curve_of(levels, sub["kl"].to_numpy(dtype=float), y, w)
        pick = choose_interval(sub, d, law, resample)
        reweight = pick["interval"] == "prompts" and weighted and _same_se_per_level(se, levels)
        groups.append(Group(keys, label, law, d, y, w, levels, curve_d, curve_y, curve_w, reweight=reweight, **pick))
    return groups


SHARED_BY = (*SIZE_COLS, "run")  # groups differing only in these share alpha (--shared-alpha): sizes, runs


def group_context(g: Group) -> tuple:
    """What must match for groups to share alpha or one scaling fit: law, method and the keys other than
    sizes and `run` (a foreign run: `--shared-alpha --by run` fits one alpha to every run, one beta each)."""
    rest = tuple((k, v) for k, v in g.keys.items() if k not in SHARED_BY and k != "method")
    return (g.method, g.law) + rest
