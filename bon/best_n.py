"""Predicting the best n (or temperature, or mu) before over-optimization sets in.

Two predictors, each from proxy scores and little gold:

1. Fitted-law peak (`law_peak`). Fit Gao et al.'s best-of-n law gold(d) = d (alpha - beta d), with
   d = sqrt(kl_bound(n)), to the gold measured at small n only (n <= n_small), by ordinary least
   squares on the basis [d, -d^2] (no intercept: gold is recentred to 0 at n = 1). The peak is at
   d* = alpha / (2 beta) with height alpha^2 / (4 beta), and n* = kl_bound^{-1}(d*^2). beta <= 0
   (gold still accelerating in d) predicts no peak: n* = inf.

2. Hedging root-finder (`hedge`), in the spirit of Khalaf et al. 2025's HedgeTune: choose the
   parameter theta of a selection rule where the derivative of expected gold under the selection
   distribution is zero. On a pool, with p_i(theta) the rule's selection probabilities
   (`bon.selection`) and gold known only on a calibration subset L_p of each prompt's pool (|L_p| =
   m_p entries drawn uniformly; the size is the knob, see `calibration_mask`), the Horvitz-Thompson
   estimate of expected gold and its derivative are

       J(theta)  = (1/P') sum_p (N/m_p) sum_{i in L_p} g_i p_i(theta),
       J'(theta) = (1/P') sum_p (N/m_p) sum_{i in L_p} g_i dp_i/dtheta,

   over the P' prompts with labels; E[J] over the draw of L is the full-pool expected gold, because
   each entry is labelled with probability m_p / N. The derivatives of p (tie blocks G with
   F, F- the pool's CDF at and below the block, split evenly within G):
     max / regularized, theta = n (real n >= 1):  d/dn (F^n - F-^n) = F^n log F - F-^n log F-;
     poisson, theta = mu:  d/dmu (F e^{-mu(1-F)} - F- e^{-mu(1-F-)}) = -F(1-F)e^{-mu(1-F)} + F-(1-F-)e^{-mu(1-F-)};
     soft, theta = T, with k_i(t) = w_i e^{-t w_i}, w = exp(s/T), phi(t) = mean_j e^{-t w_j}:
       p_i = n/N int k_i phi^(n-1) dt,  dp_i/dT = n/N int [dk_i/dT phi^(n-1) + k_i (n-1) phi^(n-2) dphi/dT] dt,
       dk_i/dT = (1 - t w_i) e^{-t w_i} dw_i/dT,  dphi/dT = -mean_j t e^{-t w_j} dw_j/dT,  dw_j/dT = -w_j s_j / T^2.
   `hedge` evaluates J' on a log-spaced grid of theta, refines every + to - sign change with Brent's
   method, and returns the root with the highest J; with no interior maximum (gold monotone in
   theta on the range, as Khalaf et al. show it is when not single-peaked) it returns the better end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from bon.estimator import as_pool
from bon.kl_estimators import kl_bound, kl_bound_inverse
from bon.selection import PARAM, RULES, selection_probs
from core.errors import UsageError


def gao_bon_fit(d, gold) -> tuple[float, float]:
    """Least-squares (alpha, beta) of gold = d (alpha - beta d) on the basis [d, -d^2]."""
    d = np.asarray(d, dtype=np.float64)
    gold = np.asarray(gold, dtype=np.float64)
    if d.shape != gold.shape or d.ndim != 1 or np.count_nonzero(d > 0) < 2:
        raise UsageError("the law fit needs at least two points with d > 0 (n > 1)")
    coef, *_ = np.linalg.lstsq(np.stack([d, -(d**2)], axis=1), gold, rcond=None)
    return float(coef[0]), float(coef[1])


@dataclass(frozen=True)
class LawPeak:
    """Gao's law fitted at small n and its peak: d* = alpha/(2 beta), kl* = d*^2, n* = kl_bound^-1(kl*)."""

    alpha: float
    beta: float
    d_star: float
    kl_star: float
    n_star: float
    gold_star: float
    n_small: float
    n_points: int


def law_peak(ns, gold, n_small=None) -> LawPeak:
    """Predict best-of-n's peak from (n, gold) points with n <= n_small (all when None).

    Arguments: `ns` reals >= 1 [M]; `gold` mean gold at each n [M] (recentred: 0 at n = 1);
    `n_small` the largest n used. Returns a `LawPeak`; beta <= 0 gives d* = kl* = n* = gold* = inf.
    """
    ns = np.asarray(ns, dtype=np.float64)
    gold = np.asarray(gold, dtype=np.float64)
    if ns.shape != gold.shape or ns.ndim != 1:
        raise UsageError(f"ns and gold must be 1-D of one length, got {ns.shape} and {gold.shape}")
    keep = ns <= (np.inf if n_small is None else float(n_small))
    alpha, beta = gao_bon_fit(np.sqrt(kl_bound(ns[keep])), gold[keep])
    if beta <= 0:
        inf = float("inf")
        return LawPeak(alpha, beta, inf, inf, inf, inf, float(ns[keep].max()), int(keep.sum()))
    d_star = alpha / (2 * beta) if alpha > 0 else 0.0
    return LawPeak(
        alpha=alpha,
        beta=beta,
        d_star=d_star,
        kl_star=d_star**2,
        n_star=kl_bound_inverse(d_star**2),
        gold_star=d_star * (alpha - beta * d_star),
        n_small=float(ns[keep].max()),
        n_points=int(keep.sum()),
    )


def realized_peak(values, gold) -> tuple[float, float]:
    """The parameter value with the highest gold on a measured curve, and that gold."""
    values = np.asarray(values, dtype=np.float64)
    gold = np.asarray(gold, dtype=np.float64)
    k = int(np.nanargmax(gold))
    return float(values[k]), float(gold[k])


def calibration_mask(shape, size: int, seed=0) -> np.ndarray:
    """bool [P, N]: `size` entries of each prompt's pool, drawn uniformly without replacement."""
    n_prompts, pool_size = shape
    if not 1 <= size <= pool_size:
        raise UsageError(f"the calibration size must be in 1..{pool_size} (the pool size), got {size}")
    rng = np.random.default_rng(seed)
    chosen = np.argsort(rng.random((n_prompts, pool_size)), axis=1)[:, :size]
    mask = np.zeros((n_prompts, pool_size), dtype=bool)
    np.put_along_axis(mask, chosen, True, axis=1)
    return mask


def _weights(gold, labelled, shape) -> np.ndarray:
    """Horvitz-Thompson gold weights: g N / m_p on labelled entries, 0 elsewhere; rows without labels dropped."""
    g = np.asarray(gold, dtype=np.float64)
    g = g[None, :] if g.ndim == 1 else g
    if g.shape != shape:
        raise UsageError(f"gold has shape {g.shape}, expected {shape} like the proxy scores")
    lab = np.isfinite(g) if labelled is None else np.asarray(labelled, dtype=bool).reshape(shape)
    if not np.all(np.isfinite(g[lab])):
        raise UsageError("gold must be finite on every labelled entry")
    m = lab.sum(axis=1)
    if not m.any():
        raise UsageError("no gold labels: the calibration set is empty")
    w = np.where(lab, g, 0.0) * (shape[1] / np.maximum(m, 1))[:, None]
    return w[m > 0], m > 0


def hedge_objective(rule, proxy, gold, param, *, labelled=None, n=None, beta=None, ref_logprob=None):
    """(J, dJ/dtheta) at `param`: the calibration estimate of expected gold and its derivative.

    Arguments: `proxy` (P, N) ranking scores of the whole pools; `gold` (P, N) with NaN where not
    labelled, or any values plus a bool `labelled` (P, N) mask; the rule's knobs as in
    `bon.selection.selection_probs`. Returns two floats.
    """
    s = as_pool("proxy", proxy)
    w, rows = _weights(gold, labelled, s.shape)
    lp = None if ref_logprob is None else as_pool("ref_logprob", ref_logprob, s.shape)[rows]
    p, dp = selection_probs(rule, s[rows], param, n=n, beta=beta, ref_logprob=lp, grad=True)
    return float(np.mean(np.sum(w * p, axis=1))), float(np.mean(np.sum(w * dp, axis=1)))


@dataclass(frozen=True)
class Hedge:
    """The hedged parameter of one rule: `value` of `param`, its estimated `gold` and derivative,
    `kind` ("root", or "lower"/"upper" when the best is an end of the range), and the grid scanned."""

    rule: str
    param: str
    value: float
    gold: float
    dgold: float
    kind: str
    grid: np.ndarray
    grid_gold: np.ndarray
    grid_dgold: np.ndarray
    n_labelled: int


def default_bounds(rule: str, proxy) -> tuple[float, float]:
    """Search range: n in [1, N]; mu in [0.01, N]; temperature in [sd/20, 20 sd] (sd: median over
    prompts of the proxy's standard deviation in the pool)."""
    s = as_pool("proxy", proxy)
    if rule in ("max", "regularized"):
        return 1.0, float(s.shape[1])
    if rule == "poisson":
        return 0.01, float(s.shape[1])
    if rule == "soft":
        sd = float(np.median(s.std(axis=1)))
        if sd <= 0:
            raise UsageError("the proxy scores are constant: no temperature matters")
        return sd / 20, sd * 20
    raise UsageError(f"unknown selection rule {rule!r}; choose from {', '.join(RULES)}")


def hedge(rule, proxy, gold, *, labelled=None, bounds=None, grid: int = 33, n=None, beta=None, ref_logprob=None):
    """Solve J'(theta) = 0 for the rule's parameter (module docstring); returns a `Hedge`.

    Arguments: as `hedge_objective`; `bounds` (low, high) of theta (`default_bounds` when None);
    `grid` log-spaced points scanned for sign changes before Brent's method refines each.
    """
    if rule not in RULES:
        raise UsageError(f"unknown selection rule {rule!r}; choose from {', '.join(RULES)}")
    lo, hi = default_bounds(rule, proxy) if bounds is None else (float(bounds[0]), float(bounds[1]))
    if not 0 < lo < hi or grid < 2:
        raise UsageError(f"bounds must satisfy 0 < low < high and grid >= 2, got {(lo, hi)}, {grid}")
    kw = dict(labelled=labelled, n=n, beta=beta, ref_logprob=ref_logprob)
    f = lambda x: hedge_objective(rule, proxy, gold, x, **kw)
    xs = np.geomspace(lo, hi, grid)
    vals = np.array([f(x) for x in xs])
    J, dJ = vals[:, 0], vals[:, 1]
    cands = [(J[0], xs[0], dJ[0], "lower"), (J[-1], xs[-1], dJ[-1], "upper")]
    for k in np.flatnonzero((dJ[:-1] > 0) & (dJ[1:] <= 0)):
        x = xs[k + 1] if dJ[k + 1] == 0 else brentq(lambda x: f(x)[1], xs[k], xs[k + 1], xtol=1e-10 * xs[k], rtol=1e-12)
        j, dj = f(x)
        cands.append((j, x, dj, "root"))
    j, x, dj, kind = max(cands, key=lambda c: c[0])
    n_lab = int(np.isfinite(np.asarray(gold, dtype=np.float64)).sum() if labelled is None else np.sum(labelled))
    return Hedge(rule, PARAM[rule], float(x), float(j), float(dj), kind, xs, J, dJ, n_lab)
