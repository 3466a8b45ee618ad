"""Functional forms of the over-optimization laws (Gao, Schulman, Hilton 2022), in d = sqrt(KL) nats.

Gold score as a function of the distance d from the initial policy:
  BoN:  R_bon(d) = d * (alpha - beta * d)          peak d* = alpha / (2 beta), height alpha^2 / (4 beta)
  RL:   R_rl(d)  = d * (alpha - beta * log d)      peak d* = exp(alpha / beta - 1), height beta * d*
Alternatives, for comparison by AIC:
  RL, log1p:  d * (alpha - beta * log(1 + d))      peak where log(1+d) + d/(1+d) = alpha/beta
  power:      d * (alpha - beta * d**gamma)        peak d* = (alpha / (beta (1+gamma)))**(1/gamma)
  linear:     alpha * d  (a proxy curve, no over-optimization)
  concave:    alpha * d - beta * d**2 written as d*(alpha - beta d) (same as BoN; kept for proxy curves)
Scores are recentred so the initial policy scores 0 (R(0) = 0 for every form).
Every form but `power` is linear in its parameters: `Law.basis(d)` gives the design matrix X with
f(d) = X @ params, so those fits are exact linear least squares.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq


def bon_law(d, alpha, beta):
    """Gao's BoN form d * (alpha - beta * d). Arguments: d (array), alpha, beta. Returns: gold, like d."""
    d = np.asarray(d, dtype=float)
    return d * (alpha - beta * d)


def rl_law(d, alpha, beta):
    """Gao's RL form. Undefined at d = 0 in slope; the value limit is 0 there."""
    d = np.asarray(d, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = d * (alpha - beta * np.log(d))
    return np.where(d > 0, out, 0.0)


def rl_log1p_law(d, alpha, beta):
    """RL alternative d * (alpha - beta * log(1 + d)), finite slope at d = 0."""
    d = np.asarray(d, dtype=float)
    return d * (alpha - beta * np.log1p(d))


def power_law(d, alpha, beta, gamma):
    """Power-law alternative d * (alpha - beta * d**gamma); gamma = 1 is the BoN form."""
    d = np.asarray(d, dtype=float)
    return d * (alpha - beta * np.power(d, gamma))


def linear_law(d, alpha):
    """alpha * d: a proxy curve that never turns over."""
    d = np.asarray(d, dtype=float)
    return alpha * d


def _d_log_d(d):
    with np.errstate(divide="ignore", invalid="ignore"):
        out = d * np.log(d)
    return np.where(d > 0, out, 0.0)


def _basis_bon(d):
    d = np.asarray(d, dtype=float)
    return np.stack([d, -d * d], axis=-1)


def _basis_rl(d):
    d = np.asarray(d, dtype=float)
    return np.stack([d, -_d_log_d(d)], axis=-1)


def _basis_rl_log1p(d):
    d = np.asarray(d, dtype=float)
    return np.stack([d, -d * np.log1p(d)], axis=-1)


def _basis_linear(d):
    d = np.asarray(d, dtype=float)
    return d[..., None]


def power_jacobian(d, alpha, beta, gamma):
    """d f / d (alpha, beta, gamma) of the power form, shape [n, 3] (the gamma column is 0 at d = 0)."""
    d = np.asarray(d, dtype=float)
    dg1 = np.power(d, 1.0 + gamma)
    log_d = np.log(np.where(d > 0, d, 1.0))
    return np.stack([d, -dg1, -beta * dg1 * log_d], axis=-1)


@dataclass(frozen=True)
class Law:
    """A named functional form: f(d, *params), parameter names, and whether d = 0 must be dropped.

    `basis(d) -> float[n, p]` is set for forms linear in their parameters (f = basis(d) @ params).
    """

    name: str
    fn: Callable
    params: tuple[str, ...]
    drop_zero: bool = False
    basis: Callable | None = None


LAWS: dict[str, Law] = {
    "bon": Law("bon", bon_law, ("alpha", "beta"), basis=_basis_bon),
    "rl": Law("rl", rl_law, ("alpha", "beta"), drop_zero=True, basis=_basis_rl),
    "rl_log1p": Law("rl_log1p", rl_log1p_law, ("alpha", "beta"), basis=_basis_rl_log1p),
    "power": Law("power", power_law, ("alpha", "beta", "gamma")),
    "linear": Law("linear", linear_law, ("alpha",), basis=_basis_linear),
    "concave": Law("concave", bon_law, ("alpha", "beta"), basis=_basis_bon),
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


def rl_log1p_peak(alpha: float, beta: float) -> tuple[float | None, float | None]:
    """Peak of d * (alpha - beta log(1+d)): the root of log(1+d) + d/(1+d) = alpha/beta (increasing in d)."""
    if not (beta > 0) or not math.isfinite(alpha) or alpha <= 0:
        return None, None

    target = alpha / beta
    h = lambda d: math.log1p(d) + d / (1.0 + d) - target
    hi = 1.0
    while h(hi) < 0:  # h grows like log d, so doubling brackets the root quickly
        hi *= 2.0
        if hi > 1e300:
            return None, None
    d = brentq(h, 0.0, hi, xtol=1e-14, rtol=1e-14)
    return d, float(rl_log1p_law(d, alpha, beta))


def power_peak(alpha: float, beta: float, gamma: float) -> tuple[float | None, float | None]:
    """Peak of d * (alpha - beta d**gamma) for alpha, beta, gamma > 0; height alpha d* gamma / (1 + gamma)."""
    if not (beta > 0 and gamma > 0 and alpha > 0) or not math.isfinite(alpha):
        return None, None
    log_d = (math.log(alpha) - math.log(beta * (1.0 + gamma))) / gamma
    if log_d > 700:
        return None, None
    d = math.exp(log_d)
    return d, alpha * d * gamma / (1.0 + gamma)


def peak(law: str, params: dict) -> tuple[float | None, float | None]:
    """(d_peak, gold_peak) of `law` with `params` (name -> value); (None, None) when the curve has no peak."""
    if law in ("bon", "concave"):
        return bon_peak(params["alpha"], params["beta"])
    if law == "rl":
        return rl_peak(params["alpha"], params["beta"])
    if law == "rl_log1p":
        return rl_log1p_peak(params["alpha"], params["beta"])
    if law == "power":
        return power_peak(params["alpha"], params["beta"], params["gamma"])
    if law == "linear":
        return None, None
    raise KeyError(f"unknown law {law!r}")
