"""Launch a sweep: write one directory per point, run what is not DONE, aggregate what is.

    DIR/sweep.json           the spec (text and path), its points (id, axis values), the JAX cache path
    DIR/points/<id>/         one point (see sweeps.worker): config.json, RUNNING, FAILED, DONE, out/
    DIR/runs/                every pipeline stage of every point, content-addressed and shared
    DIR/.jax_cache/          the persistent JAX compilation cache every job uses
    DIR/points.parquet       all DONE points' tables, de-duplicated by run_id, plus axis columns
    DIR/proxies.parquet, DIR/fits.json, DIR/figures/, DIR/report.md   as for a study

Executors: `local` (a pool of worker subprocesses, `python -m sweeps.worker POINT_DIR`), `debug`
(the same worker function in this process), `slurm` (a submitit job array of the same function: `sweeps.slurm`).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from core import safe_read
from core.config import id_dict
from core.errors import UsageError
from core.log import log
from core.store import Run, atomic_write_json
from sweeps import devices, worker
from sweeps.slurm import SlurmOptions, check_slurm, run_slurm
from sweeps.spec import Point, Spec, expand, is_safe_name, load_spec

MARKER = "sweep.json"


def _log(msg: str) -> None:
    log(msg, "sweep")


# ---------------------------------------------------------------------------------------------
# the sweep directory


def prepare(spec: Spec, points: list[Point], out: Path, jax_cache: Path | None = None) -> list[Path]:
    """Claim DIR for this sweep and write every point's config.json. Returns the point directories.

    DIR must be new, empty, or a sweep directory (points are content-addressed, so a changed spec
    adds its new points beside the old ones). Raises UsageError otherwise.
    """
    out = Path(out)
    if out.is_symlink() and not out.exists():
        raise UsageError(f"--out {out} is a symbolic link to nothing")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise UsageError(f"--out {out} is a non-empty directory that holds no overopt sweep; choose another")
    out.mkdir(parents=True, exist_ok=True)
    if not os.access(out, os.W_OK):
        raise UsageError(f"--out {out} is not writable")
    dirs = []
    for p in points:
        run = Run.open(out / "points", id_dict(p.config))  # the dict its id hashes (run_id(cfg))
        if run.id != p.id:
            raise RuntimeError(f"point id {p.id} differs from its run id {run.id}")
        dirs.append(run.path)
    cache = Path(jax_cache).resolve() if jax_cache else out.resolve() / ".jax_cache"
    atomic_write_json(
        out / MARKER,
        {
            "name": spec.name,
            "description": spec.description,
            "preset": spec.preset,
            "spec_path": str(spec.path),
            "spec": spec.text,
            "jax_cache": str(cache),
            "points": [{"id": p.id, "values": p.values} for p in points],
        },
    )
    return dirs


def read_sweep(out: Path) -> dict:
    """DIR/sweep.json, checked: a table whose `points` is a list of {id, values}; UsageError when DIR
    holds no sweep or its sweep.json is damaged."""
    marker = Path(out) / MARKER
    if not marker.is_file():
        raise UsageError(f"{out}: no overopt sweep here (no {MARKER})")
    try:
        info = safe_read.read_json(marker)
    except (OSError, ValueError) as e:  # ValueError: bad JSON or bad UTF-8
        raise UsageError(f"{marker} is unreadable ({type(e).__name__})") from None
    if not isinstance(info, dict):
        raise UsageError(f"{marker} is damaged: not a JSON object")
    points = info.get("points")
    if not isinstance(points, list):
        raise UsageError(f"{marker} is damaged: no list of points")
    for i, p in enumerate(points):  # an id becomes a path: DIR/points/<id>
        ok = isinstance(p, dict) and isinstance(p.get("id"), str) and isinstance(p.get("values", {}), dict)
        if not ok or not is_safe_name(p["id"]):
            raise UsageError(f"{marker} is damaged: point {i} is not {{id (a safe name), values}}")
    return info


def statuses(out: Path) -> list[dict]:
    """One row per point of the sweep's current spec: id, values, state, detail (see worker.point_status)."""
    info = read_sweep(out)
    rows = []
    for p in info["points"]:
        state, detail = worker.point_status(Path(out) / "points" / p["id"])
        rows.append({"id": p["id"], "values": p.get("values", {}), "state": state, "detail": detail})
    return rows


def show_value(v) -> str:
    """Compact display of an axis value: proxy sizes by name, lists and tables as JSON."""
    if isinstance(v, list) and v and all(isinstance(x, dict) and "name" in x for x in v):
        return "[" + ",".join(str(x["name"]) for x in v) + "]"
    if isinstance(v, (list, dict)):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def format_status(out: Path) -> str:
    rows = statuses(out)
    info = read_sweep(out)
    counts = {s: sum(r["state"] == s for r in rows) for s in ("done", "running", "failed", "pending")}
    lines = [
        f"sweep {info.get('name')} in {out}: {len(rows)} points: " + ", ".join(f"{n} {s}" for s, n in counts.items())
    ]
    for r in rows:
        values = " ".join(f"{k}={show_value(v)}" for k, v in r["values"].items()) or "(base)"
        detail = f"  [{r['detail']}]" if r["detail"] else ""
        lines.append(f"{r['id']}  {r['state']:<8} {values}{detail}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# executors


def run_debug(dirs: list[Path]) -> None:
    """Each point in this process, one after the other (the worker's own function)."""
    for i, d in enumerate(dirs):
        t0 = time.time()
        ok = worker.run_point(d)
        _log(f"{'done' if ok else 'FAILED'} {d.name} ({i + 1}/{len(dirs)}, {time.time() - t0:.0f}s)")


def worker_command(point_dir: Path) -> list[str]:
    """The command line of one local worker process (a test may replace it)."""
    return [sys.executable, "-m", "sweeps.worker", str(point_dir)]


def run_local(dirs: list[Path], max_parallel: int | None, devices_per_point: int | None = None) -> None:
    """A pool of worker subprocesses, one per device group on a GPU machine (`sweeps.devices`), else
    max_parallel (default half the cores); each gets a point directory, logs to its worker.log."""
    gpus = devices.detect_gpus()
    slots = devices.worker_slots(devices_per_point, max_parallel, default_parallel(), gpus=gpus)
    if gpus:
        _log(f"{len(slots)} workers: " + ", ".join(f"{devices.VISIBLE}={s[devices.VISIBLE]}" for s in slots))

    def report(d: Path, rc: int, dt: float, i: int, n: int):
        _log(f"{'done' if rc == 0 else f'FAILED (exit {rc})'} {d.name} ({i + 1}/{n}, {dt:.0f}s)")

    devices.run_pool(dirs, worker_command, slots, report)


# ---------------------------------------------------------------------------------------------
# aggregation


def _dedup_by_run(frames: list[tuple[dict, object]]):
    """Concatenate (axis values, table) pairs keeping each run_id's rows once (points share runs), with a
    column per scalar axis, set on the rows of runs whose points all agree on that axis's value."""
    import pandas as pd  # aggregation only: `overopt sweep status` imports this module without pandas

    owners: dict[str, list[dict]] = {}  # run_id -> axis values of every point that holds the run
    parts = []
    for values, df in frames:
        if "run_id" not in df.columns:
            parts.append(df)
            continue
        parts.append(df[~df["run_id"].isin(list(owners))])
        for rid in df["run_id"].unique():
            owners.setdefault(rid, []).append(values)
    table = pd.concat(parts, ignore_index=True)
    axes = {k for values, _ in frames for k, v in values.items() if isinstance(v, (bool, int, float, str))}
    for axis in sorted(axes):
        col = []
        for rid in table.get("run_id", pd.Series([None] * len(table))):
            vals = [v.get(axis) for v in owners.get(rid, [])]
            same = vals and all(v == vals[0] and type(v) is type(vals[0]) for v in vals)
            col.append(vals[0] if same else None)
        table[axis] = pd.Series(col, index=table.index, dtype=object).infer_objects()
    return table, sorted(axes)


def _readable(path: Path, read):
    """read(path), or UsageError naming a damaged file (pyarrow's errors included)."""
    try:
        return read(path)
    except Exception as e:  # noqa: BLE001 - any failure to read the file is the file's
        raise UsageError(f"{path} is unreadable ({type(e).__name__}); `overopt verify` the sweep") from None


def aggregate(out: Path, figures: bool = True) -> int:
    """Gather the DONE points' tables into DIR and run the finish pipeline there (study.finish: points,
    proxies, per-prompt best-of-n rows, best-n predictions, probes, fits, criteria, selection.json, unseen_size.json,
    and the figures and report when `figures`).
    Returns: the number of points aggregated."""
    import pandas as pd  # aggregation only (as above)

    from study.finish import (
        PROBES,
        render,
        write_results,
    )  # the study's stack (JAX, scaling, figures): aggregation only

    info = read_sweep(out)
    tables: dict[str, list] = {"points": [], "proxies": [], "bon_prompts": [], "best_n": [], "probes": []}
    for p in info["points"]:
        d = Path(out) / "points" / p["id"]
        if not (d / "DONE").exists():
            continue
        for name, frames in tables.items():
            if (d / "out" / f"{name}.parquet").exists():
                frames.append((p["values"], _readable(d / "out" / f"{name}.parquet", safe_read.read_parquet)))
        if (d / "out" / PROBES).exists():  # the point's probe rows (DIR/probes.json)
            rows = _readable(d / "out" / PROBES, lambda f: safe_read.read_json(f)["rows"])
            tables["probes"].append((p["values"], pd.DataFrame(rows)))
    if not tables["points"]:
        return 0
    points, axes = _dedup_by_run(tables["points"])
    proxies = _dedup_by_run(tables["proxies"])[0] if tables["proxies"] else None
    prompts = _dedup_by_run(tables["bon_prompts"])[0] if tables["bon_prompts"] else None
    preds = _dedup_by_run(tables["best_n"])[0] if tables["best_n"] else None  # the select stages' predictions
    probes = _dedup_by_run(tables["probes"])[0] if tables["probes"] else None
    varying = tuple(a for a in axes if points[a].nunique() > 1)  # a sweep axis that varies is a grouping column
    calibration = set()
    for p in info["points"]:  # the replicates each point's preset was calibrated on
        cfg = Path(out) / "points" / p["id"] / "config.json"
        if cfg.exists():
            calibration |= set(_readable(cfg, lambda f: safe_read.read_json(f)).get("calibration_replicates") or [])
    write_results(
        Path(out),
        points,
        proxies,
        bon_prompts=prompts,
        predictions=preds,
        probes=probes,
        by_extra=varying,
        preset=info.get("preset"),
        calibration=tuple(sorted(calibration)),
    )
    if figures:
        render(Path(out))
    return len(tables["points"])


# ---------------------------------------------------------------------------------------------
# the whole launch


def default_parallel() -> int:
    """Local workers: half the cores (each JAX process uses several threads), at least 1."""
    return max(1, (os.cpu_count() or 2) // 2)


def launch(
    spec_path: Path,
    out: Path,
    executor: str = "local",
    max_parallel: int | None = None,
    slurm: SlurmOptions | None = None,
    jax_cache: Path | None = None,
    figures: bool = True,
    devices_per_point: int | None = None,
) -> int:
    """Expand the spec, run every point that is not DONE, aggregate. Returns the exit code: 0 when every
    point is done (or, on Slurm without waiting, submitted), 1 when some failed."""
    if executor not in ("local", "debug", "slurm"):
        raise UsageError(f"unknown executor '{executor}' (choose from: local, debug, slurm)")
    spec = load_spec(spec_path)
    points = expand(spec)
    if max_parallel is not None and max_parallel < 1:
        raise UsageError("--max-parallel must be at least 1")
    if devices_per_point is not None and executor != "local":
        raise UsageError("--devices-per-point is for the local executor (Slurm: --gpus-per-job)")
    if executor == "local":
        devices.worker_slots(devices_per_point, max_parallel, 1)  # its UsageError before anything is written
    pending = [p for p in points if worker.point_status(Path(out) / "points" / p.id)[0] in ("pending", "failed")]
    if executor == "slurm" and pending:
        check_slurm()  # before any point directory is written
    dirs = prepare(spec, points, Path(out), jax_cache)
    todo = [d for d in dirs if worker.point_status(d)[0] in ("pending", "failed")]
    busy = sum(worker.point_status(d)[0] == "running" for d in dirs)
    _log(
        f"{spec.name}: {len(points)} points, {len(dirs) - len(todo) - busy} done, {busy} running elsewhere, "
        f"{len(todo)} to run ({executor})"
    )
    t0 = time.time()
    if todo and executor == "debug":
        run_debug(todo)
    elif todo and executor == "local":
        run_local(todo, max_parallel, devices_per_point)
    elif todo and executor == "slurm":
        opts = slurm or SlurmOptions()
        if max_parallel is not None:
            opts = SlurmOptions(**{**opts.__dict__, "max_parallel": max_parallel})
        if not run_slurm(todo, Path(out), opts, spec.name):
            _log(f"not waiting; `overopt sweep status {out}` shows progress, relaunching aggregates when done")
            return 0
    rows = statuses(Path(out))
    failed = [r for r in rows if r["state"] == "failed"]
    n = aggregate(Path(out), figures=figures)
    _log(f"{n}/{len(rows)} points done in {time.time() - t0:.0f}s" + (f"; aggregated into {out}" if n else ""))
    if failed:
        _log(
            f"{len(failed)} of {len(rows)} points failed (`overopt sweep status {out}`); first: "
            f"{failed[0]['id']}: {failed[0]['detail']}"
        )
        return 1
    return 0
