"""Prediction of an unseen proxy size (issue 23): leave one proxy size of the ladder out, fit each law
coefficient (alpha_bon, beta_bon, alpha_rl, beta_rl) as a straight line in log10(rm_params) on the other
sizes by ordinary least squares, and predict the held-out size's coefficients (with the line's 95%
prediction interval, Student t with n - 2 dof) and its gold curve (the law at the size's measured
d = sqrt(kl) points).

The ladder is the criteria's (`scaling.ladder`): a single proxy, best-of-n's max rule, the
largest data size and policy, RL at the smallest kl_coef; each replicate is judged alone. The errors are
predicted minus fitted (the size's own fit in fits.json), and the curve's RMSE / (max - min of its measured
gold), beside the same ratio for the size's own fit (the floor a perfect coefficient prediction reaches).

`unseen_size_table(points, fits)` is the table (`table_records` its JSON-safe rows, `table_lines` Markdown);
`coef_table`, `fit_line` and `leave_one_out` are the pieces the figure (`figures.unseen_size`) draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from scaling.bootstrap import t_quantile
from scaling.fmt import fmt_params, json_ci, json_num, json_value
from scaling.ladder import build_ladder
from scaling.laws import LAWS

COEFS = (("bon", "alpha"), ("bon", "beta"), ("rl", "alpha"), ("rl", "beta"))
MIN_SIZES = 3  # a leave-one-out line needs two other sizes; its prediction interval a third


@dataclass(frozen=True)
class Line:
    """y = intercept + slope * x by OLS, with what its t intervals need (s2, dof, x mean, Sxx)."""

    intercept: float
    slope: float
    n: int
    dof: int
    s2: float  # residual variance, SS_res / dof (NaN without dof)
    x_mean: float
    sxx: float

    def __call__(self, x):
        return self.intercept + self.slope * np.asarray(x, dtype=float)

    def _half(self, x, new: float):
        x = np.asarray(x, dtype=float)
        if self.dof <= 0 or not math.isfinite(self.s2) or self.sxx <= 0:
            return np.full(x.shape, np.nan)
        var = self.s2 * (new + 1.0 / self.n + (x - self.x_mean) ** 2 / self.sxx)
        return t_quantile(self.dof) * np.sqrt(var)

    def ci(self, x) -> tuple[np.ndarray, np.ndarray]:
        """95% confidence band of the line (the mean coefficient) at x: (lo, hi), NaN without dof."""
        y, h = self(x), self._half(x, 0.0)
        return y - h, y + h

    def pi(self, x) -> tuple[np.ndarray, np.ndarray]:
        """95% prediction interval of one new coefficient at x: (lo, hi), NaN without dof."""
        y, h = self(x), self._half(x, 1.0)
        return y - h, y + h


def fit_line(x, y) -> Line:
    """OLS of y on x (x may repeat: replicates pooled). Needs two distinct x values."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(x)
    x_mean = float(x.mean())
    sxx = float(np.sum((x - x_mean) ** 2))
    if n < 2 or sxx <= 0:
        raise ValueError("fit_line: needs two distinct x values")
    slope = float(np.sum((x - x_mean) * (y - y.mean())) / sxx)
    intercept = float(y.mean() - slope * x_mean)
    dof = n - 2
    resid = y - (intercept + slope * x)
    s2 = float(resid @ resid) / dof if dof > 0 else math.nan
    return Line(intercept, slope, n, dof, s2, x_mean, sxx)


def leave_one_out(x, y) -> list[dict]:
    """For each distinct x0: the line fitted without every row at x0, its value and 95% prediction interval
    at x0. Returns [{x, pred, pi: [lo, hi] | None, n_train, extrapolated}] in x order (x0s with fewer than
    two other distinct x values are left out)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    out = []
    for x0 in np.unique(x):
        keep = x != x0
        if len(np.unique(x[keep])) < 2:
            continue
        line = fit_line(x[keep], y[keep])
        lo, hi = line.pi(x0)
        out.append(
            {
                "x": float(x0),
                "pred": float(line(x0)),
                "pi": json_ci([float(lo), float(hi)]),
                "n_train": int(keep.sum()),
                "extrapolated": bool(x0 < x[keep].min() or x0 > x[keep].max()),
            }
        )
    return out


def _replicates(points: pd.DataFrame) -> list:
    if "replicate" not in points.columns or points["replicate"].isna().all():
        return [None]
    return sorted(points["replicate"].dropna().unique())


def _same(a, b) -> bool:
    return a is not None and b is not None and not (isinstance(a, float) and math.isnan(a)) and float(a) == float(b)


def ladders(points: pd.DataFrame, fits: dict) -> dict:
    """{replicate (None without a replicate column): the `scaling.ladder.Ladder` of that replicate's points and
    fit rows}; replicates with fewer than 2 proxy sizes are left out."""
    out = {}
    for rep in _replicates(points):
        if rep is None:
            p, f = points, fits
        else:
            p = points[points["replicate"] == rep]
            f = dict(fits, fits=[r for r in fits.get("fits", []) if _same(r.get("replicate"), rep)])
        L = build_ladder(p, f)
        if L is not None:
            out[rep] = L
    return out


def coef_table(points: pd.DataFrame, fits: dict) -> pd.DataFrame:
    """The ladder's converged fits, one row per (replicate, method, rm_params): replicate, method, rm_params,
    kl_coef (RL's smallest; None for best-of-n), law, alpha, beta, alpha_ci, beta_ci."""
    rows = []
    for rep, L in ladders(points, fits).items():
        for method, by_size in (("bon", L.bon_fits), ("rl", L.rl_fits)):
            for size, f in sorted(by_size.items()):
                if not f.get("converged") or f.get("alpha") is None or f.get("beta") is None:
                    continue
                rows.append(
                    {
                        "replicate": rep,
                        "method": method,
                        "rm_params": float(size),
                        "kl_coef": L.kc if method == "rl" else None,
                        "law": f["law"],
                        "alpha": float(f["alpha"]),
                        "beta": float(f["beta"]),
                        "alpha_ci": f.get("alpha_ci"),
                        "beta_ci": f.get("beta_ci"),
                    }
                )
    cols = ["replicate", "method", "rm_params", "kl_coef", "law", "alpha", "beta", "alpha_ci", "beta_ci"]
    return pd.DataFrame(rows, columns=cols)


def _curve(L, method: str, size: float):
    """(d, gold) of the measured curve of one proxy on the ladder, or None."""
    if method == "bon":
        if size not in L.bon:
            return None
        kl, gold, _se = L.bon[size]
    else:
        if size not in L.rl:
            return None
        kl, gold = L.rl[size]["kl"], L.rl[size]["gold"]
    kl = np.asarray(kl, dtype=float)
    return np.sqrt(np.clip(kl, 0.0, None)), np.asarray(gold, dtype=float)


def _rmse(law: str, d, gold, alpha: float, beta: float) -> float:
    return float(np.sqrt(np.mean((LAWS[law].fn(d, alpha, beta) - gold) ** 2)))


def unseen_size_table(points: pd.DataFrame, fits: dict) -> pd.DataFrame:
    """Leave-one-size-out prediction of every proxy size of the ladder, per replicate and method.

    Arguments: points, the study's points table; fits, its `fit_table` output (fits.json).
    Returns one row per (replicate, method, held-out rm_params): replicate, method, rm_params, kl_coef, law,
    n_train (sizes the lines were fitted on), extrapolated (the size lies outside them), for c in alpha,
    beta: c_fit (the size's own fit), c_pred, c_err (pred - fit), c_pi ([lo, hi], None with 2 training
    sizes), c_in_pi (None without an interval); then n_curve, curve_range (max - min measured gold),
    rmse_pred, nrmse_pred (the predicted law's RMSE on the measured curve / curve_range), nrmse_fit (the
    same for the size's own fit). Empty (with the columns) when no method has 3 fitted sizes.
    """
    coefs = coef_table(points, fits)
    Ls = ladders(points, fits)
    rows = []
    for (rep, method), sub in coefs.groupby(["replicate", "method"], sort=True, dropna=False):
        rep = None if isinstance(rep, float) and math.isnan(rep) else rep
        if sub["rm_params"].nunique() < MIN_SIZES or sub["law"].nunique() != 1:
            continue
        law = sub["law"].iloc[0]
        x = np.log10(sub["rm_params"].to_numpy(float))
        loo = {c: {r["x"]: r for r in leave_one_out(x, sub[c].to_numpy(float))} for c in ("alpha", "beta")}
        # each size's key is the very float leave_one_out saw: math.log10 of a size can differ from numpy's
        # array log10 in the last bit (e.g. 121 params), which made the lookup fail (KeyError on tiny)
        x_of = dict(zip(sub["rm_params"].to_numpy(float), x.tolist(), strict=True))
        for _, f in sub.sort_values("rm_params").iterrows():
            xs = x_of[float(f["rm_params"])]
            row = {"replicate": rep, "method": method, "rm_params": f["rm_params"], "kl_coef": f["kl_coef"]}
            row.update(law=law, n_train=loo["alpha"][xs]["n_train"], extrapolated=loo["alpha"][xs]["extrapolated"])
            pred = {}
            for c in ("alpha", "beta"):
                p = loo[c][xs]
                pred[c] = p["pred"]
                pi = p["pi"]
                row.update(
                    {
                        f"{c}_fit": float(f[c]),
                        f"{c}_pred": json_num(p["pred"]),
                        f"{c}_err": json_num(p["pred"] - f[c]),
                        f"{c}_pi": pi,
                        f"{c}_in_pi": None if pi is None else bool(pi[0] <= f[c] <= pi[1]),
                    }
                )
            curve = _curve(Ls[rep], method, float(f["rm_params"]))
            row.update(n_curve=0, curve_range=None, rmse_pred=None, nrmse_pred=None, nrmse_fit=None)
            if curve is not None and len(curve[0]):
                d, gold = curve
                span = float(gold.max() - gold.min())
                rmse = _rmse(law, d, gold, pred["alpha"], pred["beta"])
                own = _rmse(law, d, gold, float(f["alpha"]), float(f["beta"]))
                row.update(
                    n_curve=len(d),
                    curve_range=json_num(span),
                    rmse_pred=json_num(rmse),
                    nrmse_pred=json_num(rmse / span) if span > 0 else None,
                    nrmse_fit=json_num(own / span) if span > 0 else None,
                )
            rows.append(row)
    cols = ["replicate", "method", "rm_params", "kl_coef", "law", "n_train", "extrapolated"]
    cols += [f"{c}_{k}" for c in ("alpha", "beta") for k in ("fit", "pred", "err", "pi", "in_pi")]
    cols += ["n_curve", "curve_range", "rmse_pred", "nrmse_pred", "nrmse_fit"]
    return pd.DataFrame(rows, columns=cols)


def table_records(table: pd.DataFrame) -> list[dict]:
    """The table as JSON-safe rows (NaN, e.g. best-of-n's kl_coef, as None; numpy scalars as Python ones)."""
    return [{k: json_value(v) for k, v in row.items()} for row in table.to_dict(orient="records")]


def table_lines(table: pd.DataFrame) -> list[str]:
    """The table as Markdown lines (sizes short, 3 significant digits)."""

    def g(v):
        return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.3g}"

    def ci(v):
        return "-" if v is None else f"[{g(v[0])}, {g(v[1])}]"

    def yes(v):
        return "-" if v is None else ("yes" if v else "**no**")

    head = (
        "| rep | method | size | alpha fit | alpha pred [95% PI] | in PI | beta fit | beta pred [95% PI] | in PI |"
        " curve NRMSE pred | own fit |"
    )
    out = [head, "|" + " --- |" * 11]
    for _, r in table.iterrows():
        rep = "-" if r["replicate"] is None else str(int(r["replicate"]))
        size = fmt_params(r["rm_params"]) + (" (extrap.)" if r["extrapolated"] else "")
        out.append(
            f"| {rep} | {r['method']} | {size} | {g(r['alpha_fit'])} | {g(r['alpha_pred'])} {ci(r['alpha_pi'])} |"
            f" {yes(r['alpha_in_pi'])} | {g(r['beta_fit'])} | {g(r['beta_pred'])} {ci(r['beta_pi'])} |"
            f" {yes(r['beta_in_pi'])} | {g(r['nrmse_pred'])} | {g(r['nrmse_fit'])} |"
        )
    return out
