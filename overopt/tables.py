"""The plain-text tables the verbs print: numbers, intervals, group labels, and `format_result` (the fits,
coefficient scaling and advance-prediction tables of a `scaling.fitting.fit_table` result), shared by
`overopt fit` and `overopt bon`."""

from __future__ import annotations

from scaling.coef_scaling import SCALING_FIELDS
from scaling.fitting import FIT_FIELDS, FLAT


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
