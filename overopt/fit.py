"""`overopt fit INPUT...`: fit the over-optimization laws to runs or points files and print a table.

Exit 0 on success (a fit that does not converge is flagged in its row), 2 on bad input: one line on
stderr, nothing written. `overopt/cli.py` imports this module only for `overopt fit` (it loads pandas and
scipy, never JAX).
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from pathlib import Path

from core.errors import UsageError
from core.store import atomic_write_json
from ingest.input_specs import add_input_arguments, load_options
from ingest.load import load_points_with_sources, with_prompt_rows
from overopt.fit_verdict import check_dirs, write_verdict
from overopt.tables import format_result, input_lines, offset_lines, spread_line, spread_rows
from scaling.fitting import fit_table

# --n-boot beyond this takes hours and proves nothing more; --seed is a numpy seed (non-negative)
MAX_BOOT = 100_000
MAX_SEED = 2**63 - 1


def add_arguments(parser) -> None:
    """Arguments of `overopt fit`."""
    add = parser.add_argument
    add(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="run dir, dir of runs (study/sweep), .parquet/.csv/.jsonl file, or a trainer log: HF trainer_state.json,"
        " trainer output or checkpoint-N dir, log_history as JSON lines, TensorBoard events, W&B CSV export; "
        "INPUT:bon or INPUT:rl sets that input's method",
    )
    add(
        "--by",
        default=None,
        metavar="COLS",
        help="comma-separated grouping columns (default: those present among method, rm_params, data_size, "
        "kl_coef, policy_params, objective, ensemble_size; seeds pooled); '' for one group",
    )
    add(
        "--method",
        default="auto",
        metavar="LAW",
        help="law to fit: auto (from each group's method), bon, rl, rl_log1p, power, linear, concave",
    )
    add_input_arguments(parser)
    add(
        "--shared-alpha", action="store_true", help="Gao's joint fit: one alpha shared across sizes, one beta per group"
    )
    add(
        "--n-boot",
        type=int,
        default=1000,
        metavar="N",
        help=f"bootstrap resamples for the 95%% intervals, 0..{MAX_BOOT} (0: Jacobian intervals only)",
    )
    add(
        "--resample",
        default="auto",
        metavar="UNIT",
        help="interval unit: auto (bootstrap over prompts with 3+, else a t interval over seeds with 2+, else "
        "bootstrap over points), points, or a column to bootstrap as clusters",
    )
    add("--seed", type=int, default=0, help=f"bootstrap seed, 0..{MAX_SEED} (default 0)")
    add(
        "--d-cut",
        type=float,
        default=None,
        metavar="D",
        help="advance-prediction check: fit on d = sqrt(kl) <= D, report the error beyond",
    )
    add(
        "--json",
        default=None,
        metavar="OUT",
        help='write {"fits", "scaling"[, "advance"][, "inputs": the KL and gold each trainer log gave]} to OUT',
    )
    add(
        "--verdict",
        default=None,
        metavar="OUT",
        help="the inputs are study directories (one or more replicates each): write their pooled verdict over"
        " replicates (docs/CRITERIA.md) to OUT",
    )


def output_targets(args) -> list:
    """The files `overopt fit` writes (checked by the CLI before it starts: core.outputs.check_targets)."""
    return [("--json", args.json, "file"), ("--verdict", getattr(args, "verdict", None), "file")]


def run(args) -> int:
    """Load, fit, print; write --json atomically only after everything succeeded."""
    check_args(args)
    df, sources = load_points_with_sources(args.inputs, **load_options(args), need_method=args.method == "auto")
    if args.resample != "points":  # a study's best-of-n curves are fitted on their per-prompt rows
        df = with_prompt_rows(df, args.inputs)
    result = fit_table(
        df,
        by=args.by,
        method=args.method,
        shared_alpha=args.shared_alpha,
        n_boot=args.n_boot,
        seed=args.seed,
        d_cut=args.d_cut,
        resample=args.resample,
    )
    if sources:  # which KL (units) and gold each trainer log gave: one stderr line a run, once the fit succeeded
        result["inputs"] = sources
    spread = spread_rows(df, result)  # the drop in units of the gold's per-step spread, where a trainer logs it
    if spread:
        result["spread"] = spread
    for line in input_lines(sources, args.recentre) + offset_lines(df, result, args.recentre) + spread_line(spread):
        print(f"[overopt] fit: {line}", file=sys.stderr, flush=True)
    try:
        print(format_result(result), flush=True)
    except BrokenPipeError:  # the reader left (`| head`): finish quietly, still write --json
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    if args.json is not None:
        atomic_write_json(args.json, result)
    if args.verdict is not None:
        write_verdict(args.inputs, args.verdict)
    return 0


def check_args(args) -> None:
    """UsageError for a flag out of range, or a --json that cannot be written (checked before any output)."""
    if not 0 <= args.n_boot <= MAX_BOOT:
        raise UsageError(f"--n-boot must be in 0..{MAX_BOOT}, got {args.n_boot}")
    if not 0 <= args.seed <= MAX_SEED:
        raise UsageError(f"--seed must be in 0..{MAX_SEED}, got {args.seed}")
    if args.d_cut is not None and not (math.isfinite(args.d_cut) and args.d_cut > 0):
        raise UsageError(f"--d-cut must be a positive number, got {args.d_cut}")
    for flag, value in (("--json", args.json), ("--verdict", getattr(args, "verdict", None))):
        if value is not None:
            check_out(flag, Path(value))
    if getattr(args, "verdict", None) is not None:
        check_dirs(args.inputs)


def check_out(flag: str, out: Path) -> None:
    """UsageError for an output file that cannot be written."""
    if out.is_symlink() and not out.exists():
        raise UsageError(f"{flag} {out} is a symbolic link to nothing")
    if out.is_dir():
        raise UsageError(f"{flag} {out} is a directory")
    parent = next((p for p in out.parents if p.exists() or p.is_symlink()), Path("."))  # created if missing
    if not parent.is_dir():
        raise UsageError(f"{flag} {out}: {parent} is not a directory")
    try:  # a probe file (os.access says yes to root even on a read-only file system)
        fd, probe = tempfile.mkstemp(dir=parent, prefix=f".{out.name[:50]}.probe.")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UsageError(f"{flag} {out}: cannot write in {parent} ({e.strerror})") from None
