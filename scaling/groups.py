"""Split a points table into the groups fitted one by one (`Group`, `make_groups`).

Default grouping: the columns of `GROUP_COLS` present (seeds pooled). Each group's law comes from its
`method` (`laws.DEFAULT_LAW`) or is forced; its weights are 1/gold_se^2 when every point has `gold_se`;
its bootstrap unit is prompts or seeds when it has MIN_CLUSTERS or more, points otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.errors import UsageError
from scaling.fmt import json_value
from scaling.laws import DEFAULT_LAW, LAWS
from scaling.points import GROUP_COLS, SIZE_COLS

CLUSTER_COLS = ("prompt", "prompt_id", "seed")
MIN_CLUSTERS = 3  # fewer clusters than this give too few distinct resamples: resample points instead
MIN_POINTS = 3


@dataclass
class Group:
    """The points of one group, ready to fit."""

    keys: dict
    method: str
    law: str
    d: np.ndarray
    y: np.ndarray
    w: np.ndarray
    clusters: np.ndarray
    unit: str


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


def _clusters(sub: pd.DataFrame, resample: str = "auto") -> tuple[np.ndarray, str]:
    """Resampling unit: the `resample` column, or (auto) prompts or seeds if several; else points."""
    cols = CLUSTER_COLS if resample == "auto" else () if resample == "points" else (resample,)
    need = MIN_CLUSTERS if resample == "auto" else 2
    for col in cols:
        if col in sub.columns and sub[col].nunique(dropna=False) >= need:
            codes, uniques = pd.factorize(sub[col], use_na_sentinel=False)
            return codes.astype(np.int64), f"{len(uniques)} {col}s"
    return np.arange(len(sub), dtype=np.int64), "points"


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
        sub = sub[keep]
        se = sub["gold_se"].to_numpy(dtype=float) if "gold_se" in sub.columns else np.full(len(sub), np.nan)
        # weighted by 1/se^2 only when every point of the group has a standard error
        w = 1.0 / se**2 if np.all(np.isfinite(se)) else np.ones(len(sub))
        clusters, unit = _clusters(sub, resample)
        groups.append(Group(keys, label, law, d[keep], sub["gold"].to_numpy(dtype=float), w, clusters, unit))
    return groups


def group_context(g: Group) -> tuple:
    """What must match for groups to share alpha or one scaling fit: law, method and non-size keys."""
    rest = tuple((k, v) for k, v in g.keys.items() if k not in SIZE_COLS and k != "method")
    return (g.method, g.law) + rest
