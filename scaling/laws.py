"""Functional forms of the over-optimization laws (Gao, Schulman, Hilton 2022), in d = sqrt(KL) nats.

Gold score as a function of the distance d from the initial policy:
  BoN:  R_bon(d) = d * (alpha - beta * d)          peak d* = alpha / (2 beta), height alpha^2 / (4 beta)
  RL:   R_rl(d)  = d * (alpha - beta * log d)      peak d* = exp(alpha / beta - 1), height beta * d*
Alternatives, for comparison by AIC:
  RL, log1p:  d * (alpha - beta * log(1 + d))
  power:      d * (alpha - beta * d**gamma)
  linear:     alpha * d  (a proxy curve, no over-optimization)
  concave:    alpha * d - beta * d**2 written as d*(alpha - beta d) (same as BoN; kept for proxy curves)
Scores are recentred so the initial policy scores 0 (R(0) = 0 for every form).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np


def bon_law(d, alpha, beta):
    d = np.asarray(d, dtype=float)
    return d * (alpha - beta * d)


def rl_law(d, alpha, beta):
    """Gao's RL form. Undefined at d = 0 in slope; the value limit is 0 there."""
    d = np.asarray(d, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = d * (alpha - beta * np.log(d))
    return np.where(d > 0, out, 0.0)


def rl_log1p_law(d, alpha, beta):
    d = np.asarray(d, dtype=float)
    return d * (alpha - beta * np.log1p(d))


def power_law(d, alpha, beta, gamma):
    d = np.asarray(d, dtype=float)
    return d * (alpha - beta * np.power(d, gamma))


def linear_law(d, alpha):
    d = np.asarray(d, dtype=float)
    return alpha * d


@dataclass(frozen=True)
class Law:
    """A named functional form: f(d, *params), parameter names, and whether d = 0 must be dropped."""

    name: str
    fn: Callable
    params: tuple[str, ...]
    drop_zero: bool = False


LAWS: dict[str, Law] = {
    "bon": Law("bon", bon_law, ("alpha", "beta")),
    "rl": Law("rl", rl_law, ("alpha", "beta"), drop_zero=True),
    "rl_log1p": Law("rl_log1p", rl_log1p_law, ("alpha", "beta")),
    "power": Law("power", power_law, ("alpha", "beta", "gamma")),
    "linear": Law("linear", linear_law, ("alpha",)),
}

# Which law a points-table `method` is fitted with by default (direct alignment uses the RL form).
DEFAULT_LAW = {"bon": "bon", "rl": "rl", "ppo": "rl", "dpo": "rl", "ipo": "rl"}


def bon_peak(alpha: float, beta: float) -> tuple[float | None, float | None]:
    """(d_peak, gold_peak) of the BoN form; (None, None) when beta <= 0 (no peak)."""
    if not (beta > 0) or not math.isfinite(alpha):
        return None, None
    d = alpha / (2.0 * beta)
    if d <= 0:
        return None, None
    return d, alpha * alpha / (4.0 * beta)


def rl_peak(alpha: float, beta: float) -> tuple[float | None, float | None]:
    """(d_peak, gold_peak) of Gao's RL form; (None, None) when beta <= 0 or the peak overflows."""
    if not (beta > 0) or not math.isfinite(alpha):
        return None, None
    z = alpha / beta - 1.0
    if z > 700:
        return None, None
    d = math.exp(z)
    return d, beta * d


def peak(law: str, params: dict) -> tuple[float | None, float | None]:
    """Closed-form peak for the laws that have one (bon, rl); numerical maximum on a grid for the others."""
    if law == "bon":
        return bon_peak(params["alpha"], params["beta"])
    if law == "rl":
        return rl_peak(params["alpha"], params["beta"])
    if law == "linear":
        return None, None
    f = LAWS[law].fn
    args = [params[p] for p in LAWS[law].params]
    d = np.geomspace(1e-3, 1e3, 20001)
    y = f(d, *args)
    i = int(np.nanargmax(y))
    if i == 0 or i == len(d) - 1:
        return None, None
    return float(d[i]), float(y[i])
