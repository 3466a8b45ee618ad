"""`report.md` and `report.html` for a study or sweep directory: setup, fit table, figures, warnings.

The HTML is self-contained: CSS inline and every PNG embedded as a base64 data URI (it opens offline
and can be mailed alone); PDFs are linked by relative path. The Markdown links PNGs and PDFs by relative
path. Only files that exist are linked.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from pathlib import Path

import numpy as np

from core import safe_read
from core.store import atomic_write_text, flatten
from criteria import R2_BON, R2_RL, gao_checks, registered
from figures import FIGURES, MANIFEST, figure_module
from figures.data import FigureData, curve, group_cols, load_data
from figures.report_direct_sizes import direct_size_blocks
from figures.report_frontier import frontier_blocks
from figures.report_gold import gold_blocks
from figures.report_optimizers import optimizer_blocks
from figures.report_probes import probes_blocks
from figures.report_selection import selection_blocks, unseen_size_blocks
from figures.report_verdict import verdict_blocks
from scaling.fmt import fmt_params
from scaling.points import MAX_RULE, is_max_rule, is_single_objective, max_rule

R2_MIN = {"bon": R2_BON}  # poor-fit thresholds by law; every other law (RL form) uses R2_MIN_DEFAULT
R2_MIN_DEFAULT = R2_RL
CHANCE_ACC = registered.load().floor  # the pre-registered competence floor (criteria/registered.toml)
MAX_LINES = 25  # warnings of one kind shown before "... and N more"


def describe(key: dict) -> str:
    """'bon, proxy 1.2M, data 20k, kl_coef 0.05' from grouping values (missing and NaN left out)."""
    parts = [str(key.get("method", "?"))]
    for col, label in (("rm_params", "proxy"), ("data_size", "data"), ("policy_params", "policy")):
        v = key.get(col)
        if v is not None and v == v:
            parts.append(f"{label} {fmt_params(v)}")
    for col in ("kl_coef", "objective", "rule", "rm_name"):
        v = key.get(col)
        if v is not None and v == v and not (col == "objective" and is_single_objective(v)) and v != MAX_RULE:
            parts.append(f"{col} {v:g}" if isinstance(v, (int, float)) else f"{col} {v}")
    return ", ".join(parts)


def _cap(lines: list[str]) -> list[str]:
    return lines if len(lines) <= MAX_LINES else lines[:MAX_LINES] + [f"... and {len(lines) - MAX_LINES} more"]


def poor_fits(fits: list[dict]) -> list[str]:
    """Fits with R^2 below 0.9 (BoN law) or 0.8 (RL law), or not converged."""
    out = []
    for f in fits:
        thr = R2_MIN.get(f.get("law"), R2_MIN_DEFAULT)
        r2 = f.get("r2")
        if f.get("converged") is False:
            out.append(f"fit did not converge: {describe(f)} ({f.get('message') or 'no message'})")
        elif r2 is None or not (r2 >= thr):
            out.append(f"poor fit: {describe(f)}, R^2 = {_num(r2)} < {thr}")
    return out


def no_visible_peak(points, fits: list[dict]) -> list[str]:
    """Curves whose last point is not below their maximum (seeds pooled), and fits with beta <= 0."""
    out = []
    cols = group_cols(points)
    for k, g in points.groupby(cols, dropna=False) if cols else [((), points)]:
        c = curve(g)
        if len(c) < 3:
            continue
        gold = c["gold"].to_numpy(float)
        if gold[-1] >= np.nanmax(gold):
            key = dict(zip(cols, k if isinstance(k, tuple) else (k,), strict=False))
            out.append(
                f"no visible peak: {describe(key)} (gold still at its maximum {gold[-1]:.3g} at KL "
                f"{c['kl'].iloc[-1]:.3g} nats)"
            )
    for f in fits:
        if f.get("beta") is not None and f["beta"] <= 0:
            out.append(f"no peak in the fitted law: {describe(f)}, beta = {f['beta']:.3g} <= 0")
    return out


def chance_proxies(proxies) -> list[str]:
    """Proxies whose validation accuracy is below CHANCE_ACC."""
    if proxies is None or "val_acc" not in proxies.columns:
        return []
    out = []
    for _, r in proxies[proxies["val_acc"] < CHANCE_ACC].iterrows():
        name = r.get("rm_name", None)
        label = name if isinstance(name, str) else describe({"method": "proxy", **r.to_dict()})
        if "seed" in r and r["seed"] == r["seed"]:
            label += f" seed {r['seed']}"
        out.append(
            f"proxy at chance: {label} ({fmt_params(r.get('rm_params'))} params), "
            f"validation accuracy {r['val_acc']:.3f} < {CHANCE_ACC}"
        )
    return out


def proxy_gold_divergence(points, rel_tol: float = 0.1) -> list[str]:
    """RL curves (seeds pooled) where, after the gold peak, gold falls by more than rel_tol of its range
    while the proxy keeps rising: the reward-hacking alert."""
    rl = points[points["method"] != "bon"]
    if rl.empty or "proxy" not in rl.columns:
        return []
    out = []
    cols = group_cols(rl)
    for k, g in rl.groupby(cols, dropna=False) if cols else [((), rl)]:
        c = curve(g)
        c = c[c["proxy"].notna()] if "proxy" in c.columns else c.iloc[0:0]
        if len(c) < 3:
            continue
        gold, prox = c["gold"].to_numpy(float), c["proxy"].to_numpy(float)
        i = int(np.nanargmax(gold))
        span = float(np.nanmax(gold) - np.nanmin(gold))
        if i < len(c) - 1 and gold[i] - gold[-1] > rel_tol * span and prox[-1] > prox[i]:
            key = dict(zip(cols, k if isinstance(k, tuple) else (k,), strict=False))
            out.append(
                f"reward hacking: {describe(key)}: after KL {c['kl'].iloc[i]:.3g} nats the proxy rose "
                f"{prox[i]:.3g} -> {prox[-1]:.3g} while gold fell {gold[i]:.3g} -> {gold[-1]:.3g}"
            )
    return out


def _num(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:.{digits}g}" if isinstance(v, (int, float, np.number)) else str(v)


def _ci(v, ci) -> str:
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and None not in ci:
        return f"{_num(v)} [{_num(ci[0])}, {_num(ci[1])}]"
    return _num(v)


def fit_rows(fits: list[dict]) -> tuple[list[str], list[list[str]]]:
    """The fit table: grouping columns present, law, alpha and beta with 95% intervals, R^2, n, peak."""
    gcols = [
        c
        for c in ("rm_params", "data_size", "policy_params", "kl_coef", "objective", "rule", "algo")
        if any(f.get(c) is not None for f in fits) and (c != "rule" or any(f.get(c) != MAX_RULE for f in fits))
    ]
    head = [
        "method",
        *gcols,
        "law",
        "alpha [95% CI]",
        "beta [95% CI]",
        "R^2",
        "n",
        "d*",
        "gold*",
        "converged",
    ]
    rows = []
    for f in fits:
        g = [
            fmt_params(f.get(c))
            if c in ("rm_params", "data_size", "policy_params")
            else (str(f.get(c) or MAX_RULE) if c == "rule" else _num(f.get(c)))
            for c in gcols
        ]
        rows.append(
            [
                str(f.get("method")),
                *g,
                str(f.get("law")),
                _ci(f.get("alpha"), f.get("alpha_ci")),
                _ci(f.get("beta"), f.get("beta_ci")),
                _num(f.get("r2")),
                _num(f.get("n_points")),
                _num(f.get("d_peak")),
                _num(f.get("gold_peak")),
                str(f.get("converged", "n/a")),
            ]
        )
    return head, rows


def setup_rows(data: FigureData) -> tuple[list[list[str]], list[list[str]]]:
    """Key/value rows: (the study.json entries flattened, what the points table holds)."""
    study = []
    for k, v in flatten(data.study or {}).items():
        s = json.dumps(v) if not isinstance(v, str) else v
        study.append([k, s if len(s) <= 100 else s[:97] + "..."])
    rows = []
    p = data.points
    rows.append(["points", f"{len(p)} rows"])
    rows.append(["methods", ", ".join(sorted(map(str, p["method"].unique())))])
    for col, label in (
        ("rm_params", "proxy sizes"),
        ("data_size", "data sizes"),
        ("policy_params", "policy sizes"),
    ):
        if col in p.columns and p[col].notna().any():
            rows.append([label, ", ".join(fmt_params(v) for v in sorted(p[col].dropna().unique()))])
    for col, label in (("kl_coef", "KL coefficients"), ("objective", "objectives"), ("seed", "seeds")):
        if col in p.columns and p[col].notna().any():
            rows.append([label, ", ".join(str(v) for v in sorted(p[col].dropna().unique()))])
    return study, rows


def gao_checks_for(data: FigureData) -> list[dict]:
    """The study's criteria.json checks, or computed from the points and fits (none without 2+ proxy sizes)."""
    if data.root is not None and (data.root / "criteria.json").exists():
        return safe_read.read_json(data.root / "criteria.json").get("checks", [])
    checks = gao_checks(data.points, data.fits, proxies=data.proxies)
    return [] if len(checks) == 1 and checks[0]["passed"] is None else checks


def build(data: FigureData, figures_dir: Path, root: Path) -> list[tuple]:
    """The report as blocks: ('h1'|'h2'|'p', text), ('ul', items), ('table', head, rows), ('fig', ...)."""
    title = f"Over-optimization report: {root.resolve().name}"
    blocks: list[tuple] = [("h1", title)]
    # what a reader came for first: the verdict (over replicates when there are several), then the rest
    blocks += verdict_blocks(root)  # the pooled verdict, then each replicate's checks beside it
    blocks += replicate_verdict_blocks(root)
    checks = gao_checks_for(data)
    if [c["check"] for c in checks] == ["one replicate"]:  # judged per replicate in the table above
        checks = []
    if checks:
        blocks += [
            ("h2", "Gao et al.'s qualitative results"),
            (
                "p",
                "Measured on the proxy ladder (full-data, single-objective proxies); RL at the smallest "
                "KL coefficient; each check's definition in criteria/. n/a: the data cannot decide "
                "the check (the reason is in its row: one seed, fewer than 5 sizes for a slope, ...).",
            ),
            (
                "table",
                ["check", "target", "measured", "passed"],
                [
                    [c["check"], c["target"], c["measured"], {True: "yes", False: "no", None: "n/a"}[c["passed"]]]
                    for c in checks
                ],
            ),
        ]
    # warnings read the max rule only (the other selection rules have their own section)
    main_fits = [f for f in data.fits["fits"] if is_max_rule(f.get("rule"))]
    warnings = (
        poor_fits(main_fits)
        + chance_proxies(data.proxies)
        + proxy_gold_divergence(max_rule(data.points))
        + no_visible_peak(max_rule(data.points), main_fits)
    )
    blocks.append(("h2", "Warnings"))
    blocks.append(
        ("ul", _cap(warnings))
        if warnings
        else (
            "p",
            "None: every fit is good, every curve peaks, no proxy at chance, no proxy-gold divergence.",
        )
    )
    blocks.append(("h2", "Fitted laws"))
    if data.fits["fits"]:
        blocks.append(
            (
                "p",
                "BoN: R(d) = d (alpha - beta d); RL: R(d) = d (alpha - beta log d); d = sqrt(KL) nats. "
                "Intervals are 95% bootstrap.",
            )
        )
        blocks.append(("table", *fit_rows(data.fits["fits"])))
    else:
        blocks.append(("p", "No fits."))
    for key, label in (
        ("scaling", "Coefficient scaling (coef = intercept + sum over sizes of slope * log10 size)"),
        ("advance", "Advance"),
        (
            "replicates",
            "Across replicates (each coefficient's spread; every seed derived from K)",
        ),
    ):
        rows = data.fits.get(key) or []
        if rows:
            head = list(dict.fromkeys(k for r in rows for k in r))
            if key == "replicates":  # the spread first, the constant context columns after it
                first = ["method", "rm_params", "coef", "k", "mean", "sd", "min", "max", "values"]
                head = [h for h in first if h in head] + [h for h in head if h not in first]
            blocks += [("h2", label), ("table", head, [[_cell(r.get(h)) for h in head] for r in rows])]
    blocks += unseen_size_blocks(root) + selection_blocks(root) + probes_blocks(root) + gold_blocks(root)
    blocks += optimizer_blocks(data)  # issue 35: every optimizer against one proxy
    blocks += frontier_blocks(data)  # issue 35: constrained PPO against the KL-penalty sweep
    blocks += direct_size_blocks(data)  # issue 35: DPO/IPO across policy sizes
    manifest = {}
    if (figures_dir / MANIFEST).exists():
        manifest = safe_read.read_json(figures_dir / MANIFEST)
    blocks.append(("h2", "Figures"))
    skipped = []
    for name in FIGURES:
        mod = figure_module(name)
        png, pdf = figures_dir / f"{name}.png", figures_dir / f"{name}.pdf"
        if png.exists():
            blocks.append(("fig", mod.TITLE, png, pdf if pdf.exists() else None, mod.CAPTION, root))
        else:
            reason = (manifest.get(name) or {}).get("skip") or "not rendered (run `overopt figures`)"
            skipped.append(f"{name} ({mod.TITLE}): {reason}")
    if skipped:
        blocks += [("h2", "Skipped figures"), ("ul", skipped)]
    study, table = setup_rows(data)
    blocks.append(("h2", "Appendix: setup"))
    if study:
        blocks += [("p", "From study.json:"), ("table", ["setting", "value"], study)]
    blocks += [("p", "In the points table:"), ("table", ["item", "value"], table)]
    if data.notes:
        blocks.append(("ul", data.notes))
    return blocks


def replicate_verdict_blocks(root: Path) -> list[tuple]:
    """DIR/criteria_replicates.json as a table: each check's verdict on every replicate ([] without it)."""
    path = root / "criteria_replicates.json"
    if not path.exists():
        return []
    table = safe_read.read_json(path)
    head = ["check", "passes", "held_out_passes", "replicates"]
    return [
        ("h2", "Gao et al.'s qualitative results over replicates"),
        (
            "p",
            "Each check judged on each replicate alone (a replicate reruns the study with every seed derived "
            "from K); * marks the replicates the preset was calibrated on, the others are held out.",
        ),
        ("table", head, [[str(r.get(h)) for h in head] for r in table.get("summary", [])]),
    ]


def _cell(v) -> str:
    if isinstance(v, dict):  # e.g. a coefficient's value per replicate: "K0 0.335, K1 0.342"
        return ", ".join(f"K{k} {_num(x)}" for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_num(x) for x in v) + "]"
    return _num(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def _rel(path: Path, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def to_markdown(blocks: list[tuple]) -> str:
    out = []
    for b in blocks:
        kind = b[0]
        if kind == "h1":
            out.append(f"# {b[1]}\n")
        elif kind == "h2":
            out.append(f"## {b[1]}\n")
        elif kind == "p":
            out.append(f"{b[1]}\n")
        elif kind == "ul":
            out.append("\n".join(f"- {x}" for x in b[1]) + "\n")
        elif kind == "table":
            esc = [[str(c).replace("|", "\\|") for c in r] for r in b[2]]
            lines = ["| " + " | ".join(b[1]) + " |", "|" + "---|" * len(b[1])]
            lines += ["| " + " | ".join(r) + " |" for r in esc]
            out.append("\n".join(lines) + "\n")
        elif kind == "fig":
            _, title, png, pdf, caption, root = b
            pdf_link = f" ([PDF]({_rel(pdf, root)}))" if pdf else ""
            out.append(
                f"### {title}\n\n![{title}]({_rel(png, root)}){pdf_link}\n\n" + "  \n".join(caption.splitlines()) + "\n"
            )
    return "\n".join(out)


CSS = (
    "body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;"
    "padding:0 1em;color:#222;line-height:1.45}"
    "h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}"
    "table{border-collapse:collapse;font-size:.85em;margin:.5em 0}"
    "td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}th{background:#f3f3f3}"
    "figure{margin:1.2em 0}img{max-width:100%;border:1px solid #eee}"
    "figcaption{font-size:.9em;color:#444}ul li{margin:.2em 0}"
)


def to_html(blocks: list[tuple]) -> str:
    e = html.escape
    body = []
    title = "report"
    for b in blocks:
        kind = b[0]
        if kind == "h1":
            title = b[1]
            body.append(f"<h1>{e(b[1])}</h1>")
        elif kind in ("h2", "p"):
            body.append(f"<{kind}>{e(b[1])}</{kind}>")
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{e(x)}</li>" for x in b[1]) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{e(h)}</th>" for h in b[1])
            rows = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in b[2])
            body.append(f"<table><tr>{head}</tr>{rows}</table>")
        elif kind == "fig":
            _, ftitle, png, pdf, caption, root = b
            data = base64.b64encode(safe_read.read_bytes(png, safe_read.MAX_LOG)).decode()
            pdf_link = f' (<a href="{e(_rel(pdf, root))}">PDF</a>)' if pdf else ""
            cap = "<br>".join(e(x) for x in caption.splitlines())
            body.append(
                f'<figure><h3>{e(ftitle)}{pdf_link}</h3><img alt="{e(ftitle)}" '
                f'src="data:image/png;base64,{data}"><figcaption>{cap}</figcaption></figure>'
            )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>'
        f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def write_report(root: str | Path, figures_dir: str | Path | None = None, data: FigureData | None = None) -> Path:
    """Write `root/report.md` and `root/report.html`.

    Arguments: root (study or sweep directory), figures_dir (default root/figures), data (if loaded).
    Returns: the path of report.md.
    """
    root = Path(root)
    figures_dir = Path(figures_dir) if figures_dir is not None else root / "figures"
    data = data if data is not None else load_data(root)
    blocks = build(data, figures_dir, root)
    atomic_write_text(root / "report.md", to_markdown(blocks))
    atomic_write_text(root / "report.html", to_html(blocks))
    return root / "report.md"
