"""Benchmark: fitting the laws to 50 groups with 1,000 bootstrap resamples each.

ours: `scaling.fitting.fit_table` (batched normal equations over all resamples of a group).
peer: a plain `scipy.optimize.curve_fit` loop over the very same resamples (same generator, same order).
`ratio` = ours / peer (wall seconds; below 1 means ours is faster). `python -m benchmarks.bench_fit`
prints the row and how far the two sets of bootstrap intervals are apart.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd
from scipy.optimize import curve_fit

from benchmarks import common
from scaling.bootstrap import boot_counts, small_sample_factor
from scaling.fitting import fit_table
from scaling.laws import LAWS, bon_law, rl_law


def sizes(quick: bool) -> tuple[int, int]:
    """(groups, bootstrap resamples): 50 x 1000; quick 5 x 100; tiny (OVEROPT_BENCH_TINY=1) 2 x 20."""
    return common.pick(quick, (50, 1000), (5, 100), (2, 20))


def make_points(n_groups: int, n_points: int = 30, seed: int = 0) -> pd.DataFrame:
    """Half BoN, half RL curves, one RM size per group, Gaussian noise; d > 0 everywhere."""
    rng = np.random.default_rng(seed)
    parts = []
    for g in range(n_groups):
        method, law = ("bon", bon_law) if g % 2 == 0 else ("rl", rl_law)
        d = rng.uniform(0.1, 4.0, n_points)
        gold = law(d, rng.uniform(0.5, 1.5), rng.uniform(0.2, 0.4)) + rng.normal(0, 0.05, n_points)
        parts.append(pd.DataFrame({"method": method, "rm_params": 10.0 ** (4 + g // 2), "kl": d**2, "gold": gold}))
    return pd.concat(parts, ignore_index=True)


def peer_fit(df: pd.DataFrame, n_boot: int, seed: int = 0) -> list[list[list[float]]]:
    """curve_fit on the full data and on every resample; percentile intervals with the same widening."""
    rng = np.random.default_rng(seed)
    out = []
    for _, g in df.groupby(["method", "rm_params"], sort=True):
        law = LAWS[g["method"].iloc[0]]
        d, y = np.sqrt(g["kl"].to_numpy()), g["gold"].to_numpy()
        full, _ = curve_fit(law.fn, d, y, p0=[1.0, 0.3])
        counts = boot_counts(rng, np.arange(len(d)), n_boot)
        draws = np.empty((n_boot, 2))
        for b in range(n_boot):
            idx = np.repeat(np.arange(len(d)), counts[b].astype(int))
            draws[b], _ = curve_fit(law.fn, d[idx], y[idx], p0=full)
        q = np.percentile(draws, [2.5, 97.5], axis=0)
        q = full + small_sample_factor(len(d), 2) * (q - full)
        out.append([[q[0, j], q[1, j]] for j in range(2)])
    return out


def measure(n_groups: int, n_boot: int) -> tuple[float, float, float]:
    """(ours seconds, peer seconds, largest gap between the two sets of interval endpoints)."""
    df = make_points(n_groups)
    t0 = time.perf_counter()
    result = fit_table(df, n_boot=n_boot, seed=0)
    ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = peer_fit(df, n_boot, seed=0)
    peer = time.perf_counter() - t0
    gap = max(
        abs(row[f"{k}_ci"][i] - r[j][i])
        for row, r in zip(result["fits"], ref, strict=True)
        for j, k in enumerate(("alpha", "beta"))
        for i in range(2)
    )
    return ours, peer, gap


def rows(quick: bool) -> list[dict]:
    """One row: time to fit n_groups x n_boot (`sizes`: 50 x 1000; quick: 5 x 100)."""
    n_groups, n_boot = sizes(quick)
    ours, peer, _ = measure(n_groups, n_boot)
    return [
        {
            "name": f"fit {n_groups} groups x {n_boot} bootstrap resamples",
            "ours": ours,
            "peer": peer,
            "unit": "s",
            "ratio": ours / peer,
        }
    ]


if __name__ == "__main__":
    n_groups, n_boot = sizes("--quick" in sys.argv)
    ours, peer, gap = measure(n_groups, n_boot)
    print(
        f"fit {n_groups} groups x {n_boot} bootstrap resamples: ours {ours:.3f} s, "
        f"peer (scipy curve_fit loop) {peer:.2f} s, ratio {ours / peer:.4f}; "
        f"largest interval-endpoint gap {gap:.2e}"
    )
