"""`overopt bon` on one prompt with 10^6 responses (issue 33), and the soft rule's two summations side by side.

`python -m benchmarks.bon_million [--rows N] [--old DIR]`: writes the samples table into a temporary
directory (nothing is kept): one prompt, N responses (default 10^6), proxy and gold standard normal (seed 0),
written as the hostile-input script does (4 decimals: about 58,000 distinct proxies) and at full precision
(every proxy distinct: the soft rule's worst case); then times `python -m overopt.cli bon TABLE --n-boot 5`
in a subprocess (wall seconds and peak memory), for this checkout and, with --old DIR, for another one
(e.g. `git archive <commit> | tar -x -C DIR`), one after the other on each table; then the soft rule on the
full-precision pool at n = N for the default temperatures' extremes: the earlier implementation (the old
checkout's `bon.selection._soft_row`, summed on every distinct value; without --old, this checkout's
`soft_row` with no panel interpolated) and `bon.soft_integral.soft_row` on panels, with the largest
difference of p relative to the largest p. Prints the load average at start and end.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import loadavg

ROOT = Path(__file__).resolve().parent.parent


def write_table(path: Path, rows: int, decimals: int | None) -> None:
    """One prompt 'q', `rows` responses: proxy and gold from a standard normal (seed 0)."""
    rng = np.random.default_rng(0)
    x, g = rng.normal(size=rows), rng.normal(size=rows)
    fmt = "{!r}" if decimals is None else "{:.DECf}".replace("DEC", str(decimals))
    with open(path, "w") as f:
        f.write("prompt,proxy,gold\n")
        f.writelines(f"q,{fmt.format(float(a))},{fmt.format(float(b))}\n" for a, b in zip(x, g))


def time_cli(code: Path, table: Path) -> tuple[float, float]:
    """(wall seconds, peak resident MB) of `overopt bon TABLE --n-boot 5` run from the checkout `code`."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    script = (
        "import resource, sys; from overopt.cli import main; code = main();"
        " print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(code)"
    )
    t0 = time.perf_counter()  # run from the table's directory: `python -c` puts the working directory first
    out = subprocess.run(
        [sys.executable, "-c", script, "bon", table.name, "--n-boot", "5"],
        env=env,
        capture_output=True,
        text=True,
        cwd=table.parent,
    )
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"overopt bon failed ({code}): {out.stderr.strip()[-300:]}")
    peak = [line.split()[1] for line in out.stderr.splitlines() if line.startswith("PEAK ")]
    return wall, int(peak[-1]) / 1024


def _old_soft_row(old: str | None):
    """The soft rule's row function of the checkout `old` (bon/selection.py's `_soft_row` before the panels), or
    this checkout's summed on every distinct value (no panel interpolated) when there is none."""
    from bon.soft_integral import soft_row

    path = Path(old or "/nonexistent") / "bon" / "selection.py"
    if old is None or "def _soft_row(" not in path.read_text():
        return "every value", lambda *a: soft_row(*a, m=10**9)
    spec = importlib.util.spec_from_file_location("old_selection", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_selection"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return "old _soft_row", module._soft_row


def soft_side_by_side(rows: int, old: str | None) -> list[tuple]:
    from bon.rule_points import SelectionConfig
    from bon.soft_integral import soft_row

    name, peer = _old_soft_row(old)

    s = np.random.default_rng(0).normal(size=rows)
    vals, counts = np.unique(s, return_counts=True)
    counts = counts.astype(np.float64)
    temps = SelectionConfig().soft_temperatures
    out = []
    for rel in (temps[0], temps[-1]):
        T = rel * float(s.std())
        z = (vals - vals[-1]) / T
        t0 = time.perf_counter()
        direct = peer(z, counts, rows, rows, T, False)[0]
        t1 = time.perf_counter()
        panels = soft_row(z, counts, rows, rows, T, False)[0]
        t2 = time.perf_counter()
        out.append((name, rel, t1 - t0, t2 - t1, float(np.abs(panels - direct).max() / direct.max())))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bon_million", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="responses of the one prompt")
    parser.add_argument("--old", default=None, metavar="DIR", help="another checkout to time the same way")
    args = parser.parse_args(argv)
    print(f"load average at start: {loadavg()}", flush=True)
    with tempfile.TemporaryDirectory() as d:
        for name, decimals in (("4 decimals", 4), ("full precision", None)):
            table = Path(d) / "m.csv"
            write_table(table, args.rows, decimals)
            for label, code in (("old", args.old), ("this", ROOT)):
                if code is not None:
                    wall, peak = time_cli(Path(code), table)
                    line = f"overopt bon, {args.rows} rows, {name}, {label} checkout: {wall:.1f} s"
                    print(f"{line}, peak {peak:.0f} MB", flush=True)
    for name, rel, direct, panels, diff in soft_side_by_side(args.rows, args.old):
        print(f"soft rule, T = {rel:g} sd, n = N: {name} {direct:.2f} s, panels {panels:.2f} s,"
              f" ratio {direct / panels:.1f}, max |dp| / max p {diff:.1e}", flush=True)  # fmt: skip
    print(f"load average at end: {loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
