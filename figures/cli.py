"""`overopt figures DIR [--out FIGDIR] [--only NAMES]`: every figure the runs allow, and the report."""

from __future__ import annotations

import argparse
from pathlib import Path

from core.errors import UsageError
from figures import FIGURES, render_all
from figures.data import load_data, load_inputs
from figures.report import write_report
from ingest.input_specs import add_input_arguments, load_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="a study or sweep directory (points.parquet, fits.json, proxies.parquet, runs/), or what `overopt fit`"
        " reads: points files (`overopt bon --points`, `--json`), trainer runs and logs, with the same input flags",
    )
    parser.add_argument(
        "--out", metavar="FIGDIR", default=None, help="where figures go (default: DIR/figures; needed for other inputs)"
    )
    add_input_arguments(parser)
    parser.add_argument(
        "--only",
        metavar="NAMES",
        default=None,
        help="comma-separated figure names, of: " + ", ".join(FIGURES),
    )
    parser.add_argument("--no-report", action="store_true", help="do not write DIR/report.md and report.html")


DEFAULTS = load_options(
    argparse.Namespace(
        **{a: None for a in ("kl_per_token", "recentre", "algo", "pool_runs")}, kl_col="kl", gold_col="gold", eval=False
    )
)


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


def report_root(args) -> Path | None:
    """Where the report goes: beside the study or sweep directory given alone (or any one directory without
    --out), else beside the figures (--out): a trainer run's or a file's directory is never written to when
    --out names where outputs go."""
    first = Path(args.inputs[0])
    if len(args.inputs) == 1 and first.is_dir():
        marked = any((first / m).exists() for m in ("study.json", "sweep.json", "points.parquet"))
        if marked or args.out is None:
            return first
    return Path(args.out) if args.out else None


def output_targets(args) -> list:
    """Where `overopt figures` writes (checked by the CLI before it starts: core.outputs.check_targets): the
    figures directory, and the report (`report_root`; its own files there: checked by type)."""
    root = report_root(args)
    out = Path(args.out) if args.out else (root / "figures" if root is not None else None)
    report = [] if args.no_report or root is None else [root / "report.md", root / "report.html"]
    return [("--out", out, "dir")] + [("report", p, "own") for p in report]


def run(args) -> int:
    """Render the figures and write the report; prints one line a figure. Returns: 0."""
    only = parse_only(args.only)
    options = load_options(args)
    missing = next((p for p in map(Path, args.inputs) if not p.exists()), None)
    if missing is not None:
        raise UsageError(f"{missing}: no such file or directory (not a directory of runs, not a file)")
    first = Path(args.inputs[0])
    one_dir = len(args.inputs) == 1 and first.is_dir()  # a study, sweep, runs or trainer output directory
    plain = one_dir and options == DEFAULTS
    if not one_dir and args.out is None:
        raise UsageError("figures of files or of several inputs need --out FIGDIR (where they go)")
    root = report_root(args)  # beside the study; beside the figures for files, several inputs, a trainer run
    out = Path(args.out) if args.out else root / "figures"
    if out.is_symlink() and not out.exists():
        raise UsageError(f"--out {out} is a symbolic link to nothing")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    # every input checked before anything is drawn
    data = load_data(first) if plain else load_inputs(args.inputs, options, root)
    results = render_all(data, out, only)
    for note in data.notes:
        print(f"note: {note}")
    for name, r in results.items():
        print(f"{name}: " + (f"skipped: {r['skip']}" if r["skip"] else ", ".join(str(out / f) for f in r["files"])))
    if not args.no_report:  # beside the figures when the inputs are not one directory
        print(f"report: {write_report(root, out, data=data)} (and report.html)")
    return 0
