"""`overopt figures DIR [--out FIGDIR] [--only NAMES]`: every figure the runs allow, and the report."""

from __future__ import annotations

import argparse
from pathlib import Path

from core.errors import UsageError
from figures import FIGURES, render_all
from figures.data import load_data
from figures.report import write_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", help="study or sweep directory (points.parquet, fits.json, proxies.parquet, runs/)")
    parser.add_argument("--out", metavar="FIGDIR", default=None, help="where figures go (default: DIR/figures)")
    parser.add_argument(
        "--only",
        metavar="NAMES",
        default=None,
        help="comma-separated figure names, of: " + ", ".join(FIGURES),
    )
    parser.add_argument("--no-report", action="store_true", help="do not write DIR/report.md and report.html")


def parse_only(value: str | None) -> list[str] | None:
    """'a,b' -> ['a', 'b'], checked against FIGURES (UsageError on an unknown name); None -> None (all)."""
    if value is None:
        return None
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in FIGURES]
    if unknown or not names:
        raise UsageError(
            f"--only: unknown figure name(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(FIGURES)}"
        )
    return names


def run(args) -> int:
    """Render the figures and write the report; prints one line a figure. Returns: 0."""
    only = parse_only(args.only)
    root = Path(args.dir)
    out = Path(args.out) if args.out else root / "figures"
    if out.is_symlink() and not out.exists():
        raise UsageError(f"--out {out} is a symbolic link to nothing")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    data = load_data(root)  # every input checked before anything is drawn
    results = render_all(data, out, only)
    for note in data.notes:
        print(f"note: {note}")
    for name, r in results.items():
        print(f"{name}: " + (f"skipped: {r['skip']}" if r["skip"] else ", ".join(str(out / f) for f in r["files"])))
    if not args.no_report:
        print(f"report: {write_report(root, out, data=data)} (and report.html)")
    return 0
