"""`overopt fit DIR... --verdict OUT.json`: the pooled verdict (criteria.verdict) over several study
directories, each one or more replicates: its points.parquet, bon_prompts.parquet and proxies.parquet when
present, its fits.json (refitted without intervals when absent), the calibration replicates from its
study.json. Every input is checked before anything is written (one line, exit 2)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from core import safe_read
from core.errors import UsageError
from core.store import atomic_write_json
from criteria.common import ADVANCE_FRAC
from criteria.verdict import verdict
from scaling.fitting import fit_table, fittable
from scaling.points import BON_PROMPTS, single_objective, upgrade_columns


def check_dirs(inputs: list[str]) -> None:
    """UsageError unless every input is a study or sweep directory with points.parquet."""
    for d in inputs:
        if not (Path(d) / "points.parquet").is_file():
            raise UsageError(f"--verdict needs study directories: {d} has no points.parquet")


def _read(path: Path):
    try:
        return safe_read.read_parquet(path) if path.suffix == ".parquet" else safe_read.read_json(path)
    except Exception as e:  # noqa: BLE001 - any failure to read the file is the file's
        raise UsageError(f"{path} is unreadable ({type(e).__name__})") from None


def _one(d: Path) -> dict:
    """One directory's tables, every one with a `replicate` column (study.json's replicate, else 0)."""
    info = _read(d / "study.json") if (d / "study.json").is_file() else {}
    rep = int(info.get("replicate") or 0)
    tables = {}
    for name in ("points", "bon_prompts", "proxies"):
        path = d / (BON_PROMPTS if name == "bon_prompts" else f"{name}.parquet")
        t = _read(path) if path.is_file() else None
        if t is not None and "replicate" not in t.columns:
            t = t.assign(replicate=rep)
        tables[name] = t
    tables["points"] = upgrade_columns(tables["points"])
    if (d / "fits.json").is_file():
        fits = _read(d / "fits.json")
    else:  # the verdict reads the fitted coefficients, R² and peaks: no intervals needed
        fits = fit_table(fittable(single_objective(tables["points"]), None)[0], n_boot=0, d_cut_frac=ADVANCE_FRAC)
    only = sorted(int(k) for k in tables["points"]["replicate"].dropna().unique())
    for group in ("fits", "scaling", "advance"):
        for r in fits.get(group, []):
            if r.get("replicate") is None and len(only) == 1:
                r["replicate"] = only[0]
    tables["fits"] = fits
    tables["calibration"] = [int(k) for k in info.get("calibration_replicates") or []]
    return tables


def write_verdict(inputs: list[str], out: str) -> dict:
    """Read every directory, refuse a replicate found in two of them, write the verdict atomically."""
    parts = [_one(Path(d)) for d in inputs]
    seen: dict[int, str] = {}
    for d, t in zip(inputs, parts, strict=True):
        for k in sorted(int(v) for v in t["points"]["replicate"].dropna().unique()):
            if k in seen:
                raise UsageError(f"--verdict: replicate {k} is in both {seen[k]} and {d}")
            seen[k] = d

    def cat(name):
        got = [t[name] for t in parts if t[name] is not None]
        return pd.concat(got, ignore_index=True) if got else None

    fits = {g: [r for t in parts for r in t["fits"].get(g, [])] for g in ("fits", "scaling", "advance")}
    calibration = sorted({k for t in parts for k in t["calibration"]})
    v = verdict(cat("points"), fits, cat("bon_prompts"), cat("proxies"), calibration)
    atomic_write_json(out, v)
    return v
