"""Least-squares fits of one over-optimization law to points (d, y) with weights.

The forms other than `power` are linear in their parameters, so their weighted least-squares fit is exact
(`fit_linear`); `power` is profiled over gamma (bounded; `profile_power`, batched over weight vectors) and
polished with `scipy.optimize.least_squares` (`fit_power`). `fit_stats` gives R^2, RMSE and AIC of a fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from scaling.laws import LAWS, power_jacobian

GAMMA_BOUNDS = (1e-3, 10.0)


@dataclass
class Fit:
    """One least-squares fit: parameters, Jacobian covariance, residuals and status."""

    params: np.ndarray
    cov: np.ndarray | None
    resid: np.ndarray
    converged: bool
    message: str


def solve_batched(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve A x = b for a batch of symmetric PSD systems; NaN rows where A is (near) singular."""
    eig = np.linalg.eigvalsh(A)
    ok = np.isfinite(eig).all(axis=-1) & (eig[..., -1] > 0) & (eig[..., 0] > eig[..., -1] * 1e-11)
    x = np.full(b.shape, np.nan)
    if ok.any():
        x[ok] = np.linalg.solve(A[ok], b[ok][..., None])[..., 0]
    return x


def fit_linear(X: np.ndarray, y: np.ndarray, w: np.ndarray) -> Fit:
    """Weighted least squares y ~ X @ theta. Arguments: X [n, p], y [n], w [n] > 0. Returns: Fit."""
    n, p = X.shape
    sw = np.sqrt(w)
    scale = np.linalg.norm(X * sw[:, None], axis=0)
    scale[scale == 0] = 1.0
    Xs = X * sw[:, None] / scale  # unit columns keep d and d^2 on one footing
    theta_s, _, rank, sv = np.linalg.lstsq(Xs, y * sw, rcond=None)
    # 1e-7: the covariance inverts Xs'Xs, whose condition number is the square of this ratio's inverse
    if rank < p or sv[-1] <= sv[0] * 1e-7:
        nan = np.full(p, np.nan)
        return Fit(nan, None, np.full(n, np.nan), False, "singular design (too few distinct d)")
    theta = theta_s / scale
    resid = y - X @ theta
    dof = n - p
    cov = None
    if dof > 0:
        s2 = float(np.sum(w * resid**2)) / dof
        inv = np.linalg.inv(Xs.T @ Xs)
        cov = s2 * inv / np.outer(scale, scale)
    return Fit(theta, cov, resid, True, "ok")


def _power_residual_fns(d, y, w):
    sw = np.sqrt(w)

    def fun(theta):
        return sw * (LAWS["power"].fn(d, *theta) - y)

    def jac(theta):
        return sw[:, None] * power_jacobian(d, *theta)

    return fun, jac


def _power_profile(d: np.ndarray, y: np.ndarray, wc: np.ndarray, log_g: np.ndarray):
    """For each row b of weights wc [B, n] and its gamma exp(log_g[b]): the exact (alpha, beta) and WRSS."""
    x1 = d[None, :]
    x2 = -np.power(d[None, :], 1.0 + np.exp(log_g)[:, None])
    s1 = np.sqrt(np.sum(wc * x1**2, axis=1))
    s2 = np.sqrt(np.sum(wc * x2**2, axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        u1, u2 = x1 / s1[:, None], x2 / s2[:, None]  # unit columns: the 2x2 solve stays well conditioned
        a12 = np.sum(wc * u1 * u2, axis=1)
        b1, b2 = np.sum(wc * u1 * y, axis=1), np.sum(wc * u2 * y, axis=1)
        det = 1.0 - a12**2
        t1, t2 = (b1 - a12 * b2) / det, (b2 - a12 * b1) / det
        rss = np.sum(wc * (y - t1[:, None] * u1 - t2[:, None] * u2) ** 2, axis=1)
    bad = ~(det > 1e-12) | ~np.isfinite(rss)
    rss[bad] = np.inf
    return t1 / s1, t2 / s2, rss


def profile_power(d: np.ndarray, y: np.ndarray, wc: np.ndarray, n_grid: int = 48, n_golden: int = 40):
    """Power-law least squares for many weight vectors at once: gamma by a log grid then golden section
    (for a fixed gamma the form is linear, so alpha and beta are exact). Returns theta [B, 3] (NaN: none)."""
    wc = np.atleast_2d(wc)
    B = len(wc)
    grid = np.linspace(np.log(GAMMA_BOUNDS[0]), np.log(GAMMA_BOUNDS[1]), n_grid)
    rss = np.stack([_power_profile(d, y, wc, np.full(B, g))[2] for g in grid], axis=1)
    i = np.argmin(rss, axis=1)
    lo, hi = grid[np.maximum(i - 1, 0)], grid[np.minimum(i + 1, n_grid - 1)]
    r = (math.sqrt(5.0) - 1.0) / 2.0
    x1, x2 = hi - r * (hi - lo), lo + r * (hi - lo)
    f1, f2 = _power_profile(d, y, wc, x1)[2], _power_profile(d, y, wc, x2)[2]
    for _ in range(n_golden):
        left = f1 < f2  # minimum in [lo, x2]
        hi = np.where(left, x2, hi)
        lo = np.where(left, lo, x1)
        x_new = np.where(left, hi - r * (hi - lo), lo + r * (hi - lo))
        f_new = _power_profile(d, y, wc, x_new)[2]
        x1, x2, f1, f2 = (
            np.where(left, x_new, x2),
            np.where(left, x1, x_new),
            np.where(left, f_new, f2),
            np.where(left, f1, f_new),
        )
    log_g = np.where(f1 < f2, x1, x2)
    alpha, beta, rss = _power_profile(d, y, wc, log_g)
    theta = np.stack([alpha, beta, np.exp(log_g)], axis=1)
    theta[~np.isfinite(rss)] = np.nan
    return theta


def fit_power(d: np.ndarray, y: np.ndarray, w: np.ndarray) -> Fit:
    """Nonlinear fit of d (alpha - beta d^gamma), gamma in GAMMA_BOUNDS: a profile search for the start,
    then `least_squares` (trust region, bounds) for the optimum and its Jacobian."""
    fun, jac = _power_residual_fns(d, y, w)
    start = profile_power(d, y, w[None, :])[0]
    if not np.isfinite(start).all():
        return Fit(np.full(3, np.nan), None, np.full(len(d), np.nan), False, "singular design (too few distinct d)")
    lo = [-np.inf, -np.inf, GAMMA_BOUNDS[0]]
    hi = [np.inf, np.inf, GAMMA_BOUNDS[1]]
    start[2] = np.clip(start[2], *GAMMA_BOUNDS)
    try:
        best = optimize.least_squares(fun, start, jac=jac, bounds=(lo, hi), method="trf", x_scale="jac")
    except (ValueError, np.linalg.LinAlgError) as e:
        return Fit(np.full(3, np.nan), None, np.full(len(d), np.nan), False, f"least_squares: {e}")
    theta = best.x
    resid = y - LAWS["power"].fn(d, *theta)
    at_bound = np.isclose(theta[2], GAMMA_BOUNDS, rtol=1e-4).any()
    converged = bool(best.success) and not at_bound
    msg = "ok" if converged else f"least_squares: {best.message}"
    if at_bound:
        msg = f"gamma at its bound {theta[2]:.3g}" + (" (the RL form is the gamma -> 0 limit)" if theta[2] < 1 else "")
    cov = None
    dof = len(d) - 3
    if dof > 0:
        J = best.jac
        try:
            cov = 2.0 * best.cost / dof * np.linalg.inv(J.T @ J)
        except np.linalg.LinAlgError:
            cov = None
    return Fit(theta, cov, resid, converged, msg)


def fit_law(law: str, d: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> Fit:
    """Fit one law to points (d, y) with weights w (default 1). The caller drops d = 0 for `rl`."""
    d = np.asarray(d, dtype=float)
    y = np.asarray(y, dtype=float)
    w = np.ones_like(d) if w is None else np.asarray(w, dtype=float)
    if LAWS[law].basis is None:
        return fit_power(d, y, w)
    return fit_linear(LAWS[law].basis(d), y, w)


def fit_stats(y: np.ndarray, resid: np.ndarray, w: np.ndarray, n_params: int) -> dict:
    """R^2 (weighted), RMSE (unweighted) and Gaussian AIC = 2k - 2 log L with k = n_params + 1 (noise)."""
    n = len(y)
    wrss = float(np.sum(w * resid**2))
    ybar = float(np.sum(w * y) / np.sum(w))
    tss = float(np.sum(w * (y - ybar) ** 2))
    r2 = 1.0 - wrss / tss if tss > 0 else None
    s2 = wrss / n
    # heteroscedastic Gaussian with variances s2 / w_i, s2 at its maximum-likelihood value
    loglik = -0.5 * (n * math.log(2 * math.pi * s2) - float(np.sum(np.log(w))) + n) if s2 > 0 else None
    aic = 2 * (n_params + 1) - 2 * loglik if loglik is not None else None
    return {"r2": r2, "rmse": math.sqrt(float(np.mean(resid**2))), "aic": aic}
