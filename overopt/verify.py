"""`overopt verify DIR`: check a study or sweep directory against its manifests; changes nothing.

Checked (core.integrity): every finished run under DIR/runs, and a sweep's point directories under
DIR/points (each a run whose DONE guards its out/ tables); runs a study.json names that are gone
from DIR/runs; and the top-level tables and JSON files (points.parquet, fits.json, ...) are read.
One line per damaged or unverified run (a run finished before manifests) or unreadable file, then a
summary. Exit 0: nothing damaged (unverified runs are reported, not counted as damage); 1: damage
found; 2: DIR is not a study or sweep directory. Reads only: no lock, no marker, no cache is written.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pyarrow.parquet as pq

from core import integrity, safe_read
from core.errors import UsageError
from sweeps.launch import read_sweep

TABLES = ("points.parquet", "proxies.parquet", "bon_prompts.parquet")
JSONS = ("study.json", "sweep.json", "fits.json", "criteria.json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", help="a study or sweep directory (holding study.json or sweep.json, and runs/)")


def _link_problem(path: Path, root: Path) -> str | None:
    """Why the symbolic link at `path` is damage, or None: one to nothing, or one out of `root` (overopt
    writes regular files only; a link it did not write must at least stay inside the directory checked)."""
    try:
        target = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return f"a symbolic link to nothing ({os.readlink(path)})"
    if not target.is_relative_to(root.resolve()):
        return f"a symbolic link out of the directory ({target})"
    return None


def _table_problem(path: Path, root: Path) -> str | None:
    """Why the table or JSON file at `path` cannot be read, or None."""
    try:
        if path.is_symlink() and (why := _link_problem(path, root)):
            return why
        if path.suffix == ".parquet":
            with safe_read.open_file(path, safe_read.MAX_TABLE) as f:  # a FIFO or a device: refused, not read
                rows = pq.read_table(f).num_rows
            if rows == 0 and path.name == "points.parquet":
                return "no rows (a finished study or sweep has points)"
        else:
            safe_read.read_json(path)
    except Exception as e:  # any failure to read is what is reported
        text = " ".join(str(e).split())[:160]
        return f"unreadable ({type(e).__name__}{': ' + text if text else ''})"
    return None


def _named_runs(study_json: Path) -> list[str]:
    """The run ids a study.json names (its BoN and RL runs); [] when it names none or is unreadable."""
    try:
        runs = safe_read.read_json(study_json).get("runs")
    except (OSError, ValueError, AttributeError, UsageError):
        return []
    return [r for r in runs if isinstance(r, str)] if isinstance(runs, list) else []


def check_dir(root: Path) -> tuple[list[dict], dict]:
    """(findings, counts) for the study or sweep directory `root`: a finding is a dict of where (a run
    or file, relative to `root`), what, status ("damaged" or "unverified"); counts has runs, verified,
    unverified, damaged, unfinished, files. Reads only."""
    findings: list[dict] = []
    counts = dict.fromkeys(("runs", "verified", "unverified", "damaged", "unfinished", "files"), 0)
    for sub in ("runs", "points"):
        if os.path.lexists(root / sub) and not (root / sub).is_dir():  # a file, a FIFO, a link to nothing
            what = "a symbolic link to nothing" if not (root / sub).exists() else "not a directory"
            findings.append({"where": sub, "what": f"{what} (the run store)", "status": "damaged"})
            continue
        for d in integrity.symlinked_run_dirs(root / sub):  # never followed, and never skipped silently
            findings.append({"where": f"{sub}/{d.name}", "what": "a symbolic link, not a run", "status": "damaged"})
        for d in integrity.run_dirs(root / sub):
            status, problems = integrity.run_status(d)
            counts["runs"] += 1
            counts["verified" if status == "ok" else status] += 1
            if status in ("damaged", "unverified"):
                more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
                f, p = problems[0]
                findings.append({"where": f"{sub}/{d.name}", "what": f"{f}: {p}{more}", "status": status})
    # runs a study names must be in DIR/runs (a sweep point's out/ has no runs/ of its own: not checked there)
    studies = (
        [root / "study.json"] + sorted((root / "points").glob("*/out/study.json")) if (root / "runs").is_dir() else []
    )
    for sj in studies:
        for rid in _named_runs(sj) if sj.is_file() else []:
            if not (root / "runs" / rid).is_dir():
                where = sj.relative_to(root).as_posix()
                findings.append({"where": f"runs/{rid}", "what": f"missing, named by {where}", "status": "damaged"})
    for name in TABLES + JSONS:
        path = root / name
        if os.path.lexists(path):  # a dangling link is there too: damage, never skipped
            counts["files"] += 1
            if problem := _table_problem(path, root):
                findings.append({"where": name, "what": problem, "status": "damaged"})
            elif name == "sweep.json":  # readable JSON; its structure too (the ids become paths)
                try:
                    read_sweep(root)
                except UsageError as e:
                    findings.append({"where": name, "what": str(e).rpartition("is damaged: ")[2], "status": "damaged"})
    return findings, counts


def run(args) -> int:
    """Print one line a finding and a summary. Returns: 0 no damage, 1 damage found."""
    root = Path(args.dir)
    if not root.is_dir():
        raise UsageError(f"verify: {root} is not a directory")
    if not any((root / m).exists() for m in ("study.json", "sweep.json", "runs")):
        raise UsageError(f"verify: {root} holds no overopt study or sweep (no study.json, sweep.json or runs/)")
    findings, n = check_dir(root)
    for f in findings:
        print(f"{f['status']:<10} {f['where']}: {f['what']}")
    damaged = sum(f["status"] == "damaged" for f in findings)
    print(
        f"{root}: {n['runs']} runs: {n['verified']} verified, {n['unverified']} unverified, {n['damaged']} damaged, "
        f"{n['unfinished']} unfinished; {n['files']} top-level files read; "
        + (f"{damaged} problem(s) found" if damaged else "no damage found")
    )
    return 1 if damaged else 0
