"""`python -m benchmarks [--quick] [--json OUT] [--only NAMES]`: every benchmark, one table.

Runs the bench_* modules in turn (sampling, PPO, reward-model training, grid, hardware ceiling,
fitting, sampling imported Hugging Face checkpoints), prints one row per benchmark (ours, peer, unit,
ratio = speed-up of ours, higher is better)
and, with --json, writes {"machine", "date", "mode", "load", "results", "skipped"} atomically.
A module whose peer is not installed is listed under "skipped" with the reason.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import sys
import time

MODULES = ("sampling", "ppo", "rm", "grid", "ceiling", "fit", "hf")


def table(results: list[dict]) -> str:
    """The rows as an aligned text table (also valid Markdown)."""
    head = ("benchmark", "ours", "peer", "unit", "ratio")
    body = [(r["name"], f"{r['ours']:.4g}", f"{r['peer']:.4g}", r["unit"], f"{r['ratio']:.3g}") for r in results]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    fmt = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([fmt(head), rule, *map(fmt, body)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats (at most 5 minutes)")
    parser.add_argument("--json", metavar="OUT", help="write the results as JSON to OUT")
    parser.add_argument("--only", metavar="NAMES", help=f"comma-separated subset of {','.join(MODULES)}")
    args = parser.parse_args(argv)
    names = MODULES if not args.only else tuple(n.strip() for n in args.only.split(","))
    unknown = [n for n in names if n not in MODULES]
    if unknown:
        print(f"error: unknown benchmark {unknown[0]!r}; choose from {','.join(MODULES)}", file=sys.stderr)
        return 2

    from benchmarks import common

    mode = common.scale(args.quick)
    load_start, t0 = common.loadavg(), time.perf_counter()
    results, skipped = [], []
    for name in names:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        t1 = time.perf_counter()
        try:
            rows = [common.normalise(r) for r in module.rows(args.quick)]
        except common.Skip as e:
            skipped.append({"benchmark": name, "reason": str(e)})
            print(f"[{name}] skipped: {e}", file=sys.stderr, flush=True)
            continue
        results += rows
        print(f"[{name}] {time.perf_counter() - t1:.0f} s", file=sys.stderr, flush=True)
    out = {
        "machine": common.machine(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "mode": mode,
        "load": {"start": load_start, "end": common.loadavg()},
        "seconds": round(time.perf_counter() - t0, 1),
        "results": results,
        "skipped": skipped,
    }
    print(table(results))
    for r in results:
        if r.get("detail"):
            print(f"  {r['name']}: {r['detail']}")
    m = out["machine"]
    print(
        f"machine: {m['cpu']}, {m['cores']} cores; load average {load_start} -> {out['load']['end']}; "
        f"{out['seconds']:.0f} s"
    )
    if args.json:
        from core.store import atomic_write_json

        atomic_write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
