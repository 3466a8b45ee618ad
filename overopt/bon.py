"""`overopt bon SAMPLES...`: best-of-n points and fits from a user's own samples (prompt, proxy, gold).
`overopt bon --policy hf:DIR --proxy REF... --gold REF --prompts FILE --pool N --out OUT`: the same on a pool
that a Hugging Face policy samples in the text world (`overopt.bon_text`).

The samples table, and the selection rules' points on its pools, are described in `ingest.bon_samples`.
Prints the points (at about two n an octave; every n is in --json) and the fits of the best-of-n law
(`scaling.fitting.fit_table` on the per-prompt rows, so the intervals resample prompts). Exit 0 on success,
2 on bad input: one line on stderr, nothing written.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import pandas as pd

from bon.pools import n_grid
from core.errors import UsageError
from core.store import atomic_write_json, atomic_write_parquet, atomic_write_text, to_jsonable
from ingest.bon_samples import bon_tables, bound_rows, read_samples, rule_tables
from ingest.input_specs import parse_recentre
from overopt.bon_text import add_text_arguments, run_text, text_mode
from overopt.fit import check_args, check_out
from overopt.tables import format_result, num, offset_lines, table
from scaling.fitting import fit_table
from scaling.points import RULES

OBJECTIVES = ("mean", "min", "median", "uwo")


def add_arguments(parser) -> None:
    """Arguments of `overopt bon`."""
    add = parser.add_argument
    add(
        "samples",
        nargs="*",
        metavar="SAMPLES",
        help="table(s) of samples, one row a response: prompt, proxy (or proxy_0..proxy_k), gold, optional"
        " response (its identity), ref_logprob (under the initial policy), rm_params/data_size/policy_params/seed"
        " (a curve each); or, instead, the text world's flags below",
    )
    add(
        "--objective",
        default=None,
        choices=OBJECTIVES,
        help="how an ensemble (proxy_0..proxy_k) ranks: mean (default), min, median, uwo (mean - lambda var)",
    )
    add("--uwo-lambda", type=float, default=1.0, metavar="L", help="lambda of uwo (default 1.0)")
    add(
        "--pool-size",
        type=int,
        default=None,
        metavar="M",
        help="use the first M samples of each prompt (default: all; prompts must then have equal pools)",
    )
    add(
        "--recentre",
        default=None,
        metavar="HOW",
        help="gold is taken as given; 'first' subtracts the pool's mean gold (best-of-1 scores 0), a number"
        " subtracts it",
    )
    add(
        "--rules",
        default=None,
        metavar="R,R",
        help="selection rules to report: max (best-of-n), soft, poisson, regularized (needs ref_logprob);"
        " default: every rule the samples allow",
    )
    add("--n-boot", type=int, default=1000, metavar="N", help="bootstrap resamples (over prompts) for the intervals")
    add("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    add("--json", default=None, metavar="OUT", help='write {"points": [...], "fits": [...], "scaling": [...]} to OUT')
    add(
        "--points",
        default=None,
        metavar="OUT",
        help="write the points table (every rule, every n) to OUT (.parquet, .csv or .jsonl): `overopt fit OUT` and"
        " `overopt figures OUT` read it as it is",
    )
    add_text_arguments(parser)


def output_targets(args) -> list:
    """The files `overopt bon` writes (checked by the CLI before it starts: core.outputs.check_targets)."""
    return [("--json", args.json, "file"), ("--points", args.points, "file")]


def run(args) -> int:
    """Read, estimate, fit, print; write --json atomically only after everything succeeded."""
    if text_mode(args):
        return run_text(args)
    check_args(argparse.Namespace(n_boot=args.n_boot, seed=args.seed, d_cut=None, json=args.json))
    if args.points is not None:
        check_out("--points", Path(args.points))
        if Path(args.points).suffix.lower() not in POINT_SUFFIXES:
            raise UsageError(f"--points {args.points}: the file's suffix says its format: .parquet, .csv or .jsonl")
    if not (math.isfinite(args.uwo_lambda) and 0 <= args.uwo_lambda <= 1e6):
        raise UsageError(f"--uwo-lambda must be a number in 0..1e6, got {args.uwo_lambda}")
    if args.pool_size is not None and not 1 <= args.pool_size <= 10**7:
        raise UsageError(f"--pool-size must be in 1..10000000, got {args.pool_size}")
    recentre = parse_recentre(args.recentre)
    samples = read_samples(args.samples)
    rules, notes = parse_rules(args.rules, "ref_logprob" in samples.columns)
    points, prompts = bon_tables(samples, args.objective, args.uwo_lambda, args.pool_size, recentre)
    extra = rule_tables(samples, rules, args.objective, args.uwo_lambda, args.pool_size, recentre)
    blocks, result = [], {"fits": [], "scaling": []}
    if "max" in rules:
        result = fit_table(prompts, by=None, method="auto", n_boot=args.n_boot, seed=args.seed)
        blocks += [format_points(points), format_result(result)]
    else:
        points = points.iloc[0:0]
    if extra is not None:
        rule_fits = fit_table(extra, by=None, method="bon", n_boot=args.n_boot, seed=args.seed)
        result = {k: result.get(k, []) + rule_fits.get(k, []) for k in ("fits", "scaling")}
        blocks += [format_rules(extra), "selection rules' laws (against kl_exact)\n" + format_result(rule_fits)]
        points = pd.concat([points, extra], ignore_index=True)
    blocks += notes
    gaps = bound_rows(samples, args.objective, args.uwo_lambda, args.pool_size)
    blocks.append(format_bound(gaps))
    for line in offset_lines(prompts, result, recentre, "overopt bon SAMPLES"):
        print(f"[overopt] bon: {line}", file=sys.stderr, flush=True)
    try:
        print("\n\n".join(blocks), flush=True)
    except BrokenPipeError:  # the reader left (`| head`): finish quietly, still write --json
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    if args.json is not None:
        atomic_write_json(args.json, {"points": points.to_dict("records"), **result, "bound_gap": gaps})
    if args.points is not None:
        write_points(Path(args.points), points)
    return 0


POINT_SUFFIXES = (".parquet", ".csv", ".jsonl")


def write_points(path: Path, points: pd.DataFrame) -> None:
    """The points table, atomically, in the format its suffix names."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        atomic_write_parquet(path, points)
    elif suffix == ".csv":
        atomic_write_text(path, points.to_csv(index=False))
    else:  # each float as Python writes it (round-trips; pandas' to_json keeps 10 digits), NaN as null
        rows = (json.dumps(to_jsonable(row)) + "\n" for row in points.to_dict("records"))
        atomic_write_text(path, "".join(rows))


def format_points(points) -> str:
    """The points at about two n an octave (and N), one block a curve."""
    keys = [c for c in ("objective", "ensemble_size", "rm_params", "data_size", "policy_params", "seed") if c in points]
    rows = []
    for values, sub in points.groupby(keys, sort=False, dropna=False):
        values = values if isinstance(values, tuple) else (values,)
        curve = ", ".join(f"{k}={num(v) if isinstance(v, float) else v}" for k, v in zip(keys, values))
        pool = int(sub["pool_size"].iloc[0])
        shown = sub[sub["n"].isin(n_grid(pool))]
        for r in shown.itertuples():
            se = "" if not math.isfinite(r.gold_se) else f" +- {num(r.gold_se, 2)}"
            kls = [num(r.kl), num(r.kl_exact), num(r.kl_beirami)]
            rows.append([curve, str(r.n), *kls, num(r.gold) + se, num(r.proxy), str(r.n_prompts)])
    header = ["curve", "n", "kl (bound)", "kl_exact", "kl_beirami", "gold", "proxy", "prompts"]
    title = (
        "best-of-n points (unbiased estimator over each pool; kl: log n - (n-1)/n, the analytic upper bound; kl_exact:"
        " best-of-n's KL against the pool's empirical distribution, exact for the pool, ties handled; kl_beirami:"
        " Beirami et al.'s estimator; every n in --json)"
    )
    return title + "\n" + table(header, rows)


def parse_rules(text: str | None, has_ref_logprob: bool) -> tuple[tuple[str, ...], list[str]]:
    """(rules to report, notes) from `--rules` ("max,soft", or None for every rule the samples allow)."""
    if text is None:
        if has_ref_logprob:
            return RULES, []
        note = "rule regularized left out: it needs a ref_logprob column (the response's log-prob under the base)"
        return tuple(r for r in RULES if r != "regularized"), [note]
    rules = tuple(r.strip() for r in str(text).split(",") if r.strip())
    bad = [r for r in rules if r not in RULES]
    if not rules or bad or len(set(rules)) != len(rules):
        raise UsageError(f"--rules: a comma-separated list of {', '.join(RULES)} (each once), got {text!r}")
    if "regularized" in rules and not has_ref_logprob:
        raise UsageError("--rules regularized needs a ref_logprob column in the samples (log-prob under the base)")
    return rules, []


def format_rules(points: pd.DataFrame) -> str:
    """One block: each rule's points (parameter, kl_exact, gold) per curve."""
    keys = [c for c in ("objective", "ensemble_size", "rm_params", "data_size", "policy_params", "seed") if c in points]
    rows = []
    for values, sub in points.groupby([*keys, "rule"], sort=False, dropna=False):
        values = values if isinstance(values, tuple) else (values,)
        curve = ", ".join(
            f"{k}={num(v) if isinstance(v, float) else v}" for k, v in zip(keys, values[:-1], strict=True)
        )
        for r in sub.itertuples():
            rows.append(
                [
                    curve,
                    r.rule,
                    f"{r.param} {num(r.param_value)}",
                    num(r.kl_exact),
                    f"{num(r.gold)} +- {num(r.gold_se, 2)}",
                ]
            )
    title = (
        "selection rules (kl_exact: each rule's exact KL against the pool's empirical distribution; gold exact on the"
        " pool; soft: n = the pool size, temperatures x the score's spread; Best-of-Poisson: n = 1 + Poisson(mu);"
        " regularized: best-of-n on proxy + beta x ref_logprob)"
    )
    return title + "\n" + table(["curve", "rule", "parameter", "kl_exact", "gold"], rows)


def format_bound(rows: list[dict], threshold: float = 0.1) -> str:
    """One line: how many prompts have a loose bound, and the worst."""
    loose = [r for r in rows if r["loose"]]
    if not loose:
        return f"kl bound: within {threshold:g} nats of kl_exact on every prompt (below the pool-size saturation)"
    worst = max(loose, key=lambda r: r["max_gap"])
    return (
        f"kl bound loose (> {threshold:g} nats above kl_exact at some n) on {len(loose)} of {len(rows)} prompts;"
        f" worst: prompt {worst['prompt']}, {worst['max_gap']:.2f} nats at n = {worst['at_n']:g}"
        f" ({worst['tie_gap']:.2f} of it from ties; {100 * worst['tie_fraction']:.0f}% of its responses tie)"
        " (per prompt in --json: bound_gap)"
    )
