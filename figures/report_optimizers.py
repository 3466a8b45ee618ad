"""The report's optimizer comparison section (issue 35): per optimizer variant against one proxy (as the
`optimizers` figure draws them), whether gold peaks and falls (over-optimization), and the fitted law's
coefficients per optimizer and proxy size from fits.json (whose rows carry `algo`)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from figures.data import FigureData, curve
from figures.optimizers import DIRECT, variants
from scaling.fitting import fit_table
from scaling.fmt import fmt_params
from scaling.groups import MIN_POINTS


def overoptimizes(rows: pd.DataFrame) -> tuple[bool, float, float]:
    """(gold falls after its peak, peak gold, last gold) of one curve (seeds pooled by step, or n): the peak is
    not the last point and the gold at the largest KL is below it by more than twice the evaluation's standard
    error (gold_eval_se, else gold_se) and by more than a tenth of the curve's rise (peak - first gold)."""
    x = "step" if "step" in rows.columns and rows["step"].notna().any() else None
    c = curve(rows, x=x).sort_values("kl")
    g = c["gold"].to_numpy(float)
    se_col = next((s for s in ("gold_eval_se", "gold_se") if s in c.columns and c[s].notna().any()), None)
    se = float(np.nanmean(c[se_col])) if se_col is not None else 0.0
    i = int(np.argmax(g))
    drop = g[i] - g[-1]
    return bool(i < len(g) - 1 and drop > 2.0 * se and drop > 0.1 * (g[i] - g[0])), float(g[i]), float(g[-1])


def curve_law(rows: pd.DataFrame, law: str) -> dict:
    """The law `law` ("bon", "rl") fitted to one curve's rows (seeds pooled, no bootstrap): its fit row
    (alpha, beta, r2, ...), or {} when the curve has too few points."""
    cols = [c for c in ("kl", "gold", "seed", "step", "n") if c in rows.columns]
    if int((rows["kl"].to_numpy(float) > 0).sum()) < MIN_POINTS:  # fit_table refuses such a group
        return {}
    fits = fit_table(rows[cols].assign(method=law), by=[], method=law, n_boot=0)["fits"]
    return fits[0] if fits else {}


def held_out_rmse(rows: pd.DataFrame, law: str, frac: float = 0.6) -> float | None:
    """The RMSE on a curve's last points of the law `law` fitted on its first points: the cut lies between the
    curve's (seeds pooled by step) points ranked by KL, after the first `frac` of them (at least 3 fitted, 2
    held out); None when the curve is shorter."""
    cols = [c for c in ("kl", "gold", "seed", "step") if c in rows.columns]
    d = np.sort(np.sqrt(np.clip(curve(rows, x="step")["kl"].to_numpy(float), 0.0, None)))
    k = max(3, int(math.ceil(frac * len(d))))
    if len(d) - k < 2 or d[k] <= d[k - 1]:
        return None
    cut = 0.5 * (d[k - 1] + d[k])
    adv = fit_table(rows[cols].assign(method="rl"), by=[], method=law, n_boot=0, d_cut=cut).get("advance")
    return adv[0].get("rmse_test") if adv else None


def direct_blocks(curves) -> list[tuple]:
    """Rafailov et al. 2024's questions of each direct curve (one per algo and beta): the RL law against the
    best-of-n form by held-out error (fit on the first 60% of the checkpoints by KL, error on the rest), and
    whether the training loss tracks gold (Spearman correlation over the checkpoints after step 0: Rafailov et
    al. find it does not)."""
    rows = []
    for label, pts in curves:
        if label not in DIRECT or "beta_dpo" not in pts.columns:
            continue
        for b in sorted(pts["beta_dpo"].unique()):
            g = pts[pts["beta_dpo"] == b]
            c = curve(g, x="step")
            later = c[c["step"] > 0] if "train_loss" in c.columns else c.iloc[:0]
            rho = later["train_loss"].corr(later["gold"], method="spearman") if len(later) > 2 else None
            rmse = [held_out_rmse(g, law) for law in ("rl", "bon")]
            rows.append([label, f"{b:g}", *(_g(r) for r in rmse), _g(rho)])
    if not rows:
        return []
    head = ["algo", "beta", "held-out RMSE: RL law", "held-out RMSE: BoN form", "Spearman(train loss, gold)"]
    return [("p", "Direct alignment's curves (Rafailov et al. 2024):"), ("table", head, rows)]


def _g(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}g}"


def optimizer_blocks(data: FigureData) -> list[tuple]:
    """Blocks (see figures.report.build); [] when the points hold fewer than two optimizers."""
    proxy, curves = variants(data.points)
    if len(curves) < 2:
        return []
    blocks: list[tuple] = [
        ("h2", "Optimizers compared"),
        (
            "p",
            "Each optimizer against one proxy"
            + (f" ({fmt_params(proxy)} parameters)" if proxy is not None else "")
            + ", seeds pooled (figure `optimizers`). KL is not comparable across optimizers as a cost: best-of-n's"
            " KL is an analytic bound, the RL optimizers' a sampled k1 estimate of where their training took the"
            " policy, and DPO/IPO/SLiC drift from offline comparisons with no proxy in the loop; read each"
            " optimizer's own curve (does gold peak and fall?), not who reaches a gold at less KL.",
        ),
    ]
    rows = []
    for label, pts in curves:
        groups = (
            [(f"beta {b:g}", pts[pts["beta_dpo"] == b]) for b in sorted(pts["beta_dpo"].unique())]
            if label in DIRECT and "beta_dpo" in pts.columns
            else [("", pts)]
        )
        for sub, g in groups:
            falls, peak, last = overoptimizes(g)
            law = curve_law(g, "bon" if label == "best-of-n" else "rl")
            cells = [_g(peak), _g(last), _g(float(g["kl"].max())), *(_g(law.get(k)) for k in ("alpha", "beta", "r2"))]
            rows.append([label, sub or "-", "yes" if falls else "no", *cells])
    head = ["optimizer", "curve", "over-optimizes", "peak gold", "gold at max KL", "max KL", "alpha", "beta", "R^2"]
    blocks.append(("table", head, rows))
    blocks += direct_blocks(curves)
    fits = [
        f
        for f in data.fits.get("fits", []) + data.fits.get("objectives", [])
        if f.get("method") == "rl" or (f.get("method") == "bon" and f.get("rule") in (None, "max"))
    ]
    if fits:
        head = ["optimizer", "objective", "proxy", "data", "policy", "kl_coef / beta", "alpha", "beta", "R^2", "n"]
        order = lambda f: (f["method"], str(f.get("algo")), str(f.get("objective")), f.get("rm_params") or 0)
        table = []
        for f in sorted(fits, key=lambda f: (*order(f), f.get("kl_coef") or 0)):
            name = "best-of-n" if f.get("method") == "bon" else str(f.get("algo") or "ppo")
            size = fmt_params(f["rm_params"]) if f.get("rm_params") is not None else "-"
            pol = fmt_params(f["policy_params"]) if f.get("policy_params") is not None else "-"
            data = fmt_params(f["data_size"]) if f.get("data_size") is not None else "-"
            coefs = [_g(f.get(k)) for k in ("kl_coef", "alpha", "beta", "r2")]
            table.append(
                [name, str(f.get("objective") or "single"), size, data, pol, *coefs, str(f.get("n_points", "-"))]
            )
        law = "BoN d(alpha - beta d); RL and direct d(alpha - beta log d)"
        blocks += [("p", f"Fitted coefficients per optimizer and size (fits.json; {law}):"), ("table", head, table)]
    return blocks
