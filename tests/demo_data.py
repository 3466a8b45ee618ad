"""A synthetic study directory drawn from the laws with noise: try `overopt figures` without running a study.

`python -m figures.demo DIR` writes DIR/points.parquet, proxies.parquet, study.json (and fits.json with the
generating coefficients unless --no-fits). The tests use it too. Every figure has its inputs here: several
proxy sizes, BoN and RL, two data sizes, two policy sizes, two KL penalties, ensemble objectives, gold
components and RL evaluation columns.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pandas as pd

RM_PARAMS = (1.2e5, 1.1e6, 9.8e6)
DATA_SIZES = (5_000, 20_000)
POLICY_PARAMS = (8e5, 3.2e6)
KL_COEFS = (0.0, 0.05)
SEEDS = (0, 1)
NS = tuple(2**i for i in range(10))
STEPS = tuple(range(0, 30, 2))


def coefficients(rm_params: float, data_size: float, policy_params: float) -> dict:
    """Generating coefficients: alpha_bon up, beta_bon and beta_rl down with log RM size (Gao et al.)."""
    s = (
        math.log(rm_params / RM_PARAMS[0])
        + 0.5 * math.log(data_size / DATA_SIZES[-1])
        + 0.3 * math.log(policy_params / POLICY_PARAMS[0])
    )
    return {
        "alpha_bon": 0.5 + 0.12 * s,
        "beta_bon": max(0.33 - 0.03 * s, 0.05),
        "alpha_rl": 0.6,
        "beta_rl": max(0.45 - 0.04 * s, 0.05),
    }


def synthetic_points(rng: np.random.Generator) -> pd.DataFrame:
    """A long points table (DESIGN.md) with every optional column the figures read."""
    rows = []
    for rm in RM_PARAMS:
        for ds in DATA_SIZES:
            for pp in POLICY_PARAMS:
                c = coefficients(rm, ds, pp)
                base = dict(rm_params=rm, data_size=ds, policy_params=pp, rm_name=f"rm-{rm:.0f}-{ds}")
                for seed in SEEDS:
                    for n in NS:
                        kl = math.log(n) - (n - 1) / n
                        d = math.sqrt(kl)
                        gold = d * (c["alpha_bon"] - c["beta_bon"] * d) + rng.normal(0, 0.01)
                        rows.append(
                            dict(
                                base,
                                method="bon",
                                kl=kl,
                                kl_exact=0.9 * kl,
                                n=n,
                                seed=seed,
                                gold=gold,
                                proxy=1.2 * c["alpha_bon"] * d + rng.normal(0, 0.01),
                                objective="single",
                                ensemble_size=1,
                                **_components(d, gold, rng),
                            )
                        )
                        if ds == DATA_SIZES[-1] and pp == POLICY_PARAMS[0]:
                            for obj, shrink in (("mean", 0.8), ("min", 0.6)):
                                g = d * (c["alpha_bon"] - shrink * c["beta_bon"] * d)
                                rows.append(
                                    dict(
                                        base,
                                        method="bon",
                                        kl=kl,
                                        n=n,
                                        seed=seed,
                                        gold=g,
                                        proxy=c["alpha_bon"] * d,
                                        objective=obj,
                                        ensemble_size=3,
                                    )
                                )
                    for kc in KL_COEFS:
                        for step in STEPS:
                            kl = 6.0 * step / STEPS[-1] / (1 + 30 * kc)
                            d = math.sqrt(kl)
                            gold = d * (c["alpha_rl"] - c["beta_rl"] * math.log(d)) if d > 0 else 0.0
                            gold += rng.normal(0, 0.01)
                            rows.append(
                                dict(
                                    base,
                                    method="rl",
                                    kl=kl,
                                    step=step,
                                    seed=seed,
                                    kl_coef=kc,
                                    gold=gold,
                                    proxy=0.5 * d + 0.2 * kl,
                                    objective="single",
                                    ensemble_size=1,
                                    entropy=2.0 * math.exp(-0.3 * kl),
                                    distinct_2=0.9 * math.exp(-0.2 * kl),
                                    self_bleu=1 - math.exp(-0.4 * kl),
                                    length=12 + 2 * kl,
                                    **_components(d, gold, rng),
                                )
                            )
    return pd.DataFrame(rows)


def _components(d: float, gold: float, rng) -> dict:
    """Named gold parts summing to gold: task rises, flattery rises then falls (extremal Goodhart)."""
    flattery = 0.6 * d - 0.4 * d * d
    length = 0.1 * d + rng.normal(0, 0.005)
    return {"gold/task": gold - flattery - length, "gold/flattery": flattery, "gold/length": length}


def synthetic_proxies(rng: np.random.Generator) -> pd.DataFrame:
    """One proxy per (size, data size, seed) with validation loss falling and accuracy rising with size."""
    rows = []
    for i, rm in enumerate(RM_PARAMS):
        for ds in DATA_SIZES:
            for seed in SEEDS:
                acc = 0.52 + 0.15 * i + 0.03 * (ds == DATA_SIZES[-1]) + rng.normal(0, 0.005)
                rows.append(
                    dict(
                        rm_name=f"rm-{rm:.0f}-{ds}",
                        rm_params=rm,
                        data_size=ds,
                        seed=seed,
                        val_acc=acc,
                        val_loss=0.69 - 0.5 * (acc - 0.5),
                        backbone="pretrained",
                    )
                )
    return pd.DataFrame(rows)


def synthetic_fits(points: pd.DataFrame) -> dict:
    """fits.json rows (ARCHITECTURE.md "Laws" schema) holding the generating coefficients of every curve."""
    from scaling.laws import peak

    fits = []
    cols = ["method", "rm_params", "data_size", "kl_coef", "policy_params"]
    single = points[points["objective"] == "single"]
    for key, g in single.groupby(cols, dropna=False):
        k = dict(zip(cols, key, strict=False))
        c = coefficients(k["rm_params"], k["data_size"], k["policy_params"])
        m = k["method"]
        alpha, beta = c[f"alpha_{m}"], c[f"beta_{m}"]
        dp, gp = peak(m, {"alpha": alpha, "beta": beta})
        if m == "bon":
            k["kl_coef"] = None
        fits.append(
            dict(
                k,
                law=m,
                alpha=alpha,
                beta=beta,
                alpha_ci=[alpha - 0.02, alpha + 0.02],
                beta_ci=[beta - 0.01, beta + 0.01],
                r2=0.97,
                rmse=0.01,
                aic=-50.0,
                n_points=len(g),
                d_peak=dp,
                gold_peak=gp,
                converged=True,
                message="",
            )
        )
    # As scaling.coef_scaling writes them: per context, coef = intercept + sum_j slope_j log10(size_j).
    scaling = []
    sizes = ["rm_params", "data_size", "policy_params"]
    for (m, kc), _ in single.groupby(["method", "kl_coef"], dropna=False):
        rows = [f for f in fits if f["method"] == m and (f["kl_coef"] == kc or (kc != kc and f["kl_coef"] is None))]
        X = np.column_stack([np.ones(len(rows)), np.log10([[f[c] for c in sizes] for f in rows])])
        for coef in ("alpha", "beta"):
            theta, *_ = np.linalg.lstsq(X, np.array([f[coef] for f in rows]), rcond=None)
            for j, x in enumerate(sizes):
                s, b = float(theta[1 + j]), float(theta[0])
                scaling.append(
                    dict(
                        method=m,
                        kl_coef=None if kc != kc else kc,
                        coef=coef,
                        x=x,
                        slope=s,
                        intercept=b,
                        slope_ci=[s - 0.01, s + 0.01],
                        intercept_ci=[b - 0.1, b + 0.1],
                        r2=0.99,
                        n=len(rows),
                    )
                )
    return {"fits": fits, "scaling": scaling}


def synthetic_rules(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Selection-rule rows (soft, poisson: `kl` = `kl_exact`) per RM size at full data and the smallest
    policy, and best-n prediction rows as `bon.rule_points.predictions` writes them."""
    rows, preds = [], []
    for rm in RM_PARAMS:
        c = coefficients(rm, DATA_SIZES[-1], POLICY_PARAMS[0])
        base = dict(rm_params=rm, data_size=DATA_SIZES[-1], policy_params=POLICY_PARAMS[0], rm_name=f"rm-{rm:.0f}")
        for rule, param, values, shrink in (
            ("soft", "temperature", [0.06, 0.125, 0.25, 0.5, 1.0, 2.0], 0.7),
            ("poisson", "mu", [0.5, 2, 8, 32, 128, 512], 0.9),
        ):
            for j, v in enumerate(values):
                kl = 0.2 + 1.2 * (j if rule == "poisson" else len(values) - 1 - j)
                d = math.sqrt(kl)
                gold = d * (c["alpha_bon"] - shrink * c["beta_bon"] * d) + rng.normal(0, 0.01)
                rows.append(
                    dict(base, method="bon", rule=rule, param=param, param_value=v, kl=kl, kl_exact=kl, gold=gold)
                    | dict(gold_se=0.02, proxy=c["alpha_bon"] * d, objective="single", ensemble_size=1, seed=SEEDS[0])
                )
        for rule, predictor, pred, oracle in (
            ("max", "hedge", 30.0, 32.0),
            ("max", "law", 60.0, 32.0),
            ("poisson", "hedge", 20.0, 25.0),
        ):
            preds.append(
                dict(rule=rule, param="n" if rule == "max" else "mu", predictor=predictor, calibration_size=64)
                | dict(predicted=pred, predicted_kl_exact=2.0, predicted_gold=0.5, oracle=oracle, oracle_kl_exact=2.1)
                | dict(oracle_gold=0.52, regret=0.02, log_ratio=math.log(pred / oracle), objective="single", **base)
            )
    return pd.DataFrame(rows), pd.DataFrame(preds)


def add_constrained(root: str | Path, thresholds=(0.3, 0.6)) -> None:
    """Add constrained PPO rows to root/points.parquet (figure `frontier`): for the largest proxy at full data
    and the smallest policy, each proxy point a copy of PPO's kl_coef-0 runs whose KL stops growing once the
    proxy passes the point. `write_demo` leaves them out (the other tests read its table as it is)."""
    from core.store import atomic_write_parquet

    points = pd.read_parquet(Path(root) / "points.parquet")
    ppo = points[(points["method"] == "rl") & (points["kl_coef"] == 0.0) & (points["rm_params"] == RM_PARAMS[-1])]
    ppo = ppo[(ppo["data_size"] == DATA_SIZES[-1]) & (ppo["policy_params"] == POLICY_PARAMS[0])]
    parts = [points]
    for theta in thresholds:
        rows = ppo.sort_values(["seed", "step"]).copy()
        held = rows.groupby("seed")["proxy"].cummax() > theta
        rows.loc[held, ["kl", "gold", "proxy"]] = np.nan
        rows[["kl", "gold", "proxy"]] = rows.groupby("seed")[["kl", "gold", "proxy"]].ffill()
        parts.append(rows.assign(algo="ppo_constrained", constraint_threshold=theta))
    atomic_write_parquet(Path(root) / "points.parquet", pd.concat(parts, ignore_index=True))


def write_demo(root: str | Path, seed: int = 0, fits: bool = True, rules: bool = True) -> Path:
    """Write the synthetic study directory `root`. Returns: root."""
    from core.store import atomic_write_json, atomic_write_parquet

    root = Path(root)
    rng = np.random.default_rng(seed)
    points = synthetic_points(rng)
    fit_rows = synthetic_fits(points)  # the max rule's (no rule column yet)
    if rules:
        from study.selection import write_selection

        extra, preds = synthetic_rules(rng)
        points = pd.concat([points, extra], ignore_index=True)
        write_selection(root, points, preds, n_boot=0)
    atomic_write_parquet(root / "points.parquet", points)
    atomic_write_parquet(root / "proxies.parquet", synthetic_proxies(rng))
    atomic_write_json(
        root / "study.json",
        {
            "preset": "demo",
            "rm_params": list(RM_PARAMS),
            "data_sizes": list(DATA_SIZES),
            "seeds": list(SEEDS),
            "timings": {"total_s": 0.0},
        },
    )
    if fits:
        atomic_write_json(root / "fits.json", fit_rows)
    return root


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir")
    ap.add_argument("--no-fits", action="store_true", help="leave fits.json out (overopt figures then fits)")
    a = ap.parse_args()
    print(write_demo(a.dir, fits=not a.no_fits))


def write_finished_workspace(study: Path, sweep: Path) -> None:
    """A finished demo study at `study` (with one DONE best-of-n run) and a one-point sweep at `sweep` whose point
    and one RL run are DONE: the inputs the bad-input tests read and must never change."""
    import json

    from core.config import to_dict
    from core.store import Run
    from study.presets import tiny

    write_demo(study)
    _finished_run(study / "runs", "bon-rm-s")
    _finished_run(sweep / "runs", "rl-rm-s")
    point = Run.open(sweep / "points", to_dict(tiny()))
    point.mark_done()
    (sweep / "sweep.json").write_text(json.dumps({"name": "s", "points": [{"id": point.id, "values": {}}]}))


def _finished_run(runs: Path, prefix: str) -> None:
    from core.store import Run

    run = Run.open(runs, {"stage": prefix}, prefix=prefix)
    run.write_points(pd.DataFrame({"method": ["bon"] * 3, "kl": [0.0, 1.0, 2.0], "gold": [0.0, 0.4, 0.3]}))
    run.mark_done({"seconds": 0})
