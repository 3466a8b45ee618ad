"""The study's selection-rule stages: reference log-probs of the pool, then rules and best-n per proxy.

  pool -> "ref-logprob" (pi_init's log-prob of every pool response: the regularized rule's proximity)
  pool + proxy + ref-logprob -> "select-<size>" (soft / Best-of-Poisson / regularized points on the
        proxy's pool ranking, for each ensemble objective, and the best-n predictions: bon.rule_points)

`write_selection` gathers them into DIR/selection.json: the laws of every rule fitted against the exact
KL (`kl_exact`, best-of-n's included, so all rules share one x axis), gold at matched exact KL per
rule, and the best-n predictions. The max rule's own points (and every criterion) are the best-of-n
stage's, against the analytic bound, untouched by this stage.
"""

from __future__ import annotations

import io
import sys
import time

import numpy as np
import pandas as pd

from bon.pools import n_grid, rankings, recentred
from bon.rule_points import predictions, rule_points
from core.config import id_dict
from core.store import atomic_write_bytes, atomic_write_json, atomic_write_parquet

PREDICTIONS = "best_n.parquet"  # in each select-<size> run
SELECTION = "selection.json"  # in the study directory


def _log(msg: str) -> None:
    print(f"[overopt] {msg}", file=sys.stderr, flush=True)


def ref_logprob(study) -> tuple[str, np.ndarray]:
    """(run id, float64 [P, N]): log pi_init(response | prompt) of every pool response, at the pool's
    sampling temperature (the sampler's masking), summed over the response's tokens."""
    from lm.model import response_logprobs

    pool_id, pool = study.pool()
    key = {"policy": study.policy_id(), "pool": pool_id}
    with study._stage("ref-logprob", key) as run:
        path = run.file("ref_logprob.npy")
        if not run.done:
            t0 = time.time()
            graphdef, state = study.policy()
            out = np.empty(len(pool.tokens))
            step = study.cfg.bon.batch_size
            for i in range(0, len(pool.tokens), step):
                toks = np.asarray(pool.tokens[i : i + step], np.int32)
                lp = np.asarray(response_logprobs(graphdef, state, toks, pool.prompt_len, study.cfg.bon.temperature))
                out[i : i + step] = np.where(pool.mask[i : i + step], lp, 0.0).sum(axis=1, dtype=np.float64)
            buf = io.BytesIO()
            np.save(buf, out)
            atomic_write_bytes(path, buf.getvalue())
            run.mark_done({"seconds": time.time() - t0})
            study.timings["ref-logprob"] = time.time() - t0
        return run.id, pool.per_prompt(np.load(path))


def select(study, proxies) -> list:
    """One "select-<size>" run per proxy: rule points (points.parquet) and predictions (best_n.parquet)."""
    from lm.model import param_count

    cfg = study.cfg.selection
    if not cfg.rules and not cfg.hedge_rules:
        return []
    pool_id, pool = study.pool()
    pool = recentred(pool)
    lp_id, lp = ref_logprob(study)
    gold = pool.per_prompt(pool.gold["score"])
    extra = {k: pool.per_prompt(v) for k, v in pool.gold.items() if k != "score"}
    ns = n_grid(pool.pool_size)
    _log(f"selection rules ({', '.join(cfg.rules) or 'none'}) and best-n predictions on {len(proxies)} proxies")
    runs = []
    for proxy_id, proxy, _ in proxies:
        key = {
            "pool": pool_id,
            "proxy": proxy_id,
            "ref_logprob": lp_id,
            "selection": id_dict(cfg),
            "objectives": list(study.cfg.bon.objectives),
            "uwo_lambda": study.cfg.bon.uwo_lambda,
            "outputs": ["points", "best_n", "policy_params"],  # rows carry policy_params (ids apart from older stores)
        }
        with study._stage(f"select-{proxy.size.name}", key) as run:
            if not run.done:
                t0 = time.time()
                members = proxy.scores(pool.tokens.astype(np.int32), pool.mask, pool.prompt_len)
                const = {
                    "rm_name": proxy.size.name,
                    "rm_params": proxy.rm_params,
                    "data_size": proxy.data_size,
                    "seed": proxy.seeds[0],
                    "run_id": run.id,
                    "policy_params": param_count(
                        study.policy_model_cfg()
                    ),  # a policy-size sweep keeps its curves apart
                }
                frames, preds = [], []
                for name, rank in rankings(members, study.cfg.bon).items():
                    score = pool.per_prompt(np.asarray(rank, np.float64))
                    c = const | {"objective": name, "ensemble_size": 1 if name == "single" else members.shape[0]}
                    for rule in cfg.rules:
                        frames.append(rule_points(rule, score, gold, ns, cfg, extra=extra, ref_logprob=lp, **c))
                    preds.append(predictions(score, gold, cfg, ref_logprob=lp, **c))
                if frames:
                    run.write_points(pd.concat(frames, ignore_index=True))
                atomic_write_parquet(run.file(PREDICTIONS), pd.concat(preds, ignore_index=True))
                run.mark_done({"seconds": time.time() - t0})
                study.timings[f"select-{proxy.size.name}"] = time.time() - t0
                _log(f"  {proxy.size.name}: {time.time() - t0:.1f}s")
        runs.append(run)
    return runs


def collect_predictions(runs) -> pd.DataFrame | None:
    frames = [pd.read_parquet(r.path / PREDICTIONS) for r in runs if (r.path / PREDICTIONS).exists()]
    return pd.concat(frames, ignore_index=True) if frames else None


def matched_kl(curves: dict, n_kl: int = 8) -> list[dict]:
    """Gold of each rule at `n_kl` exact KLs spread (in sqrt KL) over the range every rule reaches.

    Arguments: `curves` rule -> (kl_exact, gold) arrays of one proxy. Returns rows {kl, rule -> gold,
    best}: linear interpolation in sqrt(KL), which is how the laws are drawn.
    """
    lo = max(float(np.min(k)) for k, _ in curves.values())
    hi = min(float(np.max(k)) for k, _ in curves.values())
    if not hi > lo:
        return []
    rows = []
    for kl in np.linspace(np.sqrt(lo), np.sqrt(hi), n_kl + 1)[1:] ** 2:
        g = {}
        for rule, (k, v) in curves.items():
            order = np.argsort(k)
            g[rule] = float(np.interp(np.sqrt(kl), np.sqrt(np.asarray(k)[order]), np.asarray(v)[order]))
        rows.append({"kl_exact": float(kl), **g, "best": max(g, key=g.get)})
    return rows


def write_selection(out, points: pd.DataFrame, preds: pd.DataFrame | None, n_boot: int = 200) -> dict | None:
    """DIR/selection.json: every rule's law against kl_exact, gold at matched exact KL, best-n predictions."""
    from scaling.fitting import fit_table
    from scaling.points import upgrade_columns

    if "rule" not in points.columns and preds is None:
        return None
    points = upgrade_columns(points)  # stores written before the rename: kl_est -> kl_exact
    bon = points[points["method"] == "bon"]  # every objective: each rule with each ensemble objective
    if "kl_exact" not in bon.columns:
        return None
    bon = bon.dropna(subset=["kl_exact"])
    bon = bon.assign(rule=bon["rule"].fillna("max") if "rule" in bon.columns else "max", kl=bon["kl_exact"])
    if "objective" in bon.columns:
        bon = bon.assign(objective=bon["objective"].fillna("single"))
    by = [
        c for c in ("method", "rm_params", "data_size", "policy_params", "objective", "replicate", "rule") if c in bon
    ]
    fits = fit_table(bon.drop(columns=[c for c in ("kl_coef",) if c in bon.columns]), by=by, n_boot=n_boot)
    matched = []
    keys = [c for c in by if c not in ("rule", "method")]
    for key, g in bon.groupby(keys, dropna=False):
        curves = {r: (s["kl_exact"].to_numpy(float), s["gold"].to_numpy(float)) for r, s in g.groupby("rule")}
        if len(curves) > 1:
            ident = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
            ident["rm_name"] = str(g["rm_name"].iloc[0]) if "rm_name" in g.columns else None
            matched += [ident | row for row in matched_kl(curves)]
    out_json = {
        "kl": "kl_exact: each rule's exact KL against the pool's empirical distribution (nats)",
        "fits": fits["fits"],
        "matched_kl": matched,
        "best_n": [] if preds is None else preds.to_dict(orient="records"),
    }
    atomic_write_json(out / SELECTION, out_json)
    return out_json
