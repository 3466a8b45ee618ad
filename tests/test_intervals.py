"""Unit-level rows and the interval each fit row resamples (scaling.groups, scaling.intervals), against
independent references: the mean-curve fit, per-seed least squares, plain loops over resamples and seeds."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bon.estimator import bon_prompt_rows, expected_best_of_n
from bon.pools import n_grid
from scaling.bootstrap import boot_linear, boot_linear_clusters, cluster_counts, profile_power, se2_ratio
from scaling.fitting import fit_table
from scaling.groups import make_groups
from scaling.intervals import boot_draws, cluster_robust_se
from scaling.laws import LAWS, bon_law, rl_law
from scaling.least_squares import fit_stats


def bon_estimate(seed=0, P=64, N=128):
    """Best-of-n on P prompts of N (proxy, gold) pairs: gold = a concave function of the proxy + noise."""
    rng = np.random.default_rng(seed)
    proxy = rng.normal(size=(P, N))
    gold = proxy - 0.2 * proxy**2 + rng.normal(size=(P, N))
    return expected_best_of_n(proxy, gold, n_grid(N))


def mean_table(est, **cols):
    """Today's points table: one row a n, the mean over prompts and its SE."""
    return pd.DataFrame({"method": "bon", "n": est.ns, "kl": est.kl, "gold": est.gold, "gold_se": est.gold_se, **cols})


# ---------------------------------------------------------------- unit rows: the same fit, the curve's statistics


def test_prompt_rows_fit_equals_the_mean_curve_fit():
    est = bon_estimate()
    rows = bon_prompt_rows(est, rm_params=1e6)
    unit = fit_table(rows, n_boot=200)["fits"][0]
    mean = fit_table(mean_table(est, rm_params=1e6), n_boot=200)["fits"][0]
    assert abs(unit["alpha"] - mean["alpha"]) < 1e-9 and abs(unit["beta"] - mean["beta"]) < 1e-9
    # the statistics describe the mean curve: the same numbers as on the mean table, and 1 point a n
    for k in ("r2", "r2_unweighted", "rmse", "aic", "d_max", "d_peak", "gold_peak"):
        assert unit[k] == pytest.approx(mean[k], rel=1e-9, abs=1e-12), k
    assert unit["n_points"] == mean["n_points"] == len(est.ns)
    assert (unit["interval"], mean["interval"]) == ("prompts", "points")
    assert unit["message"] == "ok; bootstrap over 64 prompts (weights re-estimated in each resample)"
    assert mean["message"] == "ok; bootstrap over points"
    # an independent R^2: weighted, of the curve, with the fitted law
    d = np.sqrt(est.kl)
    resid = est.gold - bon_law(d, unit["alpha"], unit["beta"])
    assert unit["r2"] == pytest.approx(fit_stats(est.gold, resid, 1 / est.gold_se**2, 2)["r2"], rel=1e-9)


def test_prompt_rows_advance_rows_equal_the_mean_curves():
    est = bon_estimate(1)
    unit = fit_table(bon_prompt_rows(est), n_boot=0, d_cut=1.2)["advance"][0]
    mean = fit_table(mean_table(est), n_boot=0, d_cut=1.2)["advance"][0]
    assert (unit["n_fit"], unit["n_test"]) == (mean["n_fit"], mean["n_test"]) == (6, 8)  # curve points, not rows
    keys = ("alpha", "beta", "rmse_test", "nrmse_test", "curve_range", "max_abs_err_test", "rmse_test_full")
    for k in (*keys, "d_peak_full"):
        assert unit[k] == pytest.approx(mean[k], rel=1e-9, abs=1e-12), k


def rl_seeds(rng, k=3, steps=12, shared=True, gold_se=None):
    """k RL seeds evaluated at the same steps; kl per seed (shared grid or jittered), a seed-level offset."""
    rows = []
    for s in range(k):
        kl = np.linspace(0.0, 9.0, steps) * (1.0 if shared else rng.uniform(0.7, 1.3))
        d = np.sqrt(kl)
        gold = rl_law(d, 0.8 + rng.normal(0, 0.1), 0.3) + rng.normal(0, 0.03, steps)
        rows.append(pd.DataFrame({"method": "rl", "seed": s, "step": np.arange(steps) * 10, "kl": kl, "gold": gold}))
    df = pd.concat(rows, ignore_index=True)
    if gold_se is not None:
        df["gold_se"] = gold_se[df["step"] // 10]
    return df


def test_rl_statistics_describe_the_step_means():
    df = rl_seeds(np.random.default_rng(2), shared=False)
    row = fit_table(df, n_boot=0)["fits"][0]
    curve = df[df["kl"] > 0].groupby("step").agg(kl=("kl", "mean"), gold=("gold", "mean"))
    d = np.sqrt(curve["kl"].to_numpy())
    resid = curve["gold"].to_numpy() - rl_law(d, row["alpha"], row["beta"])
    ref = fit_stats(curve["gold"].to_numpy(), resid, np.ones(len(d)), 2)
    assert row["n_points"] == 11  # step 0 (d = 0) is dropped by the RL law
    assert row["r2"] == pytest.approx(ref["r2"]) and row["rmse"] == pytest.approx(ref["rmse"])
    assert row["aic"] == pytest.approx(ref["aic"])


# ---------------------------------------------------------------- the prompt bootstrap against a loop


def test_cluster_bootstrap_with_reestimated_weights_matches_a_loop():
    """Each resample: the drawn prompts written out row by row, gold_se recomputed from them (sd / sqrt(P)),
    the weighted fit refitted with np.linalg.lstsq."""
    est = bon_estimate(3, P=12, N=32)
    rows = bon_prompt_rows(est)
    g = make_groups(rows, [], "auto")[0]
    assert g.interval == "prompts" and g.reweight
    cc = cluster_counts(np.random.default_rng(0), 12, 40)
    ratio = se2_ratio(g.y, g.clusters, g.levels, cc)
    X = LAWS["bon"].basis(g.d)
    got = boot_linear_clusters(X, g.y, g.w, g.clusters, cc, g.levels, ratio)
    fixed = boot_linear_clusters(X, g.y, g.w, g.clusters, cc)
    per_prompt = est.per_prompt["gold"]  # [P, M]
    Xn = LAWS["bon"].basis(np.sqrt(est.kl))
    for b in range(40):
        drawn = np.repeat(np.arange(12), cc[b].astype(int))
        y = per_prompt[drawn]  # [P, M]: the resample's prompts
        w = 1.0 / (y.std(axis=0, ddof=1) ** 2 / len(drawn))
        Xr, yr, wr = np.tile(Xn, (len(drawn), 1)), y.ravel(), np.tile(w, len(drawn))
        ref, *_ = np.linalg.lstsq(Xr * np.sqrt(wr)[:, None], yr * np.sqrt(wr), rcond=None)
        np.testing.assert_allclose(got[b], ref, rtol=1e-8, atol=1e-10)
        wf = np.tile(1 / est.gold_se**2, len(drawn))  # the sample's weights held fixed
        ref_f, *_ = np.linalg.lstsq(Xr * np.sqrt(wf)[:, None], yr * np.sqrt(wf), rcond=None)
        np.testing.assert_allclose(fixed[b], ref_f, rtol=1e-8, atol=1e-10)
    # the per-cluster sums give the same numbers as the per-row counts
    np.testing.assert_allclose(fixed, boot_linear(X, g.y, g.w, cc[:, g.clusters]), rtol=1e-9, atol=1e-12)


def test_power_law_prompt_bootstrap_reestimates_the_weights_too():
    """The nonlinear form: each resample is the gamma profile on the rows' counts times re-estimated weights."""
    g = make_groups(bon_prompt_rows(bon_estimate(13, P=10, N=32)), [], "power")[0]
    assert g.interval == "prompts" and g.reweight
    draws = boot_draws(g, 8, np.random.default_rng(1))
    cc = cluster_counts(np.random.default_rng(1), 10, 8)
    ratio = se2_ratio(g.y, g.clusters, g.levels, cc)
    ref = profile_power(g.d, g.y, cc[:, g.clusters] * g.w * ratio[:, g.levels])
    np.testing.assert_allclose(draws, ref, rtol=1e-6)  # a golden-section search: rounding moves its last steps
    row = fit_table(bon_prompt_rows(bon_estimate(13, P=10, N=32)), method="power", n_boot=50)["fits"][0]
    assert row["interval"] == "prompts" and row["alpha_ci"] is not None


def test_weights_are_reestimated_only_when_gold_se_is_the_per_n_se():
    rows = bon_prompt_rows(bon_estimate(4, P=8, N=32))
    assert make_groups(rows, [], "auto")[0].reweight
    rows["gold_se"] *= np.random.default_rng(0).uniform(0.9, 1.1, len(rows))  # not one SE a n any more
    g = make_groups(rows, [], "auto")[0]
    assert g.interval == "prompts" and not g.reweight
    row = fit_table(rows, n_boot=50)["fits"][0]
    assert row["message"] == "ok; bootstrap over 8 prompts"


# ---------------------------------------------------------------- seeds: the t interval


def test_seed_interval_is_the_spread_of_per_seed_fits_on_a_shared_grid():
    rng = np.random.default_rng(5)
    for k, se in ((3, None), (4, None), (3, rng.uniform(0.01, 0.1, 12))):
        df = rl_seeds(rng, k=k, gold_se=se)
        row = fit_table(df, n_boot=100)["fits"][0]
        sub = df[df["kl"] > 0]
        w = np.ones(len(sub)) if se is None else 1 / sub["gold_se"].to_numpy() ** 2
        X = LAWS["rl"].basis(np.sqrt(sub["kl"].to_numpy()))
        sw = np.sqrt(w)
        est = []
        for s in range(k):
            m = (sub["seed"] == s).to_numpy()
            est.append(np.linalg.lstsq(X[m] * sw[m, None], sub["gold"].to_numpy()[m] * sw[m], rcond=None)[0])
        est = np.array(est)
        pooled = est.mean(axis=0)  # equal designs and weights: the pooled fit is the mean of the seeds'
        half = stats.t.ppf(0.975, k - 1) * est.std(axis=0, ddof=1) / math.sqrt(k)
        assert row["interval"] == "seeds" and f"t interval over {k} seeds" in row["message"]
        np.testing.assert_allclose([row["alpha"], row["beta"]], pooled, rtol=1e-9)
        np.testing.assert_allclose(row["alpha_ci"], [pooled[0] - half[0], pooled[0] + half[0]], rtol=1e-9)
        np.testing.assert_allclose(row["beta_ci"], [pooled[1] - half[1], pooled[1] + half[1]], rtol=1e-9)


def test_cluster_robust_se_against_a_plain_loop():
    """Unequal designs: the sandwich written out seed by seed and row by row."""
    rng = np.random.default_rng(6)
    n = 30
    seeds = rng.integers(0, 4, n)
    J, w, r = rng.normal(size=(n, 2)), rng.uniform(0.5, 2, n), rng.normal(size=n)
    bread = np.linalg.inv(sum(w[i] * np.outer(J[i], J[i]) for i in range(n)))
    meat = np.zeros((2, 2))
    for s in range(4):
        u = sum(J[i] * w[i] * r[i] for i in range(n) if seeds[i] == s)
        meat += np.outer(u, u)
    ref = np.sqrt(np.diag(4 / 3 * bread @ meat @ bread))
    np.testing.assert_allclose(cluster_robust_se(J, w, r, seeds), ref, rtol=1e-12)


def test_interval_rules():
    rng = np.random.default_rng(7)
    df = rl_seeds(rng, k=3)
    kind = lambda d, **kw: fit_table(d, n_boot=30, **kw)["fits"][0]
    assert kind(df)["interval"] == "seeds"
    assert kind(df, resample="points")["interval"] == "points"
    forced = kind(df, resample="seed")  # a column forced as bootstrap clusters
    assert forced["interval"] == "clusters" and forced["message"] == "ok; bootstrap over 3 seeds"
    assert kind(df[df["seed"] == 0])["interval"] == "points"  # one seed
    few = df[(df["seed"] != 1) | (df["step"] <= 20)]  # seed 1 has 2 points at d > 0: not more than 2 params
    assert kind(few)["interval"] == "points"
    two = df[df["seed"] < 2]
    assert kind(two)["interval"] == "seeds" and "t interval over 2 seeds" in kind(two)["message"]
    assert kind(df.assign(prompt=df["seed"] % 2))["interval"] == "seeds"  # 2 prompts: too few, seeds next
    assert kind(df.assign(prompt=df["step"] % 3))["interval"] == "prompts"  # 3 prompts: prompts first
    assert fit_table(df, n_boot=0)["fits"][0]["interval"] is None  # no interval computed


# ---------------------------------------------------------------- the joint fit


def test_joint_fit_intervals_by_unit():
    rng = np.random.default_rng(8)
    a = rl_seeds(rng, k=3).assign(rm_params=1e5)
    b = rl_seeds(rng, k=3).assign(rm_params=1e6)
    rows = fit_table(pd.concat([a, b]), shared_alpha=True, n_boot=100)["fits"]
    assert [r["interval"] for r in rows] == ["seeds", "seeds"] and "shared by the groups" in rows[0]["message"]
    # the independent reference: the joint fit on each seed's rows of both groups, then the t formula
    both = pd.concat([a, b])
    both = both[both["kl"] > 0]
    est = []
    for s in range(3):
        sub = both[both["seed"] == s]
        B = LAWS["rl"].basis(np.sqrt(sub["kl"].to_numpy()))
        X = np.zeros((len(sub), 3))
        X[:, 0] = B[:, 0]
        big = (sub["rm_params"] == 1e6).to_numpy()
        X[~big, 1], X[big, 2] = B[~big, 1], B[big, 1]
        est.append(np.linalg.lstsq(X, sub["gold"].to_numpy(), rcond=None)[0])
    est = np.array(est)
    half = stats.t.ppf(0.975, 2) * est.std(axis=0, ddof=1) / math.sqrt(3)
    np.testing.assert_allclose(rows[0]["alpha"], est[:, 0].mean(), rtol=1e-9)
    np.testing.assert_allclose(rows[0]["alpha_ci"], est[:, 0].mean() + np.array([-1, 1]) * half[0], rtol=1e-9)
    np.testing.assert_allclose(rows[1]["beta_ci"], est[:, 2].mean() + np.array([-1, 1]) * half[2], rtol=1e-9)
    # different seed ids: no seed is shared, the joint intervals bootstrap points
    rows = fit_table(pd.concat([a, b.assign(seed=b["seed"] + 10)]), shared_alpha=True, n_boot=100)["fits"]
    assert [r["interval"] for r in rows] == ["points", "points"]
    assert "bootstrap over points within each group" in rows[0]["message"]
    # prompts: stratified cluster bootstrap over each group's prompts
    p1, p2 = bon_prompt_rows(bon_estimate(9, P=16, N=64)), bon_prompt_rows(bon_estimate(10, P=16, N=64))
    rows = fit_table(pd.concat([p1.assign(rm_params=1e5), p2.assign(rm_params=1e6)]), shared_alpha=True, n_boot=100)
    assert [r["interval"] for r in rows["fits"]] == ["prompts", "prompts"]
    assert "bootstrap over 16 prompts within each group (weights re-estimated" in rows["fits"][0]["message"]


# ---------------------------------------------------------------- replicates


def test_replicates_are_never_pooled():
    est0, est1 = bon_estimate(11, P=16, N=64), bon_estimate(12, P=16, N=64)
    rows = pd.concat(
        [
            bon_prompt_rows(est0, rm_params=s, replicate=0)
            if i == 0
            else bon_prompt_rows(est1, rm_params=s, replicate=1)
            for i in (0, 1)
            for s in (1e5, 1e6)
        ]
    )
    out = fit_table(rows, n_boot=0)
    assert sorted((r["replicate"], r["rm_params"]) for r in out["fits"]) == [(0, 1e5), (0, 1e6), (1, 1e5), (1, 1e6)]
    one = fit_table(bon_prompt_rows(est0), n_boot=0)["fits"][0]
    assert next(r for r in out["fits"] if r["replicate"] == 0)["alpha"] == pytest.approx(one["alpha"])
    assert {s["replicate"] for s in out["scaling"]} == {0, 1}  # coefficient scaling per replicate too
