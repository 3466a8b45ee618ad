"""`overopt bon --policy hf:DIR --proxy REF... --gold REF --prompts FILE --pool N --out OUT`: best-of-n on
Hugging Face checkpoints in the text world.

The policy samples the pool once (N responses a prompt, `bon.text_pool`); every proxy (`hf:DIR` or
`torch:DIR`) and the gold (`hf:DIR` or `torch:DIR`, a one-label reward model) score its decoded text; the
samples table goes through the same best-of-n code as `overopt bon SAMPLES` (`ingest.bon_samples`: the
unbiased estimator, kl bound / exact / Beirami, every selection rule), one curve a proxy, gold recentred so
that the pool's mean is 0. OUT gets samples.parquet, points.parquet, bon_prompts.parquet, fits.json,
criteria.json (what this data can judge), figures/, report.md and cost.json (seconds of sampling and of each
reward model, rows scored). Bad input: one line on stderr, exit 2, nothing written.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import pandas as pd

from core.errors import UsageError
from core.store import atomic_write_json, atomic_write_parquet
from ingest.bon_samples import MIN_POOL, bon_tables, rule_tables
from scaling.points import RULES

MAX_POOL = 4096


def add_text_arguments(parser) -> None:
    """The text world's arguments of `overopt bon` (used when --policy is given)."""
    g = parser.add_argument_group("Hugging Face models in the text world (instead of SAMPLES)")
    add = g.add_argument
    add("--policy", default=None, metavar="hf:DIR", help="the policy checkpoint (its tokenizer samples the prompts)")
    add(
        "--proxy",
        action="extend",
        nargs="+",
        default=None,
        metavar="REF",
        help="proxy reward models, hf:DIR (JAX) or torch:DIR (PyTorch), one-label; each a curve",
    )
    add("--gold", default=None, metavar="REF", help="the gold reward model: hf:DIR or torch:DIR")
    add(
        "--prompts",
        default=None,
        metavar="FILE",
        help="prompts: a text file (one a line) or a .parquet/.jsonl table (column 'prompt', or --prompt-column)",
    )
    add("--prompt-column", default=None, metavar="COL", help="the prompts' column of a .parquet/.jsonl table")
    add("--pool", type=int, default=None, metavar="N", help=f"responses per prompt ({MIN_POOL}..{MAX_POOL})")
    add("--out", default=None, metavar="OUT", help="output directory")
    add(
        "--max-new-tokens",
        type=int,
        default=None,
        metavar="T",
        help="response length in tokens (default: 64, cut to what every model's context leaves)",
    )
    add("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0)")
    add("--batch-size", type=int, default=32, metavar="B", help="rows per reward-model call (default 32)")
    add(
        "--compute-dtype",
        default="float32",
        choices=("float32", "bfloat16"),
        help="the JAX models' dense layers (weights stay float32): bfloat16 is faster on accelerators",
    )


TEXT_FLAGS = ("policy", "proxy", "gold", "prompts", "prompt_column", "pool", "out", "max_new_tokens")


def text_mode(args) -> bool:
    """Whether the arguments ask for the text world (any of its flags), checked against SAMPLES."""
    used = [f for f in TEXT_FLAGS if getattr(args, f, None) is not None]
    if used and args.samples:
        raise UsageError("give SAMPLES tables or --policy/--proxy/--gold/--prompts, not both")
    if not used and not args.samples:
        raise UsageError("give SAMPLES tables, or --policy, --proxy, --gold, --prompts, --pool and --out")
    return bool(used)


def check_text_args(args) -> Path:
    """Every flag checked before anything is loaded or written; returns OUT."""
    from lm.hf.text_rm import parse_ref  # JAX: loaded only on this path

    missing = [f"--{f}" for f in ("policy", "proxy", "gold", "prompts", "pool", "out") if getattr(args, f) is None]
    if missing:
        raise UsageError(f"the text world needs {', '.join(missing)}")
    parse_ref(args.policy, allowed=("hf",), what="--policy")
    for ref in args.proxy:
        parse_ref(ref, what="--proxy")
    if len(set(args.proxy)) != len(args.proxy):
        raise UsageError("--proxy: each proxy once")
    parse_ref(args.gold, what="--gold")
    if not MIN_POOL <= args.pool <= MAX_POOL:
        raise UsageError(f"--pool must be in {MIN_POOL}..{MAX_POOL} (the law needs 3 points at n > 1), got {args.pool}")
    if args.max_new_tokens is not None and not 1 <= args.max_new_tokens <= 1 << 16:
        raise UsageError(f"--max-new-tokens must be a positive integer, got {args.max_new_tokens}")
    if not (math.isfinite(args.temperature) and 0 < args.temperature <= 100):
        raise UsageError(f"--temperature must be in (0, 100], got {args.temperature}")
    if not 1 <= args.batch_size <= 4096:
        raise UsageError(f"--batch-size must be in 1..4096, got {args.batch_size}")
    if args.objective is not None or args.pool_size is not None or args.recentre is not None:
        raise UsageError("--objective, --pool-size and --recentre read SAMPLES; the text world ranks each proxy alone")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a directory")
    if out.is_dir() and (out / "points.parquet").exists():
        raise UsageError(f"--out {out}: holds results already (points.parquet); give a new directory")
    return out


def run_text(args) -> int:
    """Load, sample, score, estimate; write OUT only after everything succeeded."""
    out = check_text_args(args)
    from bon.text_pool import sample_pool, samples_table  # JAX and the models: this path only
    from gold_rm.text_world import read_prompts
    from lm.hf.text_rm import text_rm

    texts = read_prompts(args.prompts, args.prompt_column)
    dtype = args.compute_dtype
    proxies = [text_rm(ref, what="--proxy", batch_size=args.batch_size, compute_dtype=dtype) for ref in args.proxy]
    gold = text_rm(args.gold, what="--gold", batch_size=args.batch_size)
    n_ctx = min(rm.n_ctx for rm in (*proxies, gold))
    pool = sample_pool(
        args.policy[3:],
        texts,
        n=args.pool,
        max_new=args.max_new_tokens,
        n_ctx=n_ctx,
        seed=args.seed,
        temperature=args.temperature,
        compute_dtype=dtype,
    )
    say(f"sampled {pool.tokens.shape[0]} responses ({len(texts)} prompts x {args.pool}) in {pool.seconds:.1f}s")
    seqs = pool.texts()
    scores = {rm.ref: (rm.n_params, rm.score_texts(seqs)) for rm in proxies}
    gold_scores = gold.score_texts(seqs)
    for rm in (*proxies, gold):
        say(f"{rm.ref}: {rm.rows} rows scored in {rm.seconds:.1f}s")
    samples = samples_table(pool, scores, gold_scores)
    points, prompt_rows = bon_tables(samples, recentre="first")
    extra = rule_tables(samples, RULES, recentre="first")
    points = pd.concat([points, extra], ignore_index=True) if extra is not None else points
    cost = {
        "sampling": {"seconds": pool.seconds, "rows": int(pool.tokens.shape[0]), "max_new": pool.mask.shape[1]},
        "reward_models": [{**rm.cost(), "role": "gold" if rm is gold else "proxy"} for rm in (*proxies, gold)],
        "gold_outside_compiled_program": True,
    }
    write(out, samples, points, prompt_rows, cost)
    print(f"[overopt] bon: wrote {out}/points.parquet ({len(points)} points), fits.json, figures/, report.md")
    return 0


def say(line: str) -> None:
    print(f"[overopt] bon: {line}", file=sys.stderr, flush=True)


def write(out: Path, samples, points, prompt_rows, cost) -> None:
    """samples, cost, then the finish step (points, fits, criteria, figures, report)."""
    from study.finish import render, write_results  # the shared finish step: fits, figures, report

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_parquet(out / "samples.parquet", samples)
    start = time.perf_counter()
    write_results(out, points, None, bon_prompts=prompt_rows)
    render(out)
    cost["finish_seconds"] = time.perf_counter() - start
    atomic_write_json(out / "cost.json", json.loads(json.dumps(cost, default=float)))
