"""Fit the over-optimization laws to a points table: per group or with alpha shared, with intervals.

- Per group (default grouping: the columns of `GROUP_COLS` present; seeds pooled), each group's law
  from its `method` (`laws.DEFAULT_LAW`) or forced. The forms other than `power` are linear in their
  parameters, so their least-squares fit is exact (weighted by 1/gold_se^2 when the table has `gold_se`);
  `power` is profiled over gamma (bounded) and polished with `scipy.optimize.least_squares`.
- 95% intervals: bootstrap percentiles (resampling prompts or seeds when a group has 3 or more, points
  otherwise; all resamples at once as batched normal equations), widened by sqrt(n/(n-k)) t/z as in
  CR1/HC1 small-sample corrections; and from the Jacobian (Student t on the residual variance).
- Gao's joint fit: alpha shared by the groups that differ only in size columns, one beta each.
- Coefficient scaling: each coefficient against log10 of the size columns that vary (one linear fit),
  and `predict` for an unseen size. `advance` rows: fit on d <= d_cut, error on the rest.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, stats

from core.errors import UsageError
from scaling.laws import DEFAULT_LAW, LAWS, peak, power_jacobian
from scaling.points import validate_points

GROUP_COLS = ("method", "rm_params", "data_size", "kl_coef", "policy_params", "objective")
SIZE_COLS = ("rm_params", "data_size", "policy_params")
CLUSTER_COLS = ("prompt", "prompt_id", "seed")
MIN_CLUSTERS = 3  # fewer clusters than this give too few distinct resamples: resample points instead
MIN_POINTS = 3
LEVEL = 0.95
GAMMA_BOUNDS = (1e-3, 10.0)
BOOT_CELLS = 2_000_000  # bootstrap batches of at most this many (resample, point) cells: bounded memory
Z95 = 1.959963984540054  # normal quantile 0.975


@dataclass
class Fit:
    """One least-squares fit: parameters, Jacobian covariance, residuals and status."""

    params: np.ndarray
    cov: np.ndarray | None
    resid: np.ndarray
    converged: bool
    message: str


@dataclass
class Group:
    """The points of one group, ready to fit."""

    keys: dict
    method: str
    law: str
    d: np.ndarray
    y: np.ndarray
    w: np.ndarray
    clusters: np.ndarray
    unit: str


# ---------------------------------------------------------------- single fits


def _solve_batched(A: np.ndarray, b: np.ndarray) -> np.ndarray:
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
    if rank < p or sv[-1] <= sv[0] * 1e-11:
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
        x1, x2, f1, f2 = (np.where(left, x_new, x2), np.where(left, x1, x_new),
                          np.where(left, f_new, f2), np.where(left, f1, f_new))
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


# ---------------------------------------------------------------- bootstrap


def boot_counts(rng: np.random.Generator, clusters: np.ndarray, n_boot: int) -> np.ndarray:
    """Multiplicity of each point in each resample, [n_boot, n]: clusters are drawn with replacement."""
    n_clusters = int(clusters.max()) + 1
    draws = rng.integers(0, n_clusters, size=(n_boot, n_clusters))
    flat = (draws + n_clusters * np.arange(n_boot)[:, None]).ravel()  # one bincount for all resamples
    cc = np.bincount(flat, minlength=n_boot * n_clusters).reshape(n_boot, n_clusters)
    return cc[:, clusters].astype(float)


def boot_chunks(n_boot: int, n_points: int) -> list[int]:
    """Resamples per batch, so that a batch's [batch, n_points] arrays stay near BOOT_CELLS cells."""
    size = max(1, BOOT_CELLS // max(n_points, 1))
    return [min(size, n_boot - i) for i in range(0, n_boot, size)]


def boot_linear(X: np.ndarray, y: np.ndarray, w: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Weighted LS refitted under every resample at once. Returns theta [n_boot, p] (NaN: singular)."""
    n, p = X.shape
    scale = np.linalg.norm(X * np.sqrt(w)[:, None], axis=0)
    scale[scale == 0] = 1.0
    Xs = X / scale
    cw = counts * w
    outer = (Xs[:, :, None] * Xs[:, None, :]).reshape(n, p * p)
    A = (cw @ outer).reshape(-1, p, p)
    b = cw @ (Xs * y[:, None])
    return _solve_batched(A, b) / scale


def boot_joint(x0: np.ndarray, x1: np.ndarray, member: np.ndarray, y: np.ndarray, w: np.ndarray,
               counts: np.ndarray) -> np.ndarray:
    """Joint fit y ~ theta_0 x0 + theta_{1+g} x1 (g = member) under every resample: the normal matrix is
    arrow-shaped, so it is solved by its Schur complement in O(n_boot n). Returns [n_boot, 1 + G]."""
    G = int(member.max()) + 1
    M = np.zeros((len(y), G))
    M[np.arange(len(y)), member] = 1.0
    cw = counts * w
    a, r0 = cw @ (x0 * x0), cw @ (x0 * y)
    c, e, r = cw @ (M * (x0 * x1)[:, None]), cw @ (M * (x1 * x1)[:, None]), cw @ (M * (x1 * y)[:, None])
    with np.errstate(divide="ignore", invalid="ignore"):
        schur = a - np.sum(c * c / e, axis=1)
        alpha = (r0 - np.sum(c * r / e, axis=1)) / schur
        beta = (r - c * alpha[:, None]) / e
    out = np.column_stack([alpha, beta])
    bad = (e <= 0).any(axis=1) | ~(schur > 1e-11 * a) | ~np.isfinite(out).all(axis=1)
    out[bad] = np.nan
    return out


def boot_power(d, y, w, counts) -> np.ndarray:
    """Power-law fit under every resample at once (`profile_power`). Returns theta [n_boot, 3]."""
    return profile_power(d, y, counts * w)


def small_sample_factor(n_units: int, k: int) -> float:
    """Widening of bootstrap intervals: sqrt(n/(n-k)) (as HC1/CR1) times t_{n-k}/z (Student, not normal).

    Arguments: n_units (points or clusters resampled); k (parameters for points, strata for clusters).
    Returns: the factor (inf when n_units <= k).
    """
    dof = n_units - k
    if dof <= 0:
        return math.inf
    return math.sqrt(n_units / dof) * t_quantile(dof) / Z95


def percentile_ci(draws: np.ndarray, center: np.ndarray, factor: float = 1.0) -> list:
    """95% percentile interval of each column of draws [B, p], its spread about `center` scaled by `factor`.

    None for a column when under half the draws are finite or the factor is infinite.
    """
    ok = np.isfinite(draws).all(axis=1)
    if ok.sum() < max(2, 0.5 * len(draws)) or not math.isfinite(factor):
        return [None] * draws.shape[1]
    q = np.percentile(draws[ok], [50 * (1 - LEVEL), 50 * (1 + LEVEL)], axis=0)
    q = center + factor * (q - center)
    return [[float(q[0, j]), float(q[1, j])] for j in range(draws.shape[1])]


def _boot_factor(groups: list, n_params: int) -> float:
    units = sum(int(g.clusters.max()) + 1 for g in groups)
    clustered = any(g.unit != "points" for g in groups)
    return small_sample_factor(units, len(groups) if clustered else n_params)


@functools.lru_cache(maxsize=4096)
def t_quantile(dof: int) -> float:
    """Two-sided 95% Student t quantile (cached: scipy's ppf costs about a millisecond a call)."""
    return float(stats.t.ppf(0.5 * (1 + LEVEL), dof))


def jacobian_ci(fit: Fit, dof: int) -> list:
    """theta +- t_{dof} * sqrt(diag cov); None where there is no covariance (dof = 0 or singular)."""
    p = len(fit.params)
    if fit.cov is None or dof <= 0:
        return [None] * p
    t = t_quantile(dof)
    se = np.sqrt(np.clip(np.diag(fit.cov), 0, None))
    return [[float(th - t * s), float(th + t * s)] for th, s in zip(fit.params, se, strict=True)]


# ---------------------------------------------------------------- statistics and rows


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


def _num(x):
    """Python float, or None for missing / non-finite."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _pyval(v):
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if v is pd.NA or v is pd.NaT:
        return None
    return v


def _ci(ci):
    if ci is None:
        return None
    lo, hi = _num(ci[0]), _num(ci[1])
    return None if lo is None or hi is None else [lo, hi]


def _label(keys: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in keys.items()) or "all points"


def make_row(g: Group, fit: Fit, boot_ci: list, jac_ci: list, message: str | None = None) -> dict:
    """One `fits` row (schema in docs/ARCHITECTURE.md); `gamma` is added for the power law."""
    names = LAWS[g.law].params
    params = {k: _num(v) for k, v in zip(names, fit.params, strict=True)}
    st = {"r2": None, "rmse": None, "aic": None}
    if fit.converged:
        st = fit_stats(g.y, fit.resid, g.w, len(names))
    d_peak, gold_peak = (None, None)
    if fit.converged and all(v is not None for v in params.values()):
        d_peak, gold_peak = peak(g.law, params)
    row = dict(g.keys)
    row.update(
        method=g.method, law=g.law, alpha=params.get("alpha"), beta=params.get("beta"),
        alpha_ci=_ci(boot_ci[0]), beta_ci=_ci(boot_ci[1]) if len(names) > 1 else None,
        alpha_ci_jac=_ci(jac_ci[0]), beta_ci_jac=_ci(jac_ci[1]) if len(names) > 1 else None,
        r2=_num(st["r2"]), rmse=_num(st["rmse"]), aic=_num(st["aic"]), n_points=len(g.d),
        d_max=_num(float(np.max(g.d))) if len(g.d) else None,
        d_peak=_num(d_peak), gold_peak=_num(gold_peak), converged=bool(fit.converged),
        message=message or fit.message,
    )
    if g.law == "power":
        row["gamma"] = params["gamma"]
    return row


# ---------------------------------------------------------------- groups


def _resolve_by(df: pd.DataFrame, by) -> list[str]:
    if by is None:
        return [c for c in GROUP_COLS if c in df.columns]
    if isinstance(by, str):
        by = [c.strip() for c in by.split(",") if c.strip()]
    unknown = [c for c in by if c not in df.columns]
    if unknown:
        raise UsageError(f"unknown --by column '{unknown[0]}' (columns: {', '.join(map(str, df.columns))})")
    return list(by)


def _law_for(method_arg: str, methods: list, keys: dict) -> tuple[str, str]:
    """(method label, law name) of one group."""
    label = ",".join(sorted(map(str, methods))) if methods else None
    if method_arg != "auto":
        return label or method_arg, method_arg
    if not methods:
        raise UsageError("points have no 'method' column: pass --method (" + ", ".join(LAWS) + ")")
    if len(methods) > 1:
        raise UsageError(f"group {_label(keys)} mixes methods {label}: add 'method' to --by or pass --method")
    if methods[0] not in DEFAULT_LAW:
        raise UsageError(f"no default law for method '{methods[0]}' (group {_label(keys)}): pass --method")
    return str(methods[0]), DEFAULT_LAW[methods[0]]


def _clusters(sub: pd.DataFrame, resample: str = "auto") -> tuple[np.ndarray, str]:
    """Resampling unit: the `resample` column, or (auto) prompts or seeds if several; else points."""
    cols = CLUSTER_COLS if resample == "auto" else () if resample == "points" else (resample,)
    need = MIN_CLUSTERS if resample == "auto" else 2
    for col in cols:
        if col in sub.columns and sub[col].nunique(dropna=False) >= need:
            codes, uniques = pd.factorize(sub[col], use_na_sentinel=False)
            return codes.astype(np.int64), f"{len(uniques)} {col}s"
    return np.arange(len(sub), dtype=np.int64), "points"


def make_groups(df: pd.DataFrame, by: list[str], method: str, resample: str = "auto") -> list[Group]:
    """Split a validated points table into Groups; UsageError for a group with < 3 points at d > 0."""
    parts = [({}, df)] if not by else [
        (dict(zip(by, k if isinstance(k, tuple) else (k,), strict=True)), sub)
        for k, sub in df.groupby(by, dropna=False, sort=True)
    ]
    groups = []
    for keys, sub in parts:
        keys = {k: _pyval(v) for k, v in keys.items()}
        methods = sorted({_pyval(m) for m in sub["method"].unique()}, key=str) if "method" in sub else []
        label, law = _law_for(method, methods, keys)
        d = np.sqrt(sub["kl"].to_numpy(dtype=float))
        n_pos = int((d > 0).sum())
        if n_pos < MIN_POINTS:
            raise UsageError(f"group {_label(keys)} has {n_pos} points with d > 0 (need {MIN_POINTS})")
        keep = d > 0 if LAWS[law].drop_zero else np.ones(len(d), bool)
        sub = sub[keep]
        se = sub["gold_se"].to_numpy(dtype=float) if "gold_se" in sub.columns else np.full(len(sub), np.nan)
        # weighted by 1/se^2 only when every point of the group has a standard error
        w = 1.0 / se**2 if np.all(np.isfinite(se)) else np.ones(len(sub))
        clusters, unit = _clusters(sub, resample)
        groups.append(Group(keys, label, law, d[keep], sub["gold"].to_numpy(dtype=float), w, clusters, unit))
    return groups


def _context(g: Group) -> tuple:
    """What must match for groups to share alpha or one scaling fit: law, method and non-size keys."""
    rest = tuple((k, v) for k, v in g.keys.items() if k not in SIZE_COLS and k != "method")
    return (g.method, g.law) + rest


# ---------------------------------------------------------------- fitting a table


def fit_one(g: Group, n_boot: int, rng: np.random.Generator) -> dict:
    """Fit one group with bootstrap and Jacobian intervals. Returns its `fits` row."""
    fit = fit_law(g.law, g.d, g.y, g.w)
    p = len(LAWS[g.law].params)
    boot_ci = [None] * p
    if fit.converged and n_boot > 0:
        X = LAWS[g.law].basis(g.d) if LAWS[g.law].basis is not None else None
        parts = []
        for m in boot_chunks(n_boot, len(g.d)):
            counts = boot_counts(rng, g.clusters, m)
            parts.append(boot_linear(X, g.y, g.w, counts) if X is not None else boot_power(g.d, g.y, g.w, counts))
        draws = np.concatenate(parts)
        boot_ci = percentile_ci(draws, fit.params, _boot_factor([g], p))
    msg = f"{fit.message}; bootstrap over {g.unit}" if fit.converged and n_boot > 0 else fit.message
    return make_row(g, fit, boot_ci, jacobian_ci(fit, len(g.d) - p), msg)


def fit_joint(groups: list[Group], n_boot: int, rng: np.random.Generator) -> list[dict]:
    """Gao's joint fit: one alpha shared by `groups` (same two-parameter law), one beta per group."""
    law = LAWS[groups[0].law]
    G = len(groups)
    sizes = [len(g.d) for g in groups]
    X = np.zeros((sum(sizes), 1 + G))
    start = 0
    for j, g in enumerate(groups):
        B = law.basis(g.d)
        X[start:start + sizes[j], 0] = B[:, 0]
        X[start:start + sizes[j], 1 + j] = B[:, 1]
        start += sizes[j]
    y = np.concatenate([g.y for g in groups])
    w = np.concatenate([g.w for g in groups])
    fit = fit_linear(X, y, w)
    jac = jacobian_ci(fit, len(y) - (1 + G))
    boot = [None] * (1 + G)
    if fit.converged and n_boot > 0:
        # resample within each group (stratified), so every group keeps its points in every resample
        member = np.repeat(np.arange(G), sizes)
        x1 = X[np.arange(len(y)), 1 + member]
        parts = []
        for m in boot_chunks(n_boot, len(y)):
            counts = np.concatenate([boot_counts(rng, g.clusters, m) for g in groups], axis=1)
            parts.append(boot_joint(X[:, 0], x1, member, y, w, counts))
        draws = np.concatenate(parts)
        boot = percentile_ci(draws, fit.params, _boot_factor(groups, 1 + G))
    rows, start = [], 0
    for j, g in enumerate(groups):
        sl = slice(start, start + sizes[j])
        start += sizes[j]
        cov = fit.cov[np.ix_([0, 1 + j], [0, 1 + j])] if fit.cov is not None else None
        sub = Fit(fit.params[[0, 1 + j]], cov, fit.resid[sl], fit.converged, fit.message)
        msg = f"{fit.message}; alpha shared by {G} groups"
        if fit.converged and n_boot > 0:
            msg += f"; bootstrap over {g.unit} within each group"
        rows.append(make_row(g, sub, [boot[0], boot[1 + j]], [jac[0], jac[1 + j]], msg))
    return rows


def fit_table(df: pd.DataFrame, by=None, method: str = "auto", shared_alpha: bool = False,
              n_boot: int = 1000, seed: int = 0, d_cut: float | None = None, resample: str = "auto") -> dict:
    """Fit the laws to every group of a points table.

    Arguments:
      df: points table (kl, gold, and grouping columns). by: grouping columns (list or "a,b"; None =
        the GROUP_COLS present; [] = one group). method: "auto" (law from each group's method) or a law
        name in LAWS. shared_alpha: Gao's joint fit (alpha shared by groups differing only in size
        columns). n_boot: bootstrap resamples (0: none). seed: bootstrap seed. d_cut: if given, add the
        advance-prediction rows (fit on d <= d_cut, error on d > d_cut). resample: bootstrap unit, "auto"
        (prompts or seeds when a group has >= 3, else points), "points", or a column name.
    Returns: {"fits": [...], "scaling": [...]} (+ "advance": [...] with d_cut), JSON-serialisable.
    """
    if method != "auto" and method not in LAWS:
        raise UsageError(f"unknown method '{method}' (choose from auto, {', '.join(LAWS)})")
    if n_boot < 0:
        raise UsageError(f"n_boot must be >= 0, got {n_boot}")
    if d_cut is not None and not (math.isfinite(d_cut) and d_cut > 0):
        raise UsageError(f"d_cut must be a positive number, got {d_cut}")
    df = validate_points(df)
    by = _resolve_by(df, by)
    if resample not in ("auto", "points") and resample not in df.columns:
        raise UsageError(f"unknown --resample column '{resample}' (auto, points, or one of the columns)")
    groups = make_groups(df, by, method, resample)
    if shared_alpha:
        bad = sorted({g.law for g in groups if len(LAWS[g.law].params) != 2})
        if bad:
            raise UsageError(f"--shared-alpha needs a two-parameter law, not {', '.join(bad)}")
    rng = np.random.default_rng(seed)
    rows: dict[int, dict] = {}
    if shared_alpha:
        contexts: dict[tuple, list[int]] = {}
        for i, g in enumerate(groups):
            contexts.setdefault(_context(g), []).append(i)
        for idx in contexts.values():
            if len(idx) == 1:
                rows[idx[0]] = fit_one(groups[idx[0]], n_boot, rng)
                continue
            for i, row in zip(idx, fit_joint([groups[i] for i in idx], n_boot, rng), strict=True):
                rows[i] = row
    else:
        for i, g in enumerate(groups):
            rows[i] = fit_one(g, n_boot, rng)
    fits = [rows[i] for i in range(len(groups))]
    out = {"fits": fits, "scaling": scaling_rows(groups, fits, shared_alpha)}
    if d_cut is not None:
        out["advance"] = [advance_row(g, row, d_cut) for g, row in zip(groups, fits, strict=True)]
    return out


# ---------------------------------------------------------------- coefficient scaling


def ols(X: np.ndarray, y: np.ndarray) -> dict:
    """y ~ intercept + X @ slopes. Returns theta [1+k], cov (None without dof), r2, dof."""
    n, k = X.shape
    A = np.column_stack([np.ones(n), X])
    theta, _, rank, _ = np.linalg.lstsq(A, y, rcond=None)
    dof = n - (k + 1)
    if rank < k + 1:
        return {"theta": np.full(k + 1, np.nan), "cov": None, "r2": None, "dof": dof}
    resid = y - A @ theta
    tss = float(np.sum((y - y.mean()) ** 2))
    cov = float(resid @ resid) / dof * np.linalg.inv(A.T @ A) if dof > 0 else None
    r2 = 1.0 - float(resid @ resid) / tss if tss > 0 and dof > 0 else None
    return {"theta": theta, "cov": cov, "r2": r2, "dof": dof}


def _tci(value, var, dof):
    if var is None or dof <= 0:
        return None
    t = t_quantile(dof)
    return _ci([value - t * math.sqrt(max(var, 0.0)), value + t * math.sqrt(max(var, 0.0))])


def _size_ok(v) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v) and v > 0


def scaling_rows(groups: list[Group], fits: list[dict], shared_alpha: bool = False) -> list[dict]:
    """Coefficients against log10 of the size columns that vary within each context (one linear fit)."""
    contexts: dict[tuple, list[int]] = {}
    for i, g in enumerate(groups):
        contexts.setdefault(_context(g), []).append(i)
    out = []
    for _ctx, idx in contexts.items():
        g0 = groups[idx[0]]
        extra = {k: v for k, v in g0.keys.items() if k not in SIZE_COLS and k != "method"}
        rows = [fits[i] for i in idx if fits[i]["converged"]]
        xs = [c for c in SIZE_COLS if c in g0.keys and len({r[c] for r in rows if _size_ok(r.get(c))}) >= 2]
        rows = [r for r in rows if all(_size_ok(r.get(c)) for c in xs)]
        if not xs or len(rows) < len(xs) + 1:
            continue
        X = np.log10(np.array([[float(r[c]) for c in xs] for r in rows]))
        coefs = [c for c in LAWS[g0.law].params if c in ("alpha", "beta")]
        for coef in coefs:
            if coef == "alpha" and shared_alpha and len(idx) > 1:
                continue  # constant by construction
            yv = np.array([r[coef] for r in rows], dtype=float)
            res = ols(X, yv)
            for j, x in enumerate(xs):
                cov = res["cov"]
                var_s = None if cov is None else cov[1 + j, 1 + j]
                var_i = None if cov is None else cov[0, 0]
                row = dict(extra)
                row.update(
                    method=g0.method, coef=coef, x=x, slope=_num(res["theta"][1 + j]),
                    intercept=_num(res["theta"][0]),
                    slope_ci=_tci(res["theta"][1 + j], var_s, res["dof"]),
                    intercept_ci=_tci(res["theta"][0], var_i, res["dof"]),
                    r2=_num(res["r2"]), n=len(rows),
                )
                out.append(row)
    return out


def predict(result: dict, method: str, sizes: dict, where: dict | None = None) -> dict:
    """Coefficients and peak at an unseen size, from a linear fit of the fitted coefficients in log10 size.

    Arguments:
      result: fit_table output. method: the fits' `method` value. sizes: e.g. {"rm_params": 3e7} (the
        regressors). where: other keys a fit row must match (e.g. {"data_size": 1e4}).
    Returns: {law, n, <param>, <param>_ci (95% CI of the fitted mean), d_peak, gold_peak}.
    """
    where = where or {}
    rows = [r for r in result["fits"] if r["method"] == method and r["converged"]
            and all(r.get(k) == v for k, v in where.items())]
    rows = [r for r in rows if all(_size_ok(r.get(c)) for c in sizes)]
    laws = {r["law"] for r in rows}
    if len(laws) != 1:
        raise UsageError(f"predict: need converged fits of one law for '{method}', found {sorted(laws)}")
    if not all(_size_ok(v) for v in sizes.values()):
        raise UsageError(f"predict: sizes must be positive numbers, got {sizes}")
    law = laws.pop()
    X = np.log10(np.array([[float(r[c]) for c in sizes] for r in rows]))
    x0 = np.concatenate([[1.0], np.log10([float(v) for v in sizes.values()])])
    out: dict = {"law": law, "n": len(rows)}
    params = {}
    for name in LAWS[law].params:
        res = ols(X, np.array([r[name] for r in rows], dtype=float))
        value = float(x0 @ res["theta"])
        var = None if res["cov"] is None else float(x0 @ res["cov"] @ x0)
        params[name] = value
        out[name] = _num(value)
        out[f"{name}_ci"] = _tci(value, var, res["dof"])
    d_peak, gold_peak = peak(law, params)
    out.update(d_peak=_num(d_peak), gold_peak=_num(gold_peak))
    return out


# ---------------------------------------------------------------- advance prediction


def advance_row(g: Group, full_row: dict, d_cut: float) -> dict:
    """Fit on d <= d_cut only; report the error on d > d_cut, beside the full fit's error there."""
    names = LAWS[g.law].params
    fit_mask, test_mask = g.d <= d_cut, g.d > d_cut
    row = dict(g.keys)
    row.update(method=g.method, law=g.law, d_cut=float(d_cut), n_fit=int(fit_mask.sum()),
               n_test=int(test_mask.sum()), alpha=None, beta=None, rmse_test=None, max_abs_err_test=None,
               rmse_test_full=None, d_peak=None, d_peak_full=full_row["d_peak"])
    if int((g.d[fit_mask] > 0).sum()) < max(MIN_POINTS, len(names)) or not test_mask.any():
        row["message"] = "too few points on one side of d_cut"
        return row
    fit = fit_law(g.law, g.d[fit_mask], g.y[fit_mask], g.w[fit_mask])
    row["message"] = fit.message
    if not fit.converged:
        return row
    params = dict(zip(names, (float(v) for v in fit.params), strict=True))
    err = g.y[test_mask] - LAWS[g.law].fn(g.d[test_mask], *fit.params)
    row.update(alpha=_num(params.get("alpha")), beta=_num(params.get("beta")),
               rmse_test=_num(np.sqrt(np.mean(err**2))), max_abs_err_test=_num(np.max(np.abs(err))),
               d_peak=_num(peak(g.law, params)[0]))
    if full_row["converged"]:
        full = [full_row[k] for k in names]
        err_full = g.y[test_mask] - LAWS[g.law].fn(g.d[test_mask], *full)
        row["rmse_test_full"] = _num(np.sqrt(np.mean(err_full**2)))
    return row
