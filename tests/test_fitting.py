"""Law fitting against independent references (scipy curve_fit / least_squares / linregress, plain loops)
and fixed-seed statistical tests: recovery, interval coverage over many repeats, AIC model choice."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from core.errors import UsageError
from scaling.bootstrap import boot_counts, boot_joint, boot_linear, boot_power
from scaling.coef_scaling import predict
from scaling.fitting import fit_table
from scaling.laws import LAWS, bon_law, peak, power_law, rl_law
from scaling.least_squares import fit_law, fit_stats

LAW_FN = {"bon": bon_law, "rl": rl_law}


def curve(rng, method, alpha, beta, n=30, sd=0.05, d_max=3.0, **cols):
    """Points of one noisy curve: d uniform in (0.05, d_max], gold = law(d) + N(0, sd)."""
    d = rng.uniform(0.05, d_max, n)
    gold = LAW_FN[method](d, alpha, beta) + rng.normal(0.0, sd, n)
    return pd.DataFrame({"method": method, "kl": d**2, "gold": gold, **cols})


def binomial_band(p, repeats, z=3.0):
    """A +-z sigma band for a coverage rate measured over `repeats` independent repeats."""
    return z * math.sqrt(p * (1 - p) / repeats)


# ---------------------------------------------------------------- against other libraries


@pytest.mark.parametrize("law", ["bon", "rl", "rl_log1p", "power"])
def test_fit_matches_curve_fit(law):
    rng = np.random.default_rng(1)
    d = rng.uniform(0.1, 4.0, 40)
    truth = {"bon": (1.0, 0.3), "rl": (0.8, 0.3), "rl_log1p": (1.0, 0.4), "power": (1.0, 0.3, 0.6)}[law]
    y = LAWS[law].fn(d, *truth) + rng.normal(0, 0.03, len(d))
    fit = fit_law(law, d, y)
    p0 = list(truth) if law == "power" else None
    popt, pcov = optimize.curve_fit(LAWS[law].fn, d, y, p0=p0, maxfev=20000)
    assert fit.converged
    np.testing.assert_allclose(fit.params, popt, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(fit.cov, pcov, rtol=1e-3)


def test_weighted_fit_matches_curve_fit_sigma():
    rng = np.random.default_rng(2)
    d = rng.uniform(0.1, 3.0, 30)
    se = rng.uniform(0.01, 0.2, 30)
    y = bon_law(d, 1.0, 0.3) + rng.normal(0, se)
    fit = fit_law("bon", d, y, 1.0 / se**2)
    popt, pcov = optimize.curve_fit(bon_law, d, y, sigma=se)
    np.testing.assert_allclose(fit.params, popt, rtol=1e-7)
    np.testing.assert_allclose(fit.cov, pcov, rtol=1e-5)


def test_vectorised_bootstrap_matches_a_loop_of_refits():
    rng = np.random.default_rng(3)
    d = rng.uniform(0.1, 3.0, 12)
    y = rl_law(d, 0.8, 0.3) + rng.normal(0, 0.05, 12)
    w = rng.uniform(0.5, 2.0, 12)
    X = LAWS["rl"].basis(d)
    clusters = np.repeat(np.arange(4), 3)
    counts = boot_counts(np.random.default_rng(0), clusters, 50)
    got = boot_linear(X, y, w, counts)
    for b in range(50):
        idx = np.repeat(np.arange(12), counts[b].astype(int))  # the resample, written out point by point
        ref, *_ = np.linalg.lstsq(X[idx] * np.sqrt(w[idx])[:, None], y[idx] * np.sqrt(w[idx]), rcond=None)
        np.testing.assert_allclose(got[b], ref, rtol=1e-8, atol=1e-10)


def test_vectorised_power_bootstrap_matches_curve_fit():
    """The profile (grid + golden section over gamma) finds the least-squares optimum of each resample:
    curve_fit started from the truth reaches the same parameters and no lower residual sum."""
    rng = np.random.default_rng(14)
    d = rng.uniform(0.1, 4.0, 30)
    y = power_law(d, 1.0, 0.3, 0.6) + rng.normal(0, 0.05, 30)
    counts = boot_counts(np.random.default_rng(0), np.arange(30), 20)
    got = boot_power(d, y, np.ones(30), counts)
    for b in range(20):
        idx = np.repeat(np.arange(30), counts[b].astype(int))
        ref, _ = optimize.curve_fit(power_law, d[idx], y[idx], p0=[1.0, 0.3, 0.6], maxfev=20000)
        rss = lambda th, idx=idx: np.sum((y[idx] - power_law(d[idx], *th)) ** 2)
        assert rss(got[b]) <= rss(ref) * (1 + 1e-9)
        np.testing.assert_allclose(got[b], ref, rtol=1e-4)


def test_joint_bootstrap_matches_dense_solve():
    rng = np.random.default_rng(15)
    member = np.repeat(np.arange(4), [9, 12, 7, 10])
    d = rng.uniform(0.1, 3.0, len(member))
    x0, x1 = LAWS["rl"].basis(d).T
    y, w = rng.normal(size=len(d)), rng.uniform(0.5, 2.0, len(d))
    X = np.zeros((len(d), 5))
    X[:, 0] = x0
    X[np.arange(len(d)), 1 + member] = x1
    counts = boot_counts(np.random.default_rng(1), np.arange(len(d)), 30)
    got = boot_joint(x0, x1, member, y, w, counts)
    for b in range(30):
        sw = np.sqrt(w * counts[b])
        ref, *_ = np.linalg.lstsq(X * sw[:, None], y * sw, rcond=None)
        np.testing.assert_allclose(got[b], ref, rtol=1e-8, atol=1e-10)


def test_boot_counts_resample_whole_clusters():
    clusters = np.array([0, 0, 1, 1, 1, 2, 3, 3])
    counts = boot_counts(np.random.default_rng(0), clusters, 200)
    for c in range(4):
        members = counts[:, clusters == c]
        assert (members == members[:, :1]).all()  # a cluster is drawn whole or not at all
    per_cluster = counts[:, [0, 2, 5, 6]]
    np.testing.assert_array_equal(per_cluster.sum(axis=1), 4)  # 4 clusters drawn each time
    points = boot_counts(np.random.default_rng(0), np.arange(8), 40_000)
    np.testing.assert_array_equal(points.sum(axis=1), 8)
    # with-replacement draws: each count is Binomial(8, 1/8), mean 1 and variance 7/8 (5-sigma tolerance)
    np.testing.assert_allclose(points.mean(axis=0), 1.0, atol=5 * math.sqrt(7 / 8 / 40_000))
    np.testing.assert_allclose(points.var(axis=0), 7 / 8, atol=0.03)


def test_aic_is_the_gaussian_likelihood():
    rng = np.random.default_rng(4)
    y = rng.normal(size=25)
    resid = rng.normal(0, 0.3, 25)
    s = math.sqrt(np.mean(resid**2))
    loglik = stats.norm.logpdf(resid, scale=s).sum()
    assert fit_stats(y, resid, np.ones(25), 2)["aic"] == pytest.approx(2 * 3 - 2 * loglik)
    w = rng.uniform(0.5, 4.0, 25)  # variances s2 / w_i with s2 at its maximum likelihood value
    s2 = np.sum(w * resid**2) / 25
    loglik_w = stats.norm.logpdf(resid, scale=np.sqrt(s2 / w)).sum()
    assert fit_stats(y, resid, w, 2)["aic"] == pytest.approx(2 * 3 - 2 * loglik_w)


# ---------------------------------------------------------------- recovery and coverage


def test_recovery_several_groups_both_forms():
    rng = np.random.default_rng(5)
    truth = {("bon", 1e5): (0.6, 0.40), ("bon", 1e7): (1.2, 0.25), ("rl", 1e5): (0.5, 0.35), ("rl", 1e7): (0.9, 0.2)}
    df = pd.concat(
        [
            curve(rng, m, a, b, n=60, d_max=4.0, rm_params=s, seed=rng.integers(0, 3, 60))
            for (m, s), (a, b) in truth.items()
        ]
    )
    out = fit_table(df, n_boot=300)
    assert len(out["fits"]) == 4
    for row in out["fits"]:
        a, b = truth[(row["method"], row["rm_params"])]
        assert row["law"] == row["method"] and row["converged"] and row["n_points"] == 60
        assert abs(row["alpha"] - a) < 0.05 and abs(row["beta"] - b) < 0.05
        assert row["alpha_ci"][0] < row["alpha"] < row["alpha_ci"][1]
        assert row["r2"] > 0.8
        assert row["d_peak"] == pytest.approx(peak(row["law"], row)[0])
        sub = df[(df["method"] == row["method"]) & (df["rm_params"] == row["rm_params"])]
        assert row["d_max"] == pytest.approx(np.sqrt(sub["kl"].max()))
    json.dumps(out, allow_nan=False)


def coverage(repeats, n_boot, make):
    """Fraction of repeats whose bootstrap / Jacobian 95% intervals hold the true alpha and beta.

    All repeats go into one table, one group each (column `rep`), so one fit_table call fits them all.
    """
    parts = []
    for r in range(repeats):
        df, truth = make(np.random.default_rng(10_000 + r))
        parts.append(df.assign(rep=r))
    rows = fit_table(pd.concat(parts), by=["rep"], n_boot=n_boot, seed=1)["fits"]
    assert len(rows) == repeats
    hits = {"boot": np.zeros(2), "jac": np.zeros(2)}
    for row in rows:
        for j, k in enumerate(("alpha", "beta")):
            hits["boot"][j] += row[f"{k}_ci"][0] <= truth[j] <= row[f"{k}_ci"][1]
            hits["jac"][j] += row[f"{k}_ci_jac"][0] <= truth[j] <= row[f"{k}_ci_jac"][1]
    return {k: v / repeats for k, v in hits.items()}


@pytest.mark.parametrize("method", ["bon", "rl"])
def test_interval_coverage_point_resampling(method):
    """Jacobian intervals are exact for these linear-in-parameter forms with Gaussian noise: nominal rate
    within a 3-sigma binomial band. The percentile bootstrap on 30 points is known to run a little under
    nominal (about 0.93-0.94 here); it gets 0.03 of slack on the low side."""
    repeats = 250
    cov = coverage(repeats, 300, lambda rng: (curve(rng, method, 1.0, 0.3), (1.0, 0.3)))
    band = binomial_band(0.95, repeats)
    assert np.all(np.abs(cov["jac"] - 0.95) <= band), cov
    assert np.all(cov["boot"] >= 0.95 - 0.03 - band) and np.all(cov["boot"] <= 0.95 + band), cov


def seeds_with_shared_error(rng, n_seeds=12, per_seed=40):
    """Each seed's curve has its own alpha offset (seed-level error): points within a seed are correlated."""
    seed = np.repeat(np.arange(n_seeds), per_seed)
    alpha = 1.0 + rng.normal(0, 0.15, n_seeds)[seed]
    d = rng.uniform(0.05, 3.0, len(seed))
    gold = bon_law(d, alpha, 0.3) + rng.normal(0, 0.03, len(seed))
    return pd.DataFrame({"method": "bon", "kl": d**2, "gold": gold, "seed": seed}), (1.0, 0.3)


def test_seed_intervals_cover_when_seeds_are_correlated():
    """12 seeds, each with its own d draws: the seeds interval (t over seeds, cluster-robust) covers; measured
    0.96 / 0.94. (Before: a bootstrap over the 12 seeds, the same bounds. The spread of per-seed fits alone,
    centred on the pooled fit, covered beta 0.19 of the time here: with per-seed designs that differ, the
    pooled fit projects the seeds' alpha offsets onto beta, which no per-seed fit sees.)"""
    repeats = 250
    cov = coverage(repeats, 300, lambda rng: seeds_with_shared_error(rng))
    band = binomial_band(0.95, repeats)
    assert np.all(cov["boot"] >= 0.95 - 0.03 - band) and np.all(cov["boot"] <= 0.95 + band), cov
    # the same data bootstrapped by points ignores the correlation: alpha's intervals clearly under-cover
    pts = coverage(
        150, 200, lambda rng: (lambda df, t: (df.rename(columns={"seed": "s"}), t))(*seeds_with_shared_error(rng))
    )
    assert pts["boot"][0] < 0.85 and pts["jac"][0] < 0.85, pts


# ---------------------------------------------------------------- joint fit, scaling, prediction


def test_shared_alpha_joint_fit():
    rng = np.random.default_rng(6)
    betas = {1e5: 0.5, 1e6: 0.35, 1e7: 0.2}
    df = pd.concat([curve(rng, "rl", 0.8, b, n=40, d_max=5.0, rm_params=s) for s, b in betas.items()])
    out = fit_table(df, shared_alpha=True, n_boot=200)
    rows = out["fits"]
    assert len({r["alpha"] for r in rows}) == 1 and abs(rows[0]["alpha"] - 0.8) < 0.03
    for r in rows:
        assert abs(r["beta"] - betas[r["rm_params"]]) < 0.03
        assert r["beta_ci"][0] < r["beta"] < r["beta_ci"][1] and "alpha shared by 3 groups" in r["message"]
    # independent reference: scipy least_squares on the stacked residuals of all three curves
    parts = [(np.sqrt(g["kl"].to_numpy()), g["gold"].to_numpy()) for _, g in df.groupby("rm_params")]
    res = optimize.least_squares(
        lambda th: np.concatenate([rl_law(d, th[0], th[1 + j]) - y for j, (d, y) in enumerate(parts)]), np.ones(4)
    )
    got = [rows[0]["alpha"]] + [r["beta"] for r in sorted(rows, key=lambda r: r["rm_params"])]
    np.testing.assert_allclose(got, res.x, rtol=1e-6)
    assert not any(s["coef"] == "alpha" for s in out["scaling"])  # alpha is constant by construction


def scaling_table(rng, sizes, slope_a, slope_b, n=50):
    parts = []
    for s in sizes:
        x = math.log10(s)
        parts.append(curve(rng, "bon", 0.2 + slope_a * x, 0.8 + slope_b * x, n=n, sd=0.02, rm_params=s))
    return pd.concat(parts)


def test_coefficient_scaling_recovers_slope_and_matches_linregress():
    rng = np.random.default_rng(7)
    sizes = [1e4, 3e4, 1e5, 3e5, 1e6, 3e6]
    out = fit_table(scaling_table(rng, sizes, 0.15, -0.08), n_boot=0)
    rows = {s["coef"]: s for s in out["scaling"]}
    assert set(rows) == {"alpha", "beta"} and rows["alpha"]["x"] == "rm_params" and rows["alpha"]["n"] == 6
    assert abs(rows["alpha"]["slope"] - 0.15) < 0.02 and abs(rows["beta"]["slope"] + 0.08) < 0.02
    x = np.log10([r["rm_params"] for r in out["fits"]])
    t = stats.t.ppf(0.975, len(x) - 2)
    for coef in ("alpha", "beta"):
        ref = stats.linregress(x, [r[coef] for r in out["fits"]])
        row = rows[coef]
        assert row["slope"] == pytest.approx(ref.slope) and row["intercept"] == pytest.approx(ref.intercept)
        assert row["r2"] == pytest.approx(ref.rvalue**2)
        np.testing.assert_allclose(row["slope_ci"], [ref.slope - t * ref.stderr, ref.slope + t * ref.stderr])
        np.testing.assert_allclose(
            row["intercept_ci"], [ref.intercept - t * ref.intercept_stderr, ref.intercept + t * ref.intercept_stderr]
        )


def test_slope_interval_coverage():
    """The slope's t interval over many repeats (one context per repeat, `rep` in the grouping)."""
    repeats = 200
    sizes = [1e4, 1e5, 1e6, 1e7]
    df = pd.concat(
        [
            scaling_table(np.random.default_rng(20_000 + r), sizes, 0.15, -0.08, n=20).assign(rep=r)
            for r in range(repeats)
        ]
    )
    out = fit_table(df, by=["method", "rm_params", "rep"], n_boot=0)
    rows = [s for s in out["scaling"] if s["coef"] == "alpha"]
    assert len(rows) == repeats and all(s["n"] == 4 for s in rows)
    rate = np.mean([s["slope_ci"][0] <= 0.15 <= s["slope_ci"][1] for s in rows])
    assert abs(rate - 0.95) <= binomial_band(0.95, repeats), rate


def test_predict_unseen_size():
    rng = np.random.default_rng(8)
    out = fit_table(scaling_table(rng, [1e4, 1e5, 1e6, 1e7], 0.15, -0.05), n_boot=0)
    pred = predict(out, "bon", {"rm_params": 1e9})
    x = np.log10([r["rm_params"] for r in out["fits"]])
    a = stats.linregress(x, [r["alpha"] for r in out["fits"]])
    b = stats.linregress(x, [r["beta"] for r in out["fits"]])
    alpha, beta = a.intercept + 9 * a.slope, b.intercept + 9 * b.slope
    assert pred["alpha"] == pytest.approx(alpha) and pred["beta"] == pytest.approx(beta)
    assert pred["d_peak"] == pytest.approx(alpha / (2 * beta))
    assert pred["gold_peak"] == pytest.approx(alpha**2 / 4 / beta)
    assert abs(pred["alpha"] - (0.2 + 0.15 * 9)) < 0.05
    assert pred["alpha_ci"][0] < pred["alpha"] < pred["alpha_ci"][1]


# ---------------------------------------------------------------- model choice and advance prediction


@pytest.mark.parametrize("true_law,other", [("bon", "rl"), ("rl", "bon")])
def test_aic_prefers_the_true_form(true_law, other):
    wins = 0
    for r in range(20):
        df = curve(np.random.default_rng(300 + r), true_law, 1.0, 0.35, n=60, d_max=6.0, sd=0.05)
        df = df[df["kl"] > 0]
        aic = {law: fit_table(df, method=law, n_boot=0)["fits"][0]["aic"] for law in (true_law, other)}
        wins += aic[true_law] < aic[other]
    assert wins >= 19


def test_power_law_fit_table_recovers_gamma_and_beats_bon_by_aic():
    rng = np.random.default_rng(16)
    d = rng.uniform(0.1, 6.0, 80)
    df = pd.DataFrame({"method": "x", "kl": d**2, "gold": power_law(d, 1.0, 0.3, 0.6) + rng.normal(0, 0.05, 80)})
    row = fit_table(df, method="power", n_boot=300)["fits"][0]
    assert row["converged"] and abs(row["gamma"] - 0.6) < 0.1 and row["alpha_ci"][0] < 1.0 < row["alpha_ci"][1]
    assert row["d_peak"] == pytest.approx(peak("power", row)[0])
    assert row["aic"] < fit_table(df, method="bon", n_boot=0)["fits"][0]["aic"] - 10


def test_advance_prediction_against_curve_fit():
    rng = np.random.default_rng(9)
    df = curve(rng, "bon", 1.0, 0.3, n=80, d_max=5.0, sd=0.03)
    out = fit_table(df, n_boot=0, d_cut=2.5)
    adv = out["advance"][0]
    d, y = np.sqrt(df["kl"].to_numpy()), df["gold"].to_numpy()
    popt, _ = optimize.curve_fit(bon_law, d[d <= 2.5], y[d <= 2.5])
    err = y[d > 2.5] - bon_law(d[d > 2.5], *popt)
    assert adv["n_fit"] == int((d <= 2.5).sum()) and adv["n_test"] == int((d > 2.5).sum())
    assert adv["alpha"] == pytest.approx(popt[0])
    assert adv["rmse_test"] == pytest.approx(np.sqrt(np.mean(err**2)))
    assert adv["max_abs_err_test"] == pytest.approx(np.abs(err).max())
    assert adv["rmse_test"] < 2 * 0.03  # the BoN form extrapolates to the noise level on its own data


def test_r2_unweighted_against_a_float64_loop():
    """1 - SS_res / SS_tot of the fitted law on the curve, unweighted, SS_tot about the plain mean; the
    weighted r2 unchanged. Per-seed RL rows with gold_se: the curve is the step means."""
    rng = np.random.default_rng(21)
    steps, kl = np.arange(10), np.linspace(0.0, 9.0, 10)
    se = rng.uniform(0.01, 0.2, 10)
    df = pd.concat(
        [
            pd.DataFrame(
                {"method": "rl", "seed": k, "step": steps, "kl": kl * rng.uniform(0.9, 1.1), "gold_se": se[steps]}
            ).assign(gold=lambda t: rl_law(np.sqrt(t["kl"]), 0.8, 0.3) + rng.normal(0, 0.05, 10))
            for k in range(3)
        ],
        ignore_index=True,
    )
    row = fit_table(df, n_boot=0)["fits"][0]
    ys, ds, ws = [], [], []
    for s in range(1, 10):  # step 0 (d = 0) is dropped by the RL law
        sub = df[df["step"] == s]
        ys.append(sum(sub["gold"]) / len(sub))
        ds.append(math.sqrt(sum(sub["kl"]) / len(sub)))
        ws.append(1 / se[s] ** 2)
    mean = sum(ys) / len(ys)
    ss_res = ss_tot = 0.0
    for d, y in zip(ds, ys, strict=True):
        ss_res += (y - d * (row["alpha"] - row["beta"] * math.log(d))) ** 2
        ss_tot += (y - mean) ** 2
    assert row["r2_unweighted"] == pytest.approx(1 - ss_res / ss_tot, rel=1e-10)
    resid = np.array(ys) - rl_law(np.array(ds), row["alpha"], row["beta"])
    assert row["r2"] == pytest.approx(fit_stats(np.array(ys), resid, np.array(ws), 2)["r2"], rel=1e-10)
    assert row["r2"] != pytest.approx(row["r2_unweighted"])  # the weights matter here
    # not converged, or a flat curve: None
    bad = fit_table(pd.DataFrame({"method": "bon", "kl": [1.0] * 4, "gold": [0.1, 0.2, 0.15, 0.12]}), n_boot=0)
    assert bad["fits"][0]["r2_unweighted"] is None
    flat = pd.DataFrame({"method": "bon", "n": [1, 1, 2, 2, 4, 4], "kl": [0, 0, 1, 1, 4, 4], "gold": [0.0, 0.0] * 3})
    assert fit_table(flat, n_boot=0)["fits"][0]["r2_unweighted"] is None


def bon_mean_curve(alpha, beta, d, bend=None, sd=0.0, rng=None, **cols):
    """A mean curve of the BoN law (one row a d); past d = bend[0] the gold falls by bend[1] * (d - bend[0])^2."""
    gold = bon_law(d, alpha, beta)
    if bend is not None:
        gold = gold - bend[1] * np.clip(d - bend[0], 0, None) ** 2
    if sd:
        gold = gold + rng.normal(0, sd, len(d))
    return pd.DataFrame({"method": "bon", "kl": d**2, "gold": gold, **cols})


def test_advance_relative_to_each_groups_range():
    """d_cut_frac: each group cut at its own fraction of its largest d; the held-out error by lstsq on the
    basis written out here; nrmse = rmse / (max - min of the whole curve)."""
    rng = np.random.default_rng(22)
    exact = bon_mean_curve(1.0, 0.3, np.linspace(0.1, 3.0, 20), rm_params=1e6)
    bent = bon_mean_curve(0.6, 0.1, np.linspace(0.1, 6.0, 30), bend=(3.0, 0.5), rm_params=1e7)
    noisy = bon_mean_curve(1.2, 0.25, np.linspace(0.1, 4.5, 25), sd=0.03, rng=rng, rm_params=1e8)
    df = pd.concat([exact, bent, noisy])
    out = fit_table(df, n_boot=0, d_cut_frac=0.6)
    adv = {a["rm_params"]: a for a in out["advance"]}
    for size, part in ((1e6, exact), (1e7, bent), (1e8, noisy)):
        a = adv[size]
        d, y = np.sqrt(part["kl"].to_numpy()), part["gold"].to_numpy()
        cut = 0.6 * d.max()
        B = np.column_stack([d, -d * d])  # the BoN basis
        theta = np.linalg.lstsq(B[d <= cut], y[d <= cut], rcond=None)[0]
        err = y[d > cut] - B[d > cut] @ theta
        rmse, span = math.sqrt(float(np.mean(err**2))), float(y.max() - y.min())
        assert a["d_cut"] == pytest.approx(cut) and a["d_cut_frac"] == 0.6
        assert (a["n_fit"], a["n_test"]) == (int((d <= cut).sum()), int((d > cut).sum()))
        assert a["alpha"] == pytest.approx(theta[0]) and a["beta"] == pytest.approx(theta[1])
        assert a["rmse_test"] == pytest.approx(rmse, rel=1e-8, abs=1e-12)
        assert a["curve_range"] == pytest.approx(span) and a["nrmse_test"] == pytest.approx(rmse / span, abs=1e-12)
    assert adv[1e6]["nrmse_test"] < 1e-10  # the law itself, noise-free: predicted exactly
    assert adv[1e7]["nrmse_test"] > 0.3  # the curve bends away past the cut
    assert adv[1e7]["nrmse_test"] > 2 * adv[1e8]["nrmse_test"]  # more than noise extrapolated
    # an absolute cut: d_cut_frac None, the same range fields
    a = fit_table(exact, n_boot=0, d_cut=1.5)["advance"][0]
    assert a["d_cut_frac"] is None and a["curve_range"] == pytest.approx(np.ptp(exact["gold"]))
    assert a["nrmse_test"] == pytest.approx(a["rmse_test"] / a["curve_range"], abs=1e-15)
    # a flat curve has no range: nrmse None
    flat = fit_table(exact.assign(gold=0.0), n_boot=0, d_cut_frac=0.5)["advance"][0]
    assert flat["curve_range"] == 0.0 and flat["rmse_test"] == pytest.approx(0.0) and flat["nrmse_test"] is None


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"d_cut_frac": 0.0}, "d_cut_frac must be a number between 0 and 1"),
        ({"d_cut_frac": 1.0}, "d_cut_frac must be a number between 0 and 1"),
        ({"d_cut_frac": math.nan}, "d_cut_frac must be a number between 0 and 1"),
        ({"d_cut_frac": 0.5, "d_cut": 1.0}, "give d_cut or d_cut_frac, not both"),
    ],
)
def test_d_cut_frac_usage_errors(kwargs, match):
    with pytest.raises(UsageError, match=match):
        fit_table(bon_mean_curve(1.0, 0.3, np.linspace(0.1, 3.0, 20)), n_boot=0, **kwargs)


# ---------------------------------------------------------------- bad input and reporting


def test_non_converged_fit_is_reported():
    df = pd.DataFrame({"method": "bon", "kl": [1.0, 1.0, 1.0, 1.0], "gold": [0.1, 0.2, 0.15, 0.12]})
    row = fit_table(df, n_boot=50)["fits"][0]
    assert row["converged"] is False and row["alpha"] is None and "singular" in row["message"]
    json.dumps(row, allow_nan=False)


def test_grouping_defaults_and_by():
    rng = np.random.default_rng(11)
    df = pd.concat(
        [curve(rng, "bon", 1.0, 0.3, rm_params=s, kl_coef=0.0, seed=k, extra="z") for s in (1e5, 1e6) for k in range(3)]
    )
    rows = fit_table(df, n_boot=0)["fits"]
    assert len(rows) == 2
    assert all(set(r) >= {"method", "rm_params", "kl_coef"} and "seed" not in r for r in rows)
    assert all(r["n_points"] == 90 for r in rows)
    assert len(fit_table(df, by=["method", "seed"], n_boot=0)["fits"]) == 3
    assert len(fit_table(df, by=[], method="bon", n_boot=0)["fits"]) == 1
    assert len(fit_table(df, by="method,rm_params", n_boot=0)["fits"]) == 2


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"by": ["nope"]}, "unknown --by column 'nope'"),
        ({"method": "cubic"}, "unknown method 'cubic'"),
        ({"by": []}, "mixes methods bon,rl"),
        ({"method": "power", "shared_alpha": True}, "needs a two-parameter law"),
        ({"resample": "prompt"}, "unknown --resample column"),
    ],
)
def test_usage_errors(kwargs, match):
    rng = np.random.default_rng(12)
    df = pd.concat([curve(rng, "bon", 1.0, 0.3), curve(rng, "rl", 1.0, 0.3)])
    with pytest.raises(UsageError, match=match):
        fit_table(df, n_boot=0, **kwargs)


def test_group_with_too_few_points_is_named():
    rng = np.random.default_rng(13)
    df = pd.concat([curve(rng, "bon", 1.0, 0.3, rm_params=1e5), curve(rng, "bon", 1.0, 0.3, n=2, rm_params=1e6)])
    with pytest.raises(UsageError, match=r"group method=bon, rm_params=1000000.0 has 2 points with d > 0"):
        fit_table(df, n_boot=0)
    with pytest.raises(UsageError, match="no 'method' column"):
        fit_table(df.drop(columns="method"), n_boot=0)
    with pytest.raises(UsageError, match="no default law for method 'sft'"):
        fit_table(df.assign(method="sft"), n_boot=0)


def test_bootstrap_in_batches_gives_the_same_intervals(monkeypatch):
    import scaling.bootstrap as bootstrap

    df = curve(np.random.default_rng(17), "rl", 0.8, 0.3, n=40)
    whole = fit_table(df, n_boot=500)["fits"][0]
    monkeypatch.setattr(bootstrap, "BOOT_CELLS", 40 * 7)  # batches of 7 resamples
    batched = fit_table(df, n_boot=500)["fits"][0]
    assert batched["alpha_ci"] == whole["alpha_ci"] and batched["beta_ci"] == whole["beta_ci"]


def test_gold_se_weights_and_prompt_resampling():
    rng = np.random.default_rng(18)
    d = rng.uniform(0.1, 3.0, 60)
    se = rng.uniform(0.01, 0.2, 60)
    df = pd.DataFrame(
        {
            "method": "bon",
            "kl": d**2,
            "gold": bon_law(d, 1.0, 0.3) + rng.normal(0, se),
            "gold_se": se,
            "seed": np.arange(60) % 3,
            "prompt_id": np.arange(60) % 6,
        }
    )
    row = fit_table(df, n_boot=100)["fits"][0]
    popt, _ = optimize.curve_fit(bon_law, d, df["gold"], sigma=se)
    assert row["alpha"] == pytest.approx(popt[0]) and row["beta"] == pytest.approx(popt[1])
    # prompts before seeds; gold_se differs within each x here, so the weights are not re-estimated
    assert row["interval"] == "prompts" and row["message"] == "ok; bootstrap over 6 prompts (column prompt_id)"


def test_missing_gold_se_in_one_method_leaves_that_group_unweighted():
    rng = np.random.default_rng(19)
    d = rng.uniform(0.2, 3.0, 40)
    se = rng.uniform(0.01, 0.2, 40)
    bon = pd.DataFrame({"method": "bon", "kl": d**2, "gold": bon_law(d, 1.0, 0.3) + rng.normal(0, se), "gold_se": se})
    rl = pd.DataFrame({"method": "rl", "kl": d**2, "gold": rl_law(d, 0.8, 0.3) + rng.normal(0, 0.05, 40)})
    res = fit_table(pd.concat([bon, rl], ignore_index=True), n_boot=50)["fits"]
    by = {r["method"]: r for r in res}
    popt_w, _ = optimize.curve_fit(bon_law, d, bon["gold"], sigma=se)
    popt_u, _ = optimize.curve_fit(rl_law, d, rl["gold"])
    assert by["bon"]["alpha"] == pytest.approx(popt_w[0]) and by["bon"]["beta"] == pytest.approx(popt_w[1])
    assert by["rl"]["alpha"] == pytest.approx(popt_u[0], rel=1e-6)
    assert by["rl"]["beta"] == pytest.approx(popt_u[1], rel=1e-6)


def test_a_flat_group_gets_no_law_and_stays_out_of_the_scaling():
    from scaling.fitting import FLAT

    rows = []
    for size, flat in ((1e3, True), (1e4, False), (1e5, False)):
        for k in (0.2, 0.6, 1.2, 1.8, 2.5, 3.2):
            d = k**0.5
            rows.append({"method": "bon", "kl": k, "gold": 1.0 if flat else d * (0.5 - 0.1 * d), "rm_params": size})
    out = fit_table(pd.DataFrame(rows), n_boot=20, seed=0)
    by = {r["rm_params"]: r for r in out["fits"]}
    assert by[1e3]["converged"] is False and by[1e3]["message"] == FLAT and by[1e3]["alpha"] is None
    assert by[1e4]["converged"] and by[1e4]["alpha"] == pytest.approx(0.5)
    assert {r["n"] for r in out["scaling"]} == {2}  # the flat group is not a point of the scaling fit


def test_a_nearly_singular_design_is_not_converged_instead_of_an_error():
    # found by the property test: two points at the same d and one at d = 1e-9 (KL 1e-18)
    df = pd.DataFrame({"method": "bon", "kl": [1.0, 1.0, 1e-18], "gold": [0.0, 0.0, 1.0]})
    row = fit_table(df, n_boot=5, seed=0)["fits"][0]
    assert row["converged"] is False and row["message"].startswith("singular design")
