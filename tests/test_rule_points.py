"""Selection rules as points rows and the best-n predictions (bon/rule_points.py, study/selection.py).

References: enumeration of every n-tuple drawn from a small pool (best-of-n) mixed over a truncated
Poisson for Best-of-Poisson; a fine grid search of the exact expected gold for the oracle; the
definitions of the relative grids; hand-made curves for the matched-KL table.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest

from bon.pools import n_grid
from bon.rule_points import SelectionConfig, absolute_beta, predictions, rule_points, spread, validate
from bon.selection import expected, kl_exact, selection_probs
from core.errors import UsageError
from study.selection import matched_kl, write_selection


def _enumerated_best_of(score, n):
    """Selection probabilities of best-of-n with replacement by enumerating all N^n tuples (ties: uniform)."""
    N = len(score)
    p = np.zeros(N)
    for tup in itertools.product(range(N), repeat=n):
        best = max(score[i] for i in tup)
        winners = sorted({i for i in tup if score[i] == best})
        # uniform tie-breaking among the tied draws: each draw equally likely to be kept
        kept = [i for i in tup if score[i] == best]
        for i in kept:
            p[i] += 1.0 / len(kept) / N**n
        assert winners
    return p


def test_poisson_rows_match_a_truncated_mixture_of_enumerated_best_of_n():
    score = np.array([[0.0, 1.0, 1.0, 2.0, 0.5]])
    gold = np.array([[0.3, -0.2, 0.9, -1.0, 0.4]])
    mu = 0.7
    mix = sum(math.exp(-mu) * mu**k / math.factorial(k) * _enumerated_best_of(score[0], k + 1) for k in range(8))
    cfg = SelectionConfig(poisson_mus=(mu,))
    row = rule_points("poisson", score, gold, [1, 2], cfg, rm_name="x").iloc[0]
    assert row["rule"] == "poisson" and row["param"] == "mu" and row["param_value"] == mu
    assert row["gold"] == pytest.approx(float(mix @ gold[0]), abs=1e-5)
    ref_kl = float(np.sum(mix * np.log(mix * 5)))
    assert row["kl_exact"] == pytest.approx(ref_kl, abs=1e-4) and row["kl"] == row["kl_exact"]
    assert row["rm_name"] == "x" and np.isnan(row["n"])


def test_regularized_and_soft_rows_use_relative_scales():
    rng = np.random.default_rng(0)
    score, gold, lp = rng.normal(size=(3, 40)) * 2, rng.normal(size=(3, 40)), -5 + rng.normal(size=(3, 40)) * 3
    cfg = SelectionConfig(regularized_beta=0.5, soft_temperatures=(0.5, 2.0), soft_n=8)
    beta = absolute_beta(cfg, score, lp)
    assert beta == pytest.approx(0.5 * np.median(score.std(axis=1)) / np.median(lp.std(axis=1)))
    reg = rule_points("regularized", score, gold, [1, 4, 40], cfg, ref_logprob=lp)
    p = selection_probs("max", score + beta * lp, 4)
    assert reg["gold"].iloc[1] == pytest.approx(float(expected(p, gold).mean()))
    assert reg["beta"].iloc[0] == pytest.approx(beta) and list(reg["n"]) == [1, 4, 40]
    soft = rule_points("soft", score, gold, [1], cfg)
    np.testing.assert_allclose(soft["param_value"], np.array([0.5, 2.0]) * spread(score))
    assert (soft["n"] == 8).all() and soft["kl"].iloc[0] > soft["kl"].iloc[1] > 0
    with pytest.raises(UsageError, match="reference log-probs"):
        rule_points("regularized", score, gold, [1], cfg)


def _pool(seed=0, P=16, N=256):
    rng = np.random.default_rng(seed)
    true = rng.normal(size=(P, N))
    score = true + 0.5 * rng.normal(size=(P, N)) + 0.4 * np.maximum(true, 0) ** 2
    gold = true - 0.3 * np.maximum(score - 1.0, 0) ** 2  # rises, then falls with n
    return score, gold


def test_oracle_finds_the_grid_maximum_and_full_labels_make_the_hedge_the_oracle():
    score, gold = _pool()
    cfg = SelectionConfig(hedge_rules=("max", "poisson"), calibration_size=256, n_small=8)
    pr = predictions(score, gold, cfg)
    assert set(zip(pr["rule"], pr["predictor"], strict=True)) == {
        ("max", "hedge"),
        ("max", "law"),
        ("poisson", "hedge"),
    }
    for rule in ("max", "poisson"):
        grid = np.geomspace(1 if rule == "max" else 0.05, 256, 2001)
        j = [float(expected(selection_probs(rule, score, v), gold).mean()) for v in grid]
        row = pr[(pr["rule"] == rule) & (pr["predictor"] == "hedge")].iloc[0]
        assert row["oracle_gold"] == pytest.approx(max(j), abs=1e-6)
        assert row["oracle"] == pytest.approx(grid[int(np.argmax(j))], rel=0.02)
        assert row["predicted"] == pytest.approx(row["oracle"], rel=1e-6) and abs(row["regret"]) < 1e-9
        p = selection_probs(rule, score, row["oracle"])
        assert row["oracle_kl_exact"] == pytest.approx(float(kl_exact(p).mean()))
    small = predictions(score, gold, SelectionConfig(hedge_rules=("max",), calibration_size=8))
    assert (small["regret"] >= -1e-9).all() and (small["calibration_size"] == 8).all()


def test_validate_refuses_bad_configs():
    for bad, msg in (
        (SelectionConfig(rules=("max",)), "selection.rules"),
        (SelectionConfig(hedge_rules=("soft", "soft")), "selection.hedge_rules"),
        (SelectionConfig(soft_n=10_000), "soft_n"),
        (SelectionConfig(soft_temperatures=()), "soft_temperatures"),
        (SelectionConfig(poisson_mus=(0.0,)), "poisson_mus"),
        (SelectionConfig(soft_temperatures=(1.0, float("inf"))), "soft_temperatures"),
        (SelectionConfig(calibration_size=0), "calibration_size"),
        (SelectionConfig(n_small=2), "n_small"),
        (SelectionConfig(regularized_beta=-1.0), "regularized_beta"),
    ):
        with pytest.raises(UsageError, match=msg):
            validate(bad, 4096)
    validate(SelectionConfig(), 4096)
    validate(SelectionConfig(), 4)  # the default grids fit any pool
    mus = rule_points("poisson", np.arange(8.0)[None], np.zeros((1, 8)), [1], SelectionConfig())["param_value"]
    assert list(mus) == [0.125, 0.25, 0.5, 1, 2, 4, 8]


def test_matched_kl_interpolates_in_sqrt_kl_over_the_common_range():
    d = np.linspace(0, 2, 11)
    curves = {"max": (d**2, 1.0 * d), "soft": (d[:9] ** 2, 0.5 + 0.0 * d[:9])}
    rows = matched_kl(curves, n_kl=4)
    assert len(rows) == 4 and rows[-1]["kl_exact"] == pytest.approx(d[8] ** 2)
    for r in rows:
        assert r["max"] == pytest.approx(np.sqrt(r["kl_exact"]))
        assert r["best"] == ("max" if r["max"] > 0.5 else "soft")


def test_write_selection_fits_each_rule_on_kl_exact(tmp_path):
    score, gold = _pool(P=8, N=128)
    ns = n_grid(128)
    cfg = SelectionConfig(poisson_mus=tuple(2.0 ** np.arange(-3, 8)))
    from bon.estimator import bon_points, expected_best_of_n

    est = expected_best_of_n(score, gold, ns)
    mx = bon_points(est, rm_params=100, objective="single")
    mx = mx.rename(columns={"kl_exact": "kl_est", "kl_exact_se": "kl_est_se"})  # an older store's names
    po = rule_points("poisson", score, gold, ns, cfg, rm_params=100, objective="single")
    sel = write_selection(tmp_path, pd.concat([mx, po], ignore_index=True), None, n_boot=0)
    assert sel is not None and json.loads((tmp_path / "selection.json").read_text())["kl"].startswith("kl_exact")
    assert sorted(f["rule"] for f in sel["fits"]) == ["max", "poisson"]
    assert sel["matched_kl"] and set(sel["matched_kl"][0]) >= {"kl_exact", "max", "poisson", "best"}
