"""Gao, Schulman & Hilton (2022)'s results, each checked exactly on a points table and its fits.

`gao_checks(points, fits, bon_prompts=None, proxies=None)` returns criteria.json's rows {check, target,
measured, statistic, passed} (`common.row`; passed None: this data cannot decide, the reason in
`measured`). Every check reads the proxy ladder: the single-objective points (best-of-n: the max rule's),
the largest data size of each method and the largest policy; RL at the smallest kl_coef. "Curve":
best-of-n's mean over prompts at each n; RL's mean over seeds at each evaluation (the steps every seed
evaluated). "Smaller half": the ceil(n/2) smallest proxies. One significance level, P_MAX = 0.05, one-sided.

Fits (`fits`):
- bon_r2, rl_r2: every proxy's law has unweighted R² >= 0.9 (best-of-n) / 0.8 (RL) on its curve;
- rl_peak_inside: smaller half, the RL law has a peak inside the data (beta > 0, d* < the curve's d_max);
- bon_advance, rl_advance: the law fitted on d <= 0.6 d_max predicts the rest of the curve with RMSE /
  (max - min of the whole curve) <= 0.25, every proxy.
Over-optimization (`overopt`):
- bon_overopt: smaller half, the curve peaks before its largest n and the gold there is > 2 SE below the
  peak, the SE of the per-prompt paired difference (the last point's SE without per-prompt rows);
- rl_overopt: smaller half, each seed's peak region (3 evaluations around the other seeds' smoothed
  peak) minus its last evaluation > 0 over seeds, one-sided t-test p < 0.05; one seed: not judged.
Across sizes (`sizes`):
- best_gold_order, peak_later: best observed best-of-n gold and the fitted d* (no peak: d* = inf) rise
  with rm_params, one-sided exact permutation test of Spearman's rho p < 0.05 (4 sizes: only the perfect
  order passes);
- alpha_bon_slope > 0, beta_bon_slope < 0, beta_rl_slope < 0 in log10(rm_params): the 95% interval
  (cluster bootstrap over prompts; over seeds for RL) excludes 0; not judged with fewer than 5 sizes;
- alpha_rl_shared: the nested F-test of one alpha against one per size on the RL curves does not reject;
- data_size: best gold rises with data_size (permutation test) for every proxy with >= 4 data sizes;
- val_loss: Spearman(validation loss, best best-of-n gold), judged with >= 4 proxies (p < 0.05, "less").
At matched KL (`kl`):
- kl_efficiency: best-of-n minus RL gold, mean over 8 KLs in [0.25, 1] x the smaller largest KL, >= 0
  for >= 75% of proxies;
- rl_peak_kl_later: smaller half, RL's observed peak KL >= best-of-n's (best-of-n's KL the analytic bound);
- penalty_early_stopping (more than one kl_coef): >= 90% of penalised evaluations within 2 combined SE of
  the unpenalised gold-vs-KL curve at the same KL;
- rl_reaches_bon_kl: every proxy's RL run reaches the largest best-of-n KL.
The checks judge one replicate: a table with several values of `replicate` gets one undecided row
(`criteria.replicates.checks_by_replicate` judges each).
"""

from __future__ import annotations

import pandas as pd

from criteria.common import R2_BON, R2_RL, row
from criteria.fits import advance_check, r2_check, rl_peak_check
from criteria.kl import kl_efficiency_check, penalty_check, reaches_check, rl_peak_kl_check
from criteria.overopt import (
    bon_overopt_check,
    curve_drop,
    drop_test,
    rl_overopt_check,
    seed_drop,
    seed_drops,
)
from criteria.sizes import (
    best_gold_check,
    data_size_check,
    peak_later_check,
    shared_alpha_check,
    slope_check,
    val_loss_check,
)
from scaling.ladder import build_ladder, rl_rows

__all__ = [
    "R2_BON",
    "R2_RL",
    "check_lines",
    "curve_drop",
    "drop_test",
    "gao_checks",
    "seed_drop",
    "seed_drops",
]


def gao_checks(points: pd.DataFrame, fits: dict, bon_prompts=None, proxies=None) -> list[dict]:
    """Every check of the module docstring on `points` and its `fit_table` output `fits` (fitted with
    d_cut_frac=0.6 for the advance checks). bon_prompts: the per-prompt best-of-n rows (paired SE for
    bon_overopt) or None. proxies: the proxy summary table (val_loss) or None."""
    if "replicate" in points.columns and points["replicate"].nunique() > 1:
        reps = ", ".join(str(v) for v in sorted(points["replicate"].dropna().unique()))
        return [row("one replicate", "the checks judge one replicate", f"replicates {reps}: judge each alone", None)]
    L = build_ladder(points, fits, bon_prompts, proxies)
    if L is None:
        return [row("proxy ladder", "at least 2 proxy sizes", "fewer than 2 sizes", None)]
    rl = rl_rows(L.lad, L.kc)
    return [
        r2_check("bon_r2", L.bon_fits, sorted(L.bon), R2_BON, "best-of-n"),
        r2_check("rl_r2", L.rl_fits, L.rl_sizes, R2_RL, f"RL (kl_coef {L.kc:g})"),
        rl_peak_check(L),
        advance_check("bon_advance", L, "bon"),
        advance_check("rl_advance", L, "rl", L.kc),
        bon_overopt_check(L),
        rl_overopt_check(L, rl),
        best_gold_check(L),
        peak_later_check(L),
        slope_check(L, "bon", "alpha", +1),
        slope_check(L, "bon", "beta", -1),
        slope_check(L, "rl", "beta", -1),
        shared_alpha_check(L),
        kl_efficiency_check(L),
        rl_peak_kl_check(L),
        penalty_check(L),
        data_size_check(points),
        val_loss_check(L),
        reaches_check(L, rl),
    ]


def check_lines(checks: list[dict]) -> list[str]:
    """One printed line a check: PASS/FAIL/n/a, name, measured."""
    mark = {True: "PASS", False: "FAIL", None: "n/a "}
    return [f"{mark[c['passed']]} {c['check']:<22} {c['measured']}" for c in checks]
