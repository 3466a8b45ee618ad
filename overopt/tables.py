"""The plain-text tables the verbs print: numbers, intervals, group labels, and `format_result` (the fits,
coefficient scaling and advance-prediction tables of a `scaling.fitting.fit_table` result), shared by
`overopt fit` and `overopt bon`."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import t as student_t

from ingest.load import seed_line
from ingest.trainer_logs import clipped_line, describe
from scaling.coef_scaling import SCALING_FIELDS
from scaling.fitting import FIT_FIELDS, FLAT

OFFSET_SE = 3.0  # a curve whose first point is this many standard errors from 0 does not start at 0


def num(x, digits: int = 4) -> str:
    """A number in `digits` significant digits, "-" for None."""
    return "-" if x is None else f"{x:.{digits}g}"


def ci_text(ci) -> str:
    """An interval as " [lo, hi]" ("" for None)."""
    return "" if ci is None else f" [{num(ci[0], 3)}, {num(ci[1], 3)}]"


def table(header: list[str], rows: list[list[str]]) -> str:
    """A plain-text table: the header, a rule, the rows; columns padded to their widest cell."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def group_label(row: dict, keys: list[str]) -> str:
    """A row's group keys as "k=v, k=v" ("all" when none)."""
    return ", ".join(f"{k}={num(row[k]) if isinstance(row[k], float) else row[k]}" for k in keys) or "all"


def format_result(result: dict) -> str:
    """Readable tables of fits, coefficient scaling and (if present) the advance-prediction check."""
    fits = result["fits"]
    keys = [k for k in fits[0] if k not in FIT_FIELDS]
    rows = []
    for r in fits:
        beta = num(r["beta"]) + ci_text(r["beta_ci"])
        if r.get("gamma") is not None:
            beta += f" gamma={num(r['gamma'])}"
        rows.append(
            [
                group_label(r, keys),
                str(r["method"]),
                r["law"],
                num(r["alpha"]) + ci_text(r["alpha_ci"]),
                beta,
                r.get("interval") or "-",
                num(r["r2"], 3),
                num(r["d_peak"]),
                num(r["gold_peak"]),
                num(r.get("d_max")),
                str(r["n_points"]),
                "" if r["converged"] else (FLAT if r["message"] == FLAT else "NOT CONVERGED: " + r["message"]),
            ]
        )
    header = [
        "group",
        "method",
        "law",
        "alpha",
        "beta",
        "interval",
        "R2",
        "d_peak",
        "gold_peak",
        "d_max",
        "n_points",
        "",
    ]
    boot = any(r["alpha_ci"] is not None for r in fits)
    title = (
        "fits (95% intervals: bootstrap over prompts or points, t over seeds; R2 and n_points: the mean curve)"
        if boot
        else "fits (no bootstrap intervals; Jacobian ones are in --json)"
    )
    out = [title, table(header, rows)]
    if result["scaling"]:
        srows = [
            [
                group_label(s, [k for k in s if k not in SCALING_FIELDS]),
                str(s["method"]),
                s["coef"],
                f"log10({s['x']})",
                num(s["slope"]) + ci_text(s["slope_ci"]),
                num(s["intercept"]) + ci_text(s["intercept_ci"]),
                num(s["r2"], 3),
                str(s["n"]),
            ]
            for s in result["scaling"]
        ]
        header = ["context", "method", "coef", "x", "slope", "intercept", "R2", "n"]
        out += ["", "coefficient scaling (coef = intercept + slope * log10(x), 95% t intervals)", table(header, srows)]
    if "advance" in result:
        arows = [
            [
                group_label(a, keys),
                str(a["method"]),
                num(a["d_cut"]),
                str(a["n_fit"]),
                str(a["n_test"]),
                num(a["rmse_test"]),
                num(a["rmse_test_full"]),
                num(a["d_peak"]),
                num(a["d_peak_full"]),
                "" if a["message"] == "ok" else a["message"],
            ]
            for a in result["advance"]
        ]
        header = ["group", "method", "d_cut", "n_fit", "n_test", "rmse_test", "rmse_full", "d_peak", "d_peak_full", ""]
        out += [
            "",
            "advance prediction (fit on d <= d_cut, error beyond; rmse_full: all-points fit there)",
            table(header, arows),
        ]
    return "\n".join(out)


def input_lines(sources: list[dict], recentre=None) -> list[str]:
    """The stderr lines saying what each trainer log gave (one a run: KL key and units, gold, algo, what was
    read, pooling), then one line for the KLs clipped to 0."""
    lines = []
    for s in sources:
        text = describe(s)
        if s.get("pooled"):
            text += f"; pooled as {s['pooled']}"
        if recentre is not None:
            text += f"; gold recentred (--recentre {recentre})"
        lines.append(text if len(sources) == 1 else f"run {s.get('run') or s['input']}: {text}")
    extra = [clipped_line(sources), seed_line(sources)]
    return lines + [line for line in extra if line]


def _rows_of(df: pd.DataFrame, fit: dict) -> pd.DataFrame:
    """The rows of df in a fit row's group (None matches a missing value)."""
    sel = df
    for k, v in fit.items():
        if k in FIT_FIELDS or k not in sel.columns:
            continue
        if v is None or (isinstance(v, float) and math.isnan(v)):
            sel = sel[sel[k].isna()]
        else:
            sel = sel[sel[k].astype(object).map(lambda x, v=v: x == v or str(x) == str(v))]
    return sel


def curve_start(rows: pd.DataFrame, rmse) -> tuple[float, float, float, str] | None:
    """(mean gold, its SE, how many SE is clearly not 0, where) at a curve's first point (best-of-1; the
    smallest step or KL), or None when that point is not near d = 0."""
    full = lambda c: c in rows.columns and pd.to_numeric(rows[c], errors="coerce").notna().all()
    at = "n" if full("n") else "step" if full("step") else "kl"
    x = pd.to_numeric(rows[at], errors="coerce")
    first = rows[x == x.min()]
    d0, d_max = math.sqrt(max(first["kl"].mean(), 0.0)), math.sqrt(max(rows["kl"].max(), 0.0))
    if at != "n" and d0 > 0.25 * d_max:
        return None
    gold = first["gold"].to_numpy(float)
    if len(gold) > 1:  # units (prompts, seeds) at the first point: the SE over them
        se, k = float(np.std(gold, ddof=1) / math.sqrt(len(gold))), len(gold)
    elif "gold_se" in first.columns and np.isfinite(first["gold_se"].to_numpy(float)).all():
        se = float(first["gold_se"].iloc[0])
        k = int(first["n_prompts"].iloc[0]) if "n_prompts" in first.columns else None
    else:
        se, k = (float(rmse) if rmse is not None else math.nan), max(len(rows) - 2, 1)
    # "3 SE" as a t quantile where the SE has few degrees of freedom (3 prompts: about 19 SE)
    z = max(OFFSET_SE, float(student_t.ppf(0.99865, k - 1))) if k is not None and k > 1 else OFFSET_SE
    return float(gold.mean()), se, z, f"{at} = {x.min():g}"


def offset_lines(df: pd.DataFrame, result: dict, recentre, command: str = "overopt fit INPUT...") -> list[str]:
    """One line for the fits whose curve clearly does not start at 0 (the first point more than 3 SE from 0;
    the law's R(0) = 0), showing the --recentre form; none when gold was recentred."""
    if recentre is not None:
        return []
    off = []
    for fit in result.get("fits", []):
        if fit.get("message") == FLAT:
            continue
        rows = _rows_of(df, fit)
        start = curve_start(rows, fit.get("rmse")) if len(rows) else None
        if start is None:
            continue
        g0, se, z, where = start
        if se > 0 and abs(g0) > z * se:
            keys = group_label(fit, [k for k in fit if k not in FIT_FIELDS])
            off.append(f"{keys} at gold {g0:.4g} +- {se:.2g} ({where})")
    if not off:
        return []
    shown = "; ".join(off[:4]) + (f"; ... ({len(off)} in all)" if len(off) > 4 else "")
    return [
        f"warning: {len(off)} curve(s) start clearly away from 0, where the law starts (R(0) = 0): {shown};"
        f" to fit gains over the start: {command} --recentre first"
    ]


def spread_rows(df: pd.DataFrame, result: dict) -> list[dict]:
    """For each fitted curve whose rows carry `gold_sd` (the gold's spread over one step's completions, as a
    trainer logs it: TRL's `rewards/gold/std`), the over-optimization in units of that spread: the group's
    keys, `gold_sd` (the median over the curve's steps), `drop` (the curve's highest gold minus its last, the
    curve the mean at each step or KL), `drop_sd` = drop / gold_sd, `rmse_sd` = the law's rmse / gold_sd.
    An effect size for the report; the intervals do not use it (README "Fitting your own runs")."""
    out = []
    if "gold_sd" not in df.columns:
        return out
    for fit in result.get("fits", []):
        rows = _rows_of(df, fit)
        sd = pd.to_numeric(rows["gold_sd"], errors="coerce") if len(rows) else pd.Series(dtype=float)
        if not len(rows) or not sd.notna().all() or not (sd > 0).all():
            continue
        at = "step" if "step" in rows.columns and pd.to_numeric(rows["step"], errors="coerce").notna().all() else "kl"
        curve = rows.assign(gold_sd=sd).groupby(pd.to_numeric(rows[at], errors="coerce"))[["gold", "gold_sd"]].mean()
        median = float(curve["gold_sd"].median())
        drop = float(curve["gold"].max() - curve["gold"].iloc[-1])
        rmse = fit.get("rmse")
        row = {k: fit[k] for k in fit if k not in FIT_FIELDS}
        row.update(
            gold_sd=median, drop=drop, drop_sd=drop / median, rmse_sd=rmse / median if rmse is not None else None
        )
        out.append(row)
    return out


def spread_line(rows: list[dict]) -> list[str]:
    """One stderr line for `spread_rows` (none when no curve carries the gold's spread)."""
    if not rows:
        return []
    parts = [
        f"{group_label(r, [k for k in r if k not in SPREAD_FIELDS])}: sd {r['gold_sd']:.3g}, drop after the peak"
        f" {r['drop']:.3g} = {r['drop_sd']:.2f} sd"
        + (f", law rmse {r['rmse_sd']:.2f} sd" if r["rmse_sd"] is not None else "")
        for r in rows[:4]
    ]
    more = f"; ... ({len(rows)} in all)" if len(rows) > 4 else ""
    return [
        "gold spread over each step's completions (median a step; the intervals do not use it): "
        + "; ".join(parts)
        + more
    ]


SPREAD_FIELDS = ("gold_sd", "drop", "drop_sd", "rmse_sd")
