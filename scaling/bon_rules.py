"""Selection rules for `overopt bon`: soft best-of-n, Best-of-Poisson and regularized best-of-n on a user's
own pools, beside best-of-n (`scaling.bon_samples`).

Each rule's points come from `bon.rule_points.rule_points` at `bon.rule_points.SelectionConfig`'s default
grids (temperatures and the regularized beta relative to the ranking score's spread on the pool; mu
absolute): `method` "bon", `rule`, `param`, `param_value`, `kl` = `kl_exact` (the selection's exact KL
against the pool's empirical distribution), gold and proxy exact on the pool, SEs over prompts. The
regularized rule needs the samples' `ref_logprob` column: without it, it is left out of the default set
(with a note) and refused when asked for by name.
"""

from __future__ import annotations

import pandas as pd

from core.errors import UsageError

ALL_RULES = ("max", "soft", "poisson", "regularized")


def parse_rules(text: str | None, has_ref_logprob: bool) -> tuple[tuple[str, ...], list[str]]:
    """(rules to report, notes) from `--rules` ("max,soft", or None for every rule the samples allow)."""
    if text is None:
        if has_ref_logprob:
            return ALL_RULES, []
        note = "rule regularized left out: it needs a ref_logprob column (the response's log-prob under the base)"
        return tuple(r for r in ALL_RULES if r != "regularized"), [note]
    rules = tuple(r.strip() for r in str(text).split(",") if r.strip())
    bad = [r for r in rules if r not in ALL_RULES]
    if not rules or bad or len(set(rules)) != len(rules):
        raise UsageError(f"--rules: a comma-separated list of {', '.join(ALL_RULES)} (each once), got {text!r}")
    if "regularized" in rules and not has_ref_logprob:
        raise UsageError("--rules regularized needs a ref_logprob column in the samples (log-prob under the base)")
    return rules, []


def rule_tables(df: pd.DataFrame, rules, objective=None, uwo_lambda=1.0, pool_size=None, recentre=None, cfg=None):
    """Points of every rule in `rules` other than max, for every curve of the samples table; None if none."""
    from bon.rule_points import SelectionConfig, rule_points
    from scaling.bon_samples import curves, n_values, ranking

    cfg = cfg or SelectionConfig()
    frames = []
    for key, proxy, gold, _, logp in curves(df, pool_size):
        name, rank = ranking(proxy, objective, uwo_lambda)
        if recentre is not None:
            gold = gold - (gold.mean() if recentre == "first" else recentre)
        const = {"objective": name, "ensemble_size": proxy.shape[0], **key}
        for rule in rules:
            if rule != "max":
                frames.append(rule_points(rule, rank, gold, n_values(gold.shape[1]), cfg, ref_logprob=logp, **const))
    return pd.concat(frames, ignore_index=True) if frames else None


def format_rules(points: pd.DataFrame) -> str:
    """One block: each rule's points (parameter, kl_exact, gold) per curve."""
    from scaling.fit_cli import _f, _table

    keys = [c for c in ("objective", "ensemble_size", "rm_params", "data_size", "policy_params", "seed") if c in points]
    rows = []
    for values, sub in points.groupby([*keys, "rule"], sort=False, dropna=False):
        values = values if isinstance(values, tuple) else (values,)
        curve = ", ".join(f"{k}={_f(v) if isinstance(v, float) else v}" for k, v in zip(keys, values[:-1], strict=True))
        for r in sub.itertuples():
            rows.append(
                [curve, r.rule, f"{r.param} {_f(r.param_value)}", _f(r.kl_exact), f"{_f(r.gold)} +- {_f(r.gold_se, 2)}"]
            )
    title = (
        "selection rules (kl_exact: each rule's exact KL against the pool's empirical distribution; gold exact on the"
        " pool; soft: n = the pool size, temperatures x the score's spread; Best-of-Poisson: n = 1 + Poisson(mu);"
        " regularized: best-of-n on proxy + beta x ref_logprob)"
    )
    return title + "\n" + _table(["curve", "rule", "parameter", "kl_exact", "gold"], rows)


def bound_rows(df: pd.DataFrame, objective=None, uwo_lambda=1.0, pool_size=None, threshold: float = 0.1) -> list[dict]:
    """Per curve and prompt: where best-of-n's analytic KL bound overstates its exact KL on the pool by more
    than `threshold` nats at some n (`bon.kl_estimators.bound_gap`): low-entropy prompts, many ties."""
    from bon.kl_estimators import bound_gap
    from scaling.bon_samples import curves, n_values, ranking

    rows = []
    for key, proxy, gold, _, _ in curves(df, pool_size):
        _, rank = ranking(proxy, objective, uwo_lambda)
        g = bound_gap(rank, n_values(gold.shape[1]), threshold=threshold)
        for p in range(rank.shape[0]):
            j = int(g.gap[p].argmax())
            rows.append(
                {
                    **key,
                    "prompt": p,
                    "loose": bool(g.any_loose[p]),
                    "max_gap": float(g.gap[p, j]),
                    "at_n": float(g.ns[j]),
                    "tie_gap": float(g.tie_gap[p, j]),
                    "tie_fraction": float(g.tie_fraction[p]),
                    "entropy": float(g.entropy[p]),
                }
            )
    return rows


def format_bound(rows: list[dict], threshold: float = 0.1) -> str:
    """One line: how many prompts have a loose bound, and the worst."""
    loose = [r for r in rows if r["loose"]]
    if not loose:
        return f"kl bound: within {threshold:g} nats of kl_exact on every prompt (below the pool-size saturation)"
    worst = max(loose, key=lambda r: r["max_gap"])
    return (
        f"kl bound loose (> {threshold:g} nats above kl_exact at some n) on {len(loose)} of {len(rows)} prompts;"
        f" worst: prompt {worst['prompt']}, {worst['max_gap']:.2f} nats at n = {worst['at_n']:g}"
        f" ({worst['tie_gap']:.2f} of it from ties; {100 * worst['tie_fraction']:.0f}% of its responses tie)"
        " (per prompt in --json: bound_gap)"
    )
