"""Rejection rates of the pooled verdict's tests by simulation: under the null (the false-positive rate) and
at a stated effect (the power), at K = 1, 3, 5 replicates. `python -m criteria.power` prints the table of
docs/CRITERIA.md; tests/test_pooled_nulls.py runs the null rows. Every simulation calls the verdict's own
functions (`criteria.pooled_stats`) on arrays [S, K, ...] of S simulated studies, with the registered
level and margins. Units: the between-replicate SD of the quantity each test reads is 1.
"""

from __future__ import annotations

import numpy as np

from criteria.pooled_stats import ols_slopes, page_l, split_drops, t_replicates, tost
from criteria.pooled_trends import tost_margin
from criteria.registered import load

N_SIZES = 4  # proxy sizes of a ladder (tiny, small)
LOG_SIZES = np.log10([1e3, 1e4, 1e5, 1e6])
T_EVALS = 15  # points of a curve (the fall)


def page_rate(K: int, delta: float, S: int, rng, p_max: float) -> float:
    """Page's L at n = N_SIZES: y_kj = delta * j + N(0, 1) (adjacent rungs delta between-replicate SDs apart)."""
    y = delta * np.arange(N_SIZES) + rng.normal(size=(S, K, N_SIZES))
    return float(np.mean(page_l(y)["p"] < p_max))


def perfect_order_rate(delta: float, S: int, rng) -> float:
    """One replicate's chance of a perfectly ordered ladder (the old per-replicate check at n = 4)."""
    y = delta * np.arange(N_SIZES) + rng.normal(size=(S, N_SIZES))
    return float(np.mean(np.all(np.diff(y, axis=-1) > 0, axis=-1)))


def t_rate(K: int, effect: float, S: int, rng, p_max: float) -> float:
    """One-sided t over replicates: x_k = effect + N(0, 1)."""
    return float(np.mean(t_replicates(effect + rng.normal(size=(S, K)))["p"] < p_max))


def slope_rate(K: int, effect: float, S: int, rng, level: float) -> float:
    """A coefficient's slope: y_kj = effect * log10(size_j) + N(0, 1) per (replicate, size) around each
    replicate's own intercept; passes when the t interval over replicates (at `level`) lies above 0.
    effect is in units of the per-(replicate, size) noise SD per decade."""
    y = effect * LOG_SIZES + rng.normal(size=(S, K, N_SIZES)) + rng.normal(size=(S, K, 1))
    lo = t_replicates(ols_slopes(LOG_SIZES, y), "greater", level)["interval"][0]
    return float(np.mean(lo > 0))


def tost_rate(K: int, slope_over_margin: float, sd_over_margin: float, S: int, rng, reg) -> float:
    """alpha_rl constant: alpha_kj = a0 (1 + s log10(size_j / 10^4.5)) + noise, a0 = 1; the per-(replicate,
    size) noise SD is chosen so that the per-replicate slope's SD is sd_over_margin x margin (margin =
    tost_rel x the data's mean alpha); true slope = slope_over_margin x tost_rel. Passing = TOST p < p_max."""
    rel = reg.margins["tost_rel"]
    xc = LOG_SIZES - LOG_SIZES.mean()
    noise = sd_over_margin * rel * np.sqrt(xc @ xc)  # sd(slope) = noise / sqrt(sum xc^2)
    y = 1.0 + slope_over_margin * rel * xc + noise * rng.normal(size=(S, K, N_SIZES))
    margin = tost_margin(y, reg)
    return float(np.mean(tost(ols_slopes(LOG_SIZES, y), margin, reg.p_max)["p"] < reg.p_max))


def fall_rate(K: int, fall: float, S: int, rng, p_max: float, n_half: int = 2) -> float:
    """Over-optimization: each of the smaller half's n_half curves rises over the first third to 2, holds,
    then falls linearly from the middle by fall_k = fall + 0.5 N(0, 1) per replicate (fall = 0: the null,
    a flat tail, every replicate alike: the least favourable curve without a fall); noise N(0, 1) per
    point. D_k = mean over the half of `split_drops`; one-sided t over replicates."""
    t = np.linspace(0, 1, T_EVALS)
    tail = np.clip((t - 0.5) / 0.5, 0, None)
    fall_k = fall + (0.5 * rng.normal(size=(S, 1, K, 1)) if fall > 0 else 0.0)
    curves = np.minimum(t / 0.33, 1.0) * 2.0 - fall_k * tail + rng.normal(size=(S, n_half, K, T_EVALS))
    drops = split_drops(curves).mean(axis=1)
    return float(np.mean(t_replicates(drops)["p"] < p_max))


def own_peak_fall_rate(K: int, S: int, rng, p_max: float) -> float:
    """The same null (flat curves), each replicate's peak taken from its own curve: the bias split_drops avoids."""
    curves = rng.normal(size=(S, K, T_EVALS))
    drops = curves.max(axis=-1) - curves[..., -1]
    return float(np.mean(t_replicates(drops)["p"] < p_max))


def table(S: int = 20_000, seed: int = 0) -> list[dict]:
    """Every test's rate under the null and at its stated effect, K = 1, 3, 5 (S simulated studies each)."""
    reg = load()
    rng = np.random.default_rng(seed)
    p = reg.p_max
    rows = []
    for K in (1, 3, 5):
        rows.append(
            {
                "K": K,
                "page_L null": page_rate(K, 0.0, S, rng, p),
                "page_L delta=1": page_rate(K, 1.0, S, rng, p),
                "perfect order delta=1 (one replicate)": perfect_order_rate(1.0, S, rng),
            }
        )
        if K < 2:
            continue
        rows[-1] |= {
            "t null": t_rate(K, 0.0, S, rng, p),
            "t effect=1 SD": t_rate(K, 1.0, S, rng, p),
            "t effect=2 SD": t_rate(K, 2.0, S, rng, p),
            "slope null": slope_rate(K, 0.0, S, rng, reg.slope_ci),
            "slope 1 SD/decade": slope_rate(K, 1.0, S, rng, reg.slope_ci),
            "tost at margin (sd 0.5 margin)": tost_rate(K, 1.0, 0.5, S, rng, reg),
            "tost slope 0 (sd 0.5 margin)": tost_rate(K, 0.0, 0.5, S, rng, reg),
            "tost slope 0 (sd 0.25 margin)": tost_rate(K, 0.0, 0.25, S, rng, reg),
            "fall null": fall_rate(K, 0.0, S, rng, p),
            "fall 1 SD": fall_rate(K, 1.0, S, rng, p),
            "fall 2 SD": fall_rate(K, 2.0, S, rng, p),
            "own-peak fall null (biased)": own_peak_fall_rate(K, S, rng, p),
        }
    return rows


def main() -> None:
    for r in table():
        print(f"K = {r.pop('K')}")
        for k, v in r.items():
            print(f"  {k:<40} {v:.3f}")


if __name__ == "__main__":
    main()
