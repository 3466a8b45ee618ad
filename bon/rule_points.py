"""Selection rules on a stored pool as points rows, and the best-n predictions per proxy.

`rule_points` turns `bon.selection.rule_curve` into points-table rows: `method` "bon", `rule` (soft,
poisson, regularized; the max rule's rows are best-of-n's own, `bon.estimator.bon_points`), `param`
(the rule's parameter name: temperature, mu, n) and `param_value`, `kl` = `kl_exact` (the selection's
exact KL against the pool's empirical distribution: these rules have no analytic bound), gold, proxy,
each gold component, their SEs over prompts, and the constant columns. Gold and KL are exact given
the pool (no Monte Carlo): every rule draws with replacement from the pool (see `bon.selection`).

Grids (`SelectionConfig`): temperatures are multiples of the ranking score's spread on the pool (the
median over prompts of its standard deviation), so one grid serves proxies of any scale; mu and n are
absolute. The regularized rule's beta is likewise relative: beta = `regularized_beta` x sd(score) /
sd(reference log-prob), both medians over prompts, so beta 1 trades one spread of score for one spread
of reference log-prob; the absolute beta is in the rows.

`predictions` gives, per rule, the parameter a small gold-labelled calibration set (`calibration_size`
labels per prompt, drawn uniformly) picks, and what the whole pool says it should have been:
  - `law` (max only): Gao's best-of-n law fitted on the calibration estimate of gold at n <= n_small
    (`bon.best_n.law_peak`), its peak n*;
  - `hedge`: the root of the calibration estimate's derivative (`bon.best_n.hedge`);
  - `oracle`: the same root-finder with every gold label (the pool's own best parameter).
Each row carries the predicted value, its exact KL and its exact gold on the whole pool, and the
oracle's; `regret` = oracle gold - predicted gold (>= 0 up to the oracle's own grid search).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bon.best_n import calibration_mask, hedge, hedge_objective, law_peak
from bon.estimator import as_pool
from bon.selection import PARAM, expected, kl_exact, rule_curve, selection_probs
from core.errors import UsageError

EXTRA_RULES = ("soft", "poisson", "regularized")  # besides max, whose rows are best-of-n's own


@dataclass(frozen=True)
class SelectionConfig:
    """Selection rules added to every proxy's best-of-n points, and the best-n predictor's knobs."""

    rules: tuple[str, ...] = EXTRA_RULES
    """rules besides max computed on each proxy's pool (any of soft, poisson, regularized; () = none)."""
    soft_n: int = 0
    """draws per soft selection (0: the pool size, so temperature -> 0 reaches best-of-N)."""
    soft_temperatures: tuple[float, ...] = (0.06, 0.125, 0.25, 0.5, 1.0, 2.0)
    """soft rule's temperatures, in units of the score's spread on the pool (module docstring)."""
    poisson_mus: tuple[float, ...] = ()
    """Best-of-Poisson's mu (n = 1 + Poisson(mu)); () = powers of 2 from 1/8 up to the pool size."""
    regularized_beta: float = 0.5
    """regularized best-of-n's beta, relative: x sd(score) / sd(reference log-prob) on the pool."""
    hedge_rules: tuple[str, ...] = ("max", "poisson", "regularized")
    """rules whose best parameter is predicted (soft costs ~3 s per evaluation on a 64 x 4096 pool)."""
    calibration_size: int = 64
    """gold labels per prompt the predictors may use (of the pool's N; all N when the pool is smaller)."""
    n_small: int = 16
    """the law predictor fits Gao's law on n <= n_small."""
    calibration_seed: int = 0
    """seeds the draw of the calibration labels."""


def validate(cfg: SelectionConfig, pool_size: int) -> None:
    """One-line UsageError for a config that cannot run on a pool of `pool_size`."""
    for name, rules, allowed in (("rules", cfg.rules, EXTRA_RULES), ("hedge_rules", cfg.hedge_rules, PARAM)):
        bad = [r for r in rules if r not in allowed]
        if bad or len(set(rules)) != len(rules):
            raise UsageError(f"selection.{name}: each of {', '.join(allowed)} at most once, got {list(rules)}")
    if not 0 <= cfg.soft_n <= pool_size:
        raise UsageError(f"selection.soft_n must be in 0..{pool_size} (the pool size), got {cfg.soft_n}")
    for name, grid, empty_ok in (
        ("soft_temperatures", cfg.soft_temperatures, False),
        ("poisson_mus", cfg.poisson_mus, True),
    ):
        g = np.asarray(grid, dtype=np.float64)
        if (g.size == 0 and not empty_ok) or not np.all(np.isfinite(g)) or np.any(g <= 0):
            raise UsageError(f"selection.{name} must be a list of positive numbers, got {list(grid)}")
    if not (np.isfinite(cfg.regularized_beta) and cfg.regularized_beta >= 0):
        raise UsageError(f"selection.regularized_beta must be >= 0, got {cfg.regularized_beta}")
    if cfg.calibration_size < 1:
        raise UsageError(f"selection.calibration_size must be >= 1, got {cfg.calibration_size}")
    if cfg.n_small < 3:
        raise UsageError(f"selection.n_small must be >= 3 (the law needs two points with n > 1), got {cfg.n_small}")


def spread(x) -> float:
    """Median over prompts of the within-prompt standard deviation of x (P, N); 1.0 where it is 0."""
    sd = float(np.median(as_pool("x", x).std(axis=1)))
    return sd if sd > 0 else 1.0


def absolute_beta(cfg: SelectionConfig, score, ref_logprob) -> float:
    """The regularized rule's beta in score units per nat (module docstring)."""
    return cfg.regularized_beta * spread(score) / spread(ref_logprob)


def _grid(cfg: SelectionConfig, rule: str, score, pool_size: int, ns) -> tuple[np.ndarray, dict]:
    """(parameter values, fixed knobs) of one rule on one ranking."""
    if rule == "soft":
        return np.asarray(cfg.soft_temperatures) * spread(score), {"n": cfg.soft_n or pool_size}
    if rule == "poisson":
        if cfg.poisson_mus:
            return np.asarray(cfg.poisson_mus, dtype=np.float64), {}
        return 2.0 ** np.arange(-3, np.floor(np.log2(pool_size)) + 1), {}
    return np.asarray(ns, dtype=np.float64), {}


def rule_points(rule: str, score, gold, ns, cfg: SelectionConfig, *, extra=None, ref_logprob=None, **columns):
    """Points rows of one rule on one ranking of a pool (module docstring).

    Arguments: `score` (P, N) the ranking score; `gold` (P, N); `ns` best-of-n's n grid (the
    regularized rule's); `extra` name -> (P, N) gold components; `ref_logprob` (P, N) (regularized
    only); `columns` constant columns. Returns a pandas DataFrame, one row per parameter value.
    """
    score = as_pool("score", score)
    values, knobs = _grid(cfg, rule, score, score.shape[1], ns)
    if rule == "regularized":
        if ref_logprob is None:
            raise UsageError("the regularized rule needs the pool's reference log-probs")
        knobs = {"beta": absolute_beta(cfg, score, ref_logprob), "ref_logprob": ref_logprob}
    c = rule_curve(rule, score, gold, values, extra=extra, **knobs)
    data = {
        "method": "bon",
        "rule": rule,
        "param": c.param,
        "param_value": c.values,
        "n": float(knobs["n"]) if rule == "soft" else (c.values if c.param == "n" else np.nan),
        "kl": c.kl_exact,
        "kl_exact": c.kl_exact,
        "kl_exact_se": c.kl_exact_se,
        "gold": c.gold,
        "gold_se": c.gold_se,
        "proxy": c.proxy,
        "proxy_se": c.proxy_se,
    }
    if rule == "regularized":
        data["beta"] = knobs["beta"]
    for name, v in c.extra.items():
        col = name if "/" in name else f"gold/{name}"
        data[col], data[f"{col}_se"] = v, c.extra_se[name]
    data["pool_size"], data["n_prompts"] = c.pool_size, c.n_prompts
    clash = sorted(set(columns) & set(data))
    if clash:
        raise UsageError(f"constant columns clash with computed ones: {', '.join(clash)}")
    return pd.DataFrame(data | columns, index=pd.RangeIndex(len(c.values)))


def _knobs(cfg, rule, score, ref_logprob):
    if rule == "soft":
        return {"n": cfg.soft_n or score.shape[1]}
    if rule == "regularized":
        return {"beta": absolute_beta(cfg, score, ref_logprob), "ref_logprob": ref_logprob}
    return {}


def _bounds(rule, score, pool_size):
    if rule == "soft":
        sd = spread(score)
        return sd / 40, sd * 8
    return (1.0, float(pool_size)) if rule in ("max", "regularized") else (0.05, float(pool_size))


def _exact(rule, score, gold, value, knobs) -> tuple[float, float]:
    """(kl_exact, gold) of the rule at `value` on the whole pool, means over prompts."""
    p = selection_probs(rule, score, value, **knobs)
    return float(kl_exact(p).mean()), float(expected(p, gold).mean())


def predictions(score, gold, cfg: SelectionConfig, *, ref_logprob=None, grid: int = 9, **columns):
    """Best-parameter predictions of each rule in `cfg.hedge_rules` on one ranking (module docstring).

    Arguments: `score`, `gold` (P, N) the whole pool (the predictors see `calibration_size` labels per
    prompt; the oracle and the realized golds use all); `ref_logprob` for the regularized rule; `grid`
    points the root-finder scans. Returns a pandas DataFrame, one row per (rule, predictor).
    """
    score = as_pool("score", score)
    gold = as_pool("gold", gold, score.shape)
    pool_size = score.shape[1]
    size = min(cfg.calibration_size, pool_size)
    mask = calibration_mask(score.shape, size, seed=cfg.calibration_seed)
    rows = []
    for rule in cfg.hedge_rules:
        if rule == "regularized" and ref_logprob is None:
            continue
        knobs = _knobs(cfg, rule, score, ref_logprob)
        hk = {k: v for k, v in knobs.items()}
        bounds = _bounds(rule, score, pool_size)
        oracle = hedge(rule, score, gold, bounds=bounds, grid=grid, **hk)
        o_kl, o_gold = _exact(rule, score, gold, oracle.value, knobs)
        preds = [("hedge", hedge(rule, score, gold, labelled=mask, bounds=bounds, grid=grid, **hk).value)]
        if rule == "max":
            ns = np.unique(np.round(np.geomspace(1, cfg.n_small, 9)))
            est = [hedge_objective("max", score, gold, n, labelled=mask)[0] for n in ns]
            peak = law_peak(ns, np.asarray(est) - est[0])
            preds.append(("law", min(peak.n_star, float(pool_size))))
        for predictor, value in preds:
            p_kl, p_gold = _exact(rule, score, gold, value, knobs)
            rows.append(
                {
                    "rule": rule,
                    "param": PARAM[rule],
                    "predictor": predictor,
                    "calibration_size": size,
                    "predicted": value,
                    "predicted_kl_exact": p_kl,
                    "predicted_gold": p_gold,
                    "oracle": oracle.value,
                    "oracle_kl_exact": o_kl,
                    "oracle_gold": o_gold,
                    "regret": o_gold - p_gold,
                    "log_ratio": float(np.log(value / oracle.value)),
                }
                | columns
            )
    return pd.DataFrame(rows)
