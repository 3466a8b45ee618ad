"""Gao-criteria checks (criteria/): the ladder, fits and over-optimization checks on synthetic
ladders with known answers (one that passes, one that fails, one that cannot be judged)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from criteria_world import ALPHA_BON, ALPHA_RL, BETA_BON, BETA_RL, FULL, SIZES, bon, bon_prompts, by_name, rl, world
from scipy import stats

from criteria import check_lines, curve_drop, drop_test, gao_checks, seed_drop, seed_drops
from criteria.common import row
from criteria.fits import r2_check
from criteria.overopt import paired_drop_se
from scaling.fitting import fit_table
from scaling.ladder import Ladder, ladder
from scaling.laws import LAWS

ALL = [
    "bon_r2",
    "rl_r2",
    "rl_peak_inside",
    "bon_advance",
    "rl_advance",
    "bon_overopt",
    "rl_overopt",
    "best_gold_order",
    "peak_later",
    "alpha_bon_slope",
    "beta_bon_slope",
    "beta_rl_slope",
    "alpha_rl_shared",
    "kl_efficiency",
    "rl_peak_kl_later",
    "penalty_early_stopping",
    "data_size",
    "val_loss",
    "rl_reaches_bon_kl",
]
# what the ideal 4-size ladder without penalised runs, data sweep or proxy table cannot decide
NOT_JUDGED = {"alpha_bon_slope", "beta_bon_slope", "beta_rl_slope", "penalty_early_stopping", "data_size", "val_loss"}


def fits_of(pts, n_boot=0):
    return fit_table(pts, n_boot=n_boot, seed=0, d_cut_frac=0.6)


def checks(pts, **kw):
    return by_name(gao_checks(pts, fits_of(pts), **kw))


def test_ideal_ladder_passes_every_check_it_can_judge():
    pts = world()
    out = gao_checks(pts, fits_of(pts, n_boot=50))
    by = by_name(out)
    assert list(by) == ALL
    for name, c in by.items():
        assert set(c) == {"check", "target", "measured", "statistic", "passed"}
        want = None if name in NOT_JUDGED else True
        assert c["passed"] is want, check_lines(out)
    # slopes are reported (value and interval) though 4 sizes cannot judge them
    assert "not judged" in by["alpha_bon_slope"]["measured"] and by["alpha_bon_slope"]["statistic"] > 0
    assert by["beta_rl_slope"]["statistic"] < 0
    json.dumps(out)  # serialisable as criteria.json


def test_ladder_drops_data_size_proxies_and_ensembles():
    junk = bon(1e3, -1.0, 1.0, data_size=2000)
    ens = bon(1e3, -1.0, 1.0).assign(objective="mean")
    pts = world(extra=(junk, ens))
    lad = ladder(pts)
    assert set(lad["data_size"]) == {FULL} and set(lad["objective"]) == {"single"}
    assert len(lad) == len(world())
    by = checks(pts)
    assert by["bon_r2"]["passed"] and by["best_gold_order"]["passed"]


def test_r2_is_unweighted_on_the_curve_against_a_loop():
    pts = world()
    fits = fits_of(pts)
    by = by_name(gao_checks(pts, fits))
    want = []
    for r in fits["fits"]:
        if r["method"] != "bon":
            continue
        sub = pts[(pts.method == "bon") & (pts.rm_params == r["rm_params"])].sort_values("kl")
        d, y = np.sqrt(sub["kl"].to_numpy()), sub["gold"].to_numpy()
        keep = d > 0 if LAWS[r["law"]].drop_zero else np.ones(len(d), bool)
        d, y = d[keep], y[keep]
        ss_res = sum((y[i] - d[i] * (r["alpha"] - r["beta"] * d[i])) ** 2 for i in range(len(d)))
        ss_tot = sum((v - y.mean()) ** 2 for v in y)
        want.append(1 - ss_res / ss_tot)
    assert by["bon_r2"]["statistic"] == pytest.approx(min(want), rel=1e-9)
    # a curve with a cliff (gold falls by 1 at the last three points) fits badly
    cliff = world()
    mask = (cliff.method == "bon") & (cliff.rm_params == 1e4) & (cliff.n >= 2**12)
    cliff.loc[mask, "gold"] -= 1.0
    row_ = checks(cliff)["bon_r2"]
    assert row_["passed"] is False and "below: 10k" in row_["measured"]
    assert r2_check("bon_r2", {}, [1.0], 0.9, "best-of-n")["passed"] is None


def test_rl_peak_inside_the_data_for_the_smaller_half():
    assert checks(world())["rl_peak_inside"]["passed"] is True
    # the smallest proxy's RL gold still rises at the end (beta so small that d* = exp(0.1/0.02 - 1) = 55)
    pts = pd.concat([world()[lambda p: ~((p.method == "rl") & (p.rm_params == 1e3))], rl(1e3, 0.1, 0.02)])
    r = checks(pts)["rl_peak_inside"]
    assert r["passed"] is False and r["statistic"] > 1
    no_rl = world()[lambda p: p.method == "bon"]
    assert checks(no_rl)["rl_peak_inside"]["passed"] is None


def test_advance_prediction_relative_to_the_curve_range():
    by = checks(world())
    assert by["bon_advance"]["passed"] is True and by["rl_advance"]["passed"] is True
    assert by["bon_advance"]["statistic"] < 0.05
    # past 0.6 d_max the RL gold of one proxy turns down much faster than the law fitted before
    pts = world()
    mask = (pts.method == "rl") & (pts.rm_params == 1e5) & (pts.kl > 0.36 * 20)
    pts.loc[mask, "gold"] -= 0.1 * (pts.loc[mask, "kl"] - 7.2)
    r = checks(pts)["rl_advance"]
    assert r["passed"] is False and r["statistic"] > 0.25
    # fits without advance rows cannot judge it
    plain = gao_checks(world(), fit_table(world(), n_boot=0))
    assert by_name(plain)["bon_advance"]["passed"] is None
    assert by_name(plain)["rl_advance"]["passed"] is None


def test_curve_drop_against_a_plain_loop():
    rng = np.random.default_rng(3)
    for _ in range(20):
        g = rng.normal(size=rng.integers(2, 12))
        se = float(rng.uniform(0.01, 1))
        peak, ipk = -np.inf, -1
        for i, v in enumerate(g):
            if v > peak:
                peak, ipk = v, i
        out = curve_drop(g, se)
        assert out["i_peak"] == ipk and out["inside"] == (ipk < len(g) - 1)
        assert out["drop"] == pytest.approx(peak - g[-1]) and out["z"] == pytest.approx((peak - g[-1]) / se)
    assert curve_drop(np.array([0.0, 1.0]), None)["z"] is None


def test_paired_drop_se_against_a_plain_loop():
    p = bon_prompts(1e3, 0.5, 0.16, n_prompts=30, rng=np.random.default_rng(2))
    kl = sorted(p["kl"].unique())
    peak, last = kl[4], kl[-1]
    diffs = []
    for i in range(30):
        g = {round(k, 12): v for k, v in zip(p[p.prompt == i]["kl"], p[p.prompt == i]["gold"], strict=True)}
        diffs.append(g[round(peak, 12)] - g[round(last, 12)])
    m = sum(diffs) / 30
    sd = math.sqrt(sum((x - m) ** 2 for x in diffs) / 29)
    assert paired_drop_se(p, peak, last) == pytest.approx(sd / math.sqrt(30))
    assert paired_drop_se(p[p.prompt == 0], peak, last) is None


def _bon_ladder_from_prompts(alpha, beta, rng):
    prompts = pd.concat([bon_prompts(s, a, b, rng=rng) for s, a, b in zip(SIZES, alpha, beta, strict=True)])
    keys = ["method", "rm_params", "data_size", "objective", "n", "kl"]
    g = prompts.groupby(keys)["gold"]
    pts = g.mean().reset_index().assign(gold_se=(g.std(ddof=1) / math.sqrt(40)).to_numpy())
    return pts, prompts


def test_bon_overopt_uses_the_paired_se_over_prompts():
    rng = np.random.default_rng(8)
    pts, prompts = _bon_ladder_from_prompts(ALPHA_BON, BETA_BON, rng)
    r = checks(pts, bon_prompts=prompts)["bon_overopt"]
    assert r["passed"] is True and "paired SE over prompts" in r["measured"]
    # by hand for the smallest proxy: its peak's KL and the paired SE of peak minus last
    sub = pts[pts.rm_params == 1e3].sort_values("kl")
    i = int(np.argmax(sub["gold"].to_numpy()))
    drop = sub["gold"].iloc[i] - sub["gold"].iloc[-1]
    se = paired_drop_se(prompts[prompts.rm_params == 1e3], sub["kl"].iloc[i], sub["kl"].iloc[-1])
    assert f"({drop / se:.1f} SE, paired SE over prompts)" in r["measured"].split(";")[0]
    # without per-prompt rows: the last point's SE
    assert "last point's SE" in checks(pts)["bon_overopt"]["measured"]
    # no over-optimization: beta tiny, gold still rising at the largest n
    flat, fprompts = _bon_ladder_from_prompts(ALPHA_BON, [0.01, 0.01, 0.01, 0.01], rng)
    assert checks(flat, bon_prompts=fprompts)["bon_overopt"]["passed"] is False
    # no SE at all: cannot be judged
    nose = pts.drop(columns="gold_se")
    assert checks(nose)["bon_overopt"]["passed"] is None


def _ladder_with_rl(smallest: pd.DataFrame) -> pd.DataFrame:
    """The ideal best-of-n ladder, RL on the 3 larger sizes and `smallest` as the smallest proxy's RL."""
    rng = np.random.default_rng(5)
    parts = [bon(s, a, b) for s, a, b in zip(SIZES, ALPHA_BON, BETA_BON, strict=True)]
    parts += [rl(s, a, b, (0, 1, 2), rng=rng) for s, a, b in zip(SIZES[1:], ALPHA_RL[1:], BETA_RL[1:], strict=True)]
    return pd.concat(parts + [smallest], ignore_index=True)


def _rl_check(pts):
    return by_name(gao_checks(pts, fit_table(pts, n_boot=0)))["rl_overopt"]


def _rl_seeds(curves, size=1e3, eval_se=None):
    """RL rows of one proxy: curves[s] is seed s's gold at steps 0, 10, ...; kl grows with the step."""
    rows = []
    for s, gold in enumerate(curves):
        for i, g in enumerate(gold):
            row = {"method": "rl", "step": 10 * i, "kl": 0.5 * i, "gold": float(g), "kl_coef": 0.0, "seed": s}
            row.update(rm_params=size, data_size=FULL, objective="single")
            if eval_se is not None:
                row["gold_eval_se"] = eval_se
            rows.append(row)
    return pd.DataFrame(rows)


def test_seed_drop_against_a_plain_loop():
    rng = np.random.default_rng(3)
    for _ in range(200):
        g = rng.normal(size=rng.integers(1, 14))
        n = len(g)
        windows = [[j for j in (i - 1, i, i + 1) if 0 <= j < n] for i in range(n)]
        smooth = [sum(g[j] for j in w) / len(w) for w in windows]
        ipk = max(range(n), key=lambda i: (smooth[i], -i))  # the first maximum
        out = seed_drop(g)
        assert out["i_peak"] == ipk
        assert out["peak"] == pytest.approx(sum(g[j] for j in windows[ipk]) / len(windows[ipk]))
        assert out["drop"] == pytest.approx(out["peak"] - g[-1]) and out["last"] == g[-1]
    # a single high evaluation does not make the peak: the smoothed argmax sits in the broad hump
    g = np.array([0.0, 0.5, 0.6, 0.55, 0.1, 0.9, 0.0, 0.1])  # raw argmax: index 5
    assert seed_drop(g)["i_peak"] == 2 and seed_drop(g)["peak"] == pytest.approx((0.5 + 0.6 + 0.55) / 3)


def test_drop_test_against_the_t_formula():
    rng = np.random.default_rng(4)
    for _ in range(50):
        x = rng.normal(0.1, 0.2, rng.integers(2, 8))
        got = drop_test([{"drop": v, "peak": 1.0 + v, "last": 1.0} for v in x])
        k = len(x)
        t = x.mean() / (np.std(x, ddof=1) / math.sqrt(k))
        assert got["k"] == k and got["drop"] == pytest.approx(x.mean())
        assert got["t"] == pytest.approx(t) and got["p"] == pytest.approx(stats.t.sf(t, k - 1))
    one = drop_test([{"drop": 0.3, "peak": 1.3, "last": 1.0}])
    assert one["t"] is None and one["p"] is None and one["k"] == 1
    alike = drop_test([{"drop": 0.3, "peak": 1.3, "last": 1.0}] * 3)  # deterministic seeds: sd 0
    assert alike["t"] == math.inf and alike["p"] == 0.0
    assert drop_test([{"drop": 0.0, "peak": 1.0, "last": 1.0}] * 3)["p"] == 1.0


def test_rl_overopt_passes_a_clear_drop_over_three_seeds():
    # rise to about 0.5 then fall to 0.1: drop about 0.4 against noise 0.02
    rng = np.random.default_rng(6)
    base = np.array([0.0, 0.2, 0.35, 0.45, 0.5, 0.48, 0.4, 0.3, 0.2, 0.1])
    curves = [base + rng.normal(0, 0.02, len(base)) for _ in range(3)]
    row = _rl_check(_ladder_with_rl(_rl_seeds(curves)))
    drops = np.array([d["drop"] for d in seed_drops(curves)])
    t = drops.mean() / (drops.std(ddof=1) / math.sqrt(3))
    assert row["passed"] is True
    assert row["measured"].startswith(f"1k: {np.mean([d['peak'] for d in seed_drops(curves)]):.2f} -> ")
    assert f"drop {drops.mean():.3f}, t {t:.2f}, p {stats.t.sf(t, 2):.3g}, k 3)" in row["measured"]


def test_rl_overopt_fails_seeds_that_disagree_and_one_seed_cannot_be_judged():
    # the mean drop is positive, but one seed ends above its peak: over 3 seeds the mean is within noise
    base = np.array([0.0, 0.2, 0.35, 0.45, 0.5, 0.48, 0.4, 0.3])
    up, down = base.copy(), base.copy()
    up[-1], down[-1] = 1.5, -0.9
    row = _rl_check(_ladder_with_rl(_rl_seeds([up, down, base])))
    assert row["passed"] is False and "k 3)" in row["measured"]
    # one seed: never judged, however small its evaluation batch's standard error
    row = _rl_check(_ladder_with_rl(_rl_seeds([base], eval_se=1e-4)))
    assert row["passed"] is None
    assert "k 1: one seed, cannot be judged; evaluation-batch SE 0.000, not the judge" in row["measured"]


def test_rl_overopt_is_a_5_percent_test_on_flat_curves():
    """Flat curves (no over-optimization) with evaluation noise: the check passes about 5% of them, as a
    one-sided 5% test should, because each seed's peak is placed by the other seeds. Placing it by the
    seed's own curve (the argmax of its own noise) made the drop of a flat curve about 0.9 noise SDs and
    the pass rate 0.24 (k=3, 12 evaluations), 0.27 (16), 0.45 (k=4, 16): measured, and asserted here."""
    rng = np.random.default_rng(7)
    for k, n_eval in ((3, 12), (4, 16)):
        cross, own = [], []
        for _ in range(1000):
            curves = [0.4 + rng.normal(0, 0.05, n_eval) for _ in range(k)]
            cross.append(drop_test(seed_drops(curves))["p"] < 0.05)
            own.append(drop_test([seed_drop(c) for c in curves])["p"] < 0.05)
        # binomial SD of a 5% rate over 1000 tries: 0.007
        assert 0.025 <= np.mean(cross) <= 0.08, (k, n_eval, np.mean(cross))
        assert np.mean(own) > 0.15, (k, n_eval, np.mean(own))
    for _ in range(3):  # the check on a ladder gives the same verdict as the t-test on its seeds' drops
        curves = [0.4 + rng.normal(0, 0.05, 12) for _ in range(3)]
        want = drop_test(seed_drops(curves))["p"] < 0.05
        assert _rl_check(_ladder_with_rl(_rl_seeds(curves)))["passed"] is want


def test_seed_drops_place_each_peak_by_the_other_seeds():
    a = np.array([0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    b = np.array([0.0, 0.0, 0.0, 0.5, 1.0, 0.5, 0.0, 0.2])
    c = b + 0.1
    drops = seed_drops([a, b, c])
    # a's peak is placed by mean(b, c), whose smoothed curve peaks at index 4; a's own at 0 (end: (0+1)/2)
    assert drops[0]["i_peak"] == 4 and seed_drop(a)["i_peak"] == 0
    assert drops[0]["peak"] == pytest.approx(0.0) and drops[0]["drop"] == pytest.approx(0.0)
    # against a plain loop: the others' mean written out by hand
    for i, cur in enumerate((a, b, c)):
        others = [x for j, x in enumerate((a, b, c)) if j != i]
        assert drops[i] == seed_drop(cur, (others[0] + others[1]) / 2)
    assert seed_drops([a])[0] == seed_drop(a)


def _bad_replicate():
    """The largest proxy made the worst: best-gold ordering breaks."""
    return pd.concat([bon(s, a, b) for s, a, b in zip(SIZES, [0.5, 0.6, 0.7, 0.1], BETA_BON, strict=True)])


def test_checks_judge_each_replicate_alone_and_count_passes():
    from criteria.replicates import checks_by_replicate, replicate_verdicts

    good = world().assign(replicate=0)
    bad = _bad_replicate().assign(replicate=1)
    points = pd.concat([good, bad], ignore_index=True)
    fits = fits_of(points)
    by = checks_by_replicate(points, fits)
    # each replicate alone gives what gao_checks gives on that replicate's own table
    for k, own in ((0, good), (1, bad)):
        alone = by_name(gao_checks(own, fits_of(own)))
        assert {c["check"]: c["passed"] for c in by[k]} == {n: c["passed"] for n, c in alone.items()}
    rows = {r["check"]: r for r in replicate_verdicts(by, calibration=(0,))}
    assert rows["best_gold_order"]["passes"] == "1 of 2"
    assert rows["best_gold_order"]["held_out_passes"] == "0 of 1"
    assert rows["best_gold_order"]["replicates"] == "K0* pass, K1 FAIL"
    # the pooled table is never judged as one replicate
    assert [c["check"] for c in gao_checks(points, fits)] == ["one replicate"]


def test_finish_writes_criteria_per_replicate_and_the_report_leads_with_them(tmp_path):
    from figures.report import write_report
    from study.finish import write_results

    points = pd.concat([world().assign(replicate=0), _bad_replicate().assign(replicate=1)], ignore_index=True)
    write_results(tmp_path, points, preset="tiny", calibration=(0,))
    table = json.loads((tmp_path / "criteria_replicates.json").read_text())
    assert table["calibration"] == [0] and set(table["replicates"]) == {"0", "1"}
    rows = {r["check"]: r for r in table["summary"]}
    assert rows["best_gold_order"]["replicates"] == "K0* pass, K1 FAIL"
    # the advance checks are judged: write_results fits with d_cut_frac 0.6
    assert rows["bon_advance"]["replicates"].startswith("K0* pass")
    md = write_report(tmp_path, tmp_path / "figures").read_text()
    sections = [line for line in md.splitlines() if line.startswith("## ")]
    assert sections[0] == "## Verdict: Gao et al.'s claims pooled over replicates"  # verdict.json leads
    assert sections[1] == "## Gao et al.'s qualitative results over replicates"
    assert sections[-1] == "## Appendix: setup"
    assert "| best_gold_order | 1 of 2 | 0 of 1 | K0* pass, K1 FAIL |" in md


def test_row_keeps_the_schema_and_a_finite_statistic():
    r = row("x", "t", "m", None, float("inf"))
    assert r == {"check": "x", "target": "t", "measured": "m", "statistic": None, "passed": None}
    assert row("x", "t", "m", True, np.float64(0.5))["statistic"] == 0.5
    assert Ladder.half([5.0, 1.0, 3.0]) == [1.0, 3.0]


def test_rl_r2_fails_a_curve_the_law_cannot_follow():
    pts = world()
    mask = (pts.method == "rl") & (pts.rm_params == 1e5)
    rng = np.random.default_rng(9)
    pts.loc[mask, "gold"] = rng.normal(0, 0.05, int(mask.sum()))  # no shape at all: noise around 0
    r = checks(pts)["rl_r2"]
    assert r["passed"] is False and "below: 100k" in r["measured"] and r["statistic"] < 0.8


def test_checks_that_need_rl_or_more_sizes_are_not_judged_without_them():
    three = pd.concat([bon(s, a, b) for s, a, b in zip(SIZES[:3], ALPHA_BON[:3], BETA_BON[:3], strict=True)])
    by = checks(three)
    for name in [c for c in ALL if c not in ("bon_r2", "bon_advance", "bon_overopt")]:
        assert by[name]["passed"] is None, (name, by[name]["measured"])
    assert by["bon_r2"]["passed"] is True and by["bon_overopt"]["passed"] is True
