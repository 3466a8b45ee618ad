"""Nested-model F-test: is alpha shared across groups (e.g. proxy sizes) or does each group need its own?

`shared_alpha_f_test(curves, law)` compares two ordinary least-squares fits of a two-parameter law that
is linear in its parameters (`LAWS[law].basis`: f(d) = alpha * b0(d) + beta * b1(d)) on G curves:
free (each group its own alpha and beta) and shared (one alpha, each group its own beta).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from scaling.laws import LAWS


def _rss(X: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Residual sum of squares and coefficients of the ordinary least-squares fit of y on X."""
    coef = np.linalg.lstsq(X, y, rcond=None)[0]
    r = y - X @ coef
    return float(r @ r), coef


def shared_alpha_f_test(curves, law: str) -> dict:
    """F-test of "alpha shared across the G groups" (the null) against "each group its own alpha".

    Definition: with N points in all and G >= 2 groups, fitted by ordinary (unweighted) least squares,
      free model:   y = alpha_g * b0(d) + beta_g * b1(d)   2G parameters, residual sum RSS_free
      shared model: y = alpha   * b0(d) + beta_g * b1(d)   G + 1 parameters, RSS_shared >= RSS_free
      F = ((RSS_shared - RSS_free) / (G - 1)) / (RSS_free / (N - 2G)),  df1 = G - 1, df2 = N - 2G,
      p = scipy.stats.f.sf(F, df1, df2).
    (b0, b1) is `LAWS[law].basis(d)`: bon (d, -d^2), rl (d, -d log d). Points at d = 0 are dropped
    (the basis is 0 there for every law, as scores are recentred so R(0) = 0: such a point says nothing
    about the parameters and would only add to df2), as are points with a non-finite d or y (and d < 0
    for rl, whose basis needs log d); N counts the points kept.

    Assumption: the residuals are independent, with equal variance, normal, across all points of all
    groups. That is what makes F follow the F(df1, df2) distribution under the null. Points along one
    curve of a real run are NOT independent (one policy trajectory, one pool of samples reused at every
    n, a shared noise within a run), and their variance changes along d; with such (positively
    correlated) points the residual-based denominator understates the true uncertainty of the alphas
    and this p is too small, by an unknown amount: a rejection means the alphas differ by more than the
    within-curve scatter, not that they differ across independent replicates. The test is conservative
    in nothing; use it as a descriptive screen, and across-replicate or across-prompt resampling for a
    real interval.

    Arguments: curves: list of (d, y) array pairs, one per group; law: a `LAWS` name.
    Returns: {"F", "df1", "df2", "p", "rss_free", "rss_shared", "alpha_shared", "alphas", "n", "groups"}
    with alphas the free fit's alpha of each group, in the order of curves. When the test cannot be
    computed, F and p (and whatever could not be fitted) are None and "reason" says why: fewer than two
    groups, a law that is not linear with two parameters, df2 <= 0, a design of less than full rank
    (a group with fewer than 2 distinct d > 0), or RSS_free == 0 (below 1e-12 of sum y^2: an exact fit,
    no noise to compare with).
    Raises: KeyError for an unknown law name (a programming error).
    """
    spec = LAWS[law]
    G = len(curves)
    out = {"F": None, "df1": None, "df2": None, "p": None, "rss_free": None, "rss_shared": None}
    out.update(alpha_shared=None, alphas=None, n=None, groups=G)
    if spec.basis is None or len(spec.params) != 2:
        return {**out, "reason": f"law {law!r} is not linear in two parameters"}
    Xs, ys = [], []
    for d, y in curves:
        d, y = np.asarray(d, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
        keep = np.isfinite(d) & np.isfinite(y) & (d != 0) & ((d > 0) if spec.drop_zero else True)
        Xs.append(spec.basis(d[keep]).reshape(-1, 2))
        ys.append(y[keep])
    N = sum(len(y) for y in ys)
    df1, df2 = G - 1, N - 2 * G
    out.update(n=N, df1=df1, df2=df2)
    if G < 2:
        return {**out, "reason": f"{G} group(s): need at least 2"}
    if df2 <= 0:
        return {**out, "reason": f"{N} points for {2 * G} free parameters: df2 = {df2} <= 0"}
    if any(np.linalg.matrix_rank(X) < 2 for X in Xs):
        return {**out, "reason": "a group's design is rank-deficient (fewer than 2 distinct d > 0)"}

    free = [_rss(X, y) for X, y in zip(Xs, ys)]
    rss_free = sum(r for r, _ in free)
    alphas = [float(c[0]) for _, c in free]
    # shared design: column 0 the alpha basis of every point, then one beta column per group
    y_all = np.concatenate(ys)
    X_shared = np.zeros((N, 1 + G))
    X_shared[:, 0] = np.concatenate([X[:, 0] for X in Xs])
    start = 0
    for g, X in enumerate(Xs):
        X_shared[start : start + len(X), 1 + g] = X[:, 1]
        start += len(X)
    rss_shared, coef = _rss(X_shared, y_all)
    out.update(rss_free=rss_free, rss_shared=rss_shared, alpha_shared=float(coef[0]), alphas=alphas)
    if not rss_free > 1e-12 * max(float(y_all @ y_all), 1e-300):
        return {**out, "reason": "RSS_free == 0: the free model fits exactly, no residual variance"}
    F = max(rss_shared - rss_free, 0.0) / df1 / (rss_free / df2)  # >= 0 up to rounding
    return {**out, "F": float(F), "p": float(stats.f.sf(F, df1, df2))}
