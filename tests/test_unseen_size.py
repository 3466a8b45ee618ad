"""Prediction of an unseen proxy size (scaling.unseen_size) and its figure, on synthetic ladders with known
answers: coefficients exactly linear in log10 params (exact predictions, zero curve error), prediction
intervals against scipy.stats.linregress and a float64 loop, a known outlier size, replicates judged alone."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from criteria_world import bon, rl
from scipy import stats

from figures.data import FigureData, Skip
from scaling.fitting import fit_table
from scaling.unseen_size import coef_table, fit_line, leave_one_out, table_lines, table_records, unseen_size_table

SIZES = [1e3, 1e4, 1e5, 1e6, 1e7]
X = np.log10(SIZES)


def lines(x, replicate_shift=0.0):
    """Coefficients exactly linear in log10 size: alpha_bon up, beta_bon, beta_rl down."""
    return {
        ("bon", "alpha"): 0.3 + 0.05 * x + replicate_shift,
        ("bon", "beta"): 0.20 - 0.02 * x,
        ("rl", "alpha"): 0.05 + 0.01 * x,
        ("rl", "beta"): 0.040 - 0.004 * x,
    }


def ladder(coefs, sizes=SIZES, replicate=None):
    parts = []
    for i, s in enumerate(sizes):
        parts.append(bon(s, coefs["bon", "alpha"][i], coefs["bon", "beta"][i]))
        parts.append(rl(s, coefs["rl", "alpha"][i], coefs["rl", "beta"][i], seeds=(0, 1)))
    p = pd.concat(parts, ignore_index=True)
    if replicate is not None:
        p["replicate"] = replicate
    return p


@pytest.fixture(scope="module")
def exact():
    p = ladder(lines(X))
    return p, fit_table(p, n_boot=0)


def test_exactly_linear_ladder_is_predicted_exactly(exact):
    p, fits = exact
    t = unseen_size_table(p, fits)
    assert len(t) == 2 * len(SIZES) and set(t["method"]) == {"bon", "rl"}
    truth = lines(X)
    for _, r in t.iterrows():
        i = SIZES.index(r["rm_params"])
        for c in ("alpha", "beta"):
            assert r[f"{c}_fit"] == pytest.approx(truth[r["method"], c][i], abs=1e-9)
            assert r[f"{c}_pred"] == pytest.approx(truth[r["method"], c][i], abs=1e-9)
            assert abs(r[f"{c}_err"]) < 1e-9
        assert r["nrmse_pred"] < 1e-8 and r["nrmse_fit"] < 1e-8 and r["curve_range"] > 0
        assert r["n_train"] == len(SIZES) - 1
        assert r["extrapolated"] == (i in (0, len(SIZES) - 1))
    assert t["kl_coef"].dropna().eq(0.0).all() and t.loc[t["method"] == "bon", "kl_coef"].isna().all()
    assert len(table_lines(t)) == 2 + len(t)
    rows = json.loads(json.dumps(table_records(t), allow_nan=False))  # strict JSON: no NaN
    assert len(rows) == len(t) and rows[0]["kl_coef"] is None and rows[-1]["kl_coef"] == 0.0


def _pi_reference(x, y, x0):
    """The 95% prediction interval at x0 from linregress and a float64 loop."""
    r = stats.linregress(x, y)
    n = len(x)
    xm = sum(x) / n
    sxx = 0.0
    ss = 0.0
    for xi, yi in zip(x, y, strict=True):
        sxx += (xi - xm) ** 2
        ss += (yi - (r.intercept + r.slope * xi)) ** 2
    s = math.sqrt(ss / (n - 2))
    assert s / math.sqrt(sxx) == pytest.approx(r.stderr, rel=1e-9)
    yhat = r.intercept + r.slope * x0
    h = stats.t.ppf(0.975, n - 2) * s * math.sqrt(1 + 1 / n + (x0 - xm) ** 2 / sxx)
    hc = stats.t.ppf(0.975, n - 2) * s * math.sqrt(1 / n + (x0 - xm) ** 2 / sxx)
    return yhat, (yhat - h, yhat + h), (yhat - hc, yhat + hc)


def test_intervals_match_linregress():
    rng = np.random.default_rng(3)
    x = np.array([3.0, 3.5, 4.1, 5.0, 5.6, 6.2])
    y = 0.2 + 0.07 * x + rng.normal(0, 0.02, len(x))
    out = leave_one_out(x, y)
    assert [o["x"] for o in out] == sorted(x)
    for o in out:
        keep = x != o["x"]
        yhat, pi, _ = _pi_reference(list(x[keep]), list(y[keep]), o["x"])
        assert o["pred"] == pytest.approx(yhat, rel=1e-10)
        assert o["pi"] == pytest.approx(list(pi), rel=1e-9)
        assert o["n_train"] == len(x) - 1
    line = fit_line(x, y)
    _, pi, ci = _pi_reference(list(x), list(y), 4.4)
    assert [float(v) for v in line.ci(4.4)] == pytest.approx(list(ci), rel=1e-9)
    assert [float(v) for v in line.pi(4.4)] == pytest.approx(list(pi), rel=1e-9)


def test_two_training_sizes_give_no_interval():
    out = leave_one_out([1.0, 2.0, 3.0], [0.1, 0.3, 0.2])
    assert [o["pi"] for o in out] == [None, None, None]
    assert out[1]["pred"] == pytest.approx(0.15) and out[1]["extrapolated"] is False


def test_known_outlier_size_is_flagged():
    coefs = lines(X)
    wiggle = np.array([0.004, -0.003, 0.002, -0.004, 0.003])  # so that the line's residual variance is > 0
    coefs["bon", "alpha"] = coefs["bon", "alpha"] + wiggle
    coefs["bon", "alpha"][2] += 0.25  # the outlier, 1e5
    p = ladder(coefs)
    t = unseen_size_table(p, fit_table(p, n_boot=0))
    b = t[t["method"] == "bon"].set_index("rm_params")
    # the outlier's prediction comes from the other four: a float64 loop of OLS
    keep = [0, 1, 3, 4]
    xk, yk = X[keep], coefs["bon", "alpha"][keep]
    slope = float(np.sum((xk - xk.mean()) * (yk - yk.mean())) / np.sum((xk - xk.mean()) ** 2))
    pred = float(yk.mean() + slope * (X[2] - xk.mean()))
    assert b.loc[1e5, "alpha_pred"] == pytest.approx(pred, abs=1e-8)
    assert b.loc[1e5, "alpha_err"] == pytest.approx(pred - coefs["bon", "alpha"][2], abs=1e-8)
    assert b.loc[1e5, "alpha_err"] == pytest.approx(-0.25, abs=0.01)
    assert not b.loc[1e5, "alpha_in_pi"]
    assert b.drop(index=1e5)["alpha_in_pi"].all()  # the outlier widens the others' intervals
    # the gold curve at the outlier: the BoN law with the predicted coefficients against the measured curve
    pts = p[(p["method"] == "bon") & (p["rm_params"] == 1e5)].sort_values("kl")
    d, gold = np.sqrt(pts["kl"].to_numpy()), pts["gold"].to_numpy()
    a, bb = b.loc[1e5, "alpha_pred"], b.loc[1e5, "beta_pred"]
    rmse = math.sqrt(sum((di * (a - bb * di) - gi) ** 2 for di, gi in zip(d, gold, strict=True)) / len(d))
    assert b.loc[1e5, "nrmse_pred"] == pytest.approx(rmse / (gold.max() - gold.min()), rel=1e-9)
    assert b.loc[1e5, "nrmse_pred"] > 0.1 and b.loc[1e5, "nrmse_fit"] < 1e-8


def test_replicates_are_judged_alone():
    shift = 0.1
    p = pd.concat([ladder(lines(X), replicate=2), ladder(lines(X, shift), replicate=3)], ignore_index=True)
    t = unseen_size_table(p, fit_table(p, n_boot=0))
    assert sorted(t["replicate"].unique()) == [2, 3] and len(t) == 4 * len(SIZES)
    assert (t["alpha_err"].abs() < 1e-9).all()  # pooled, the two lines' offset would be an error
    r3 = t[(t["replicate"] == 3) & (t["method"] == "bon")].sort_values("rm_params")
    assert r3["alpha_fit"].to_numpy() == pytest.approx(lines(X, shift)["bon", "alpha"], abs=1e-9)
    c = coef_table(p, fit_table(p, n_boot=0))
    assert len(c) == 4 * len(SIZES) and set(c["replicate"]) == {2, 3}


def test_too_few_sizes_give_an_empty_table():
    p = ladder({k: v[:2] for k, v in lines(X).items()}, sizes=SIZES[:2])
    t = unseen_size_table(p, fit_table(p, n_boot=0))
    assert t.empty and "nrmse_pred" in t.columns


def test_figure_draws_a_synthetic_ladder(tmp_path, exact):
    from figures import unseen_size as fig

    p, fits = exact
    files = fig.make(FigureData(points=p, fits=fits), tmp_path)
    assert sorted(f.name for f in files) == ["unseen_size.pdf", "unseen_size.png"]
    png = tmp_path / "unseen_size.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert fig.NAME == "unseen_size" and len(fig.CAPTION.splitlines()) == 2 and "Gao et al. 2022" in fig.CAPTION


def test_figure_with_replicates_and_a_skip(tmp_path):
    from figures import unseen_size as fig

    p = pd.concat([ladder(lines(X), replicate=2), ladder(lines(X, 0.05), replicate=3)], ignore_index=True)
    files = fig.make(FigureData(points=p, fits=fit_table(p, n_boot=0)), tmp_path / "reps")
    assert len(files) == 2 and all(f.stat().st_size > 5000 for f in files)
    two = ladder({k: v[:2] for k, v in lines(X).items()}, sizes=SIZES[:2])
    with pytest.raises(Skip) as e:
        fig.make(FigureData(points=two, fits=fit_table(two, n_boot=0)), tmp_path / "skip")
    assert "3" in e.value.reason and "\n" not in e.value.reason
    assert not (tmp_path / "skip").exists() or not list((tmp_path / "skip").iterdir())


def test_sizes_whose_log10_differs_by_a_bit_between_numpy_and_math():
    """tiny's ladder has such a size (4001 params): the table once raised KeyError on it."""
    sizes = [121.0, 4001.0, 40000.0, 400000.0, 4000000.0]
    x = np.log10(sizes)
    assert any(float(a) != math.log10(s) for a, s in zip(x, sizes, strict=True))  # the case this guards
    p = ladder(lines(x), sizes=sizes)
    t = unseen_size_table(p, fit_table(p, n_boot=0))
    assert sorted(set(t["rm_params"])) == sizes and len(t) == 2 * len(sizes)
