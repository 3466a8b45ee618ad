"""Best-of-n's selection rules in one points table (`rule`: max, soft, poisson, regularized): every fit is
per rule, and the main slice that criteria, figures and the report read is the max rule's, so adding the
other rules' rows to a study changes none of its checks, fits of the max rule, or figure curves."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from criteria_world import ALPHA_BON, BETA_BON, FULL, SIZES, proxies, world

from criteria import gao_checks
from figures.data import FigureData, curve, fit_points, main_slice
from scaling.fitting import fit_table
from scaling.groups import curve_key
from scaling.points import is_max_rule, max_rule, validate_points

OTHER_RULES = ("soft", "poisson")


def rule_rows(seed=1) -> pd.DataFrame:
    """Each proxy's soft and Poisson curves: one row a parameter value, gold unlike best-of-n's (higher
    alpha, a later peak, an offset), n fixed (soft) or missing (Poisson)."""
    rng = np.random.default_rng(seed)
    frames = []
    for size, a, b in zip(SIZES, ALPHA_BON, BETA_BON, strict=True):
        kl = np.linspace(0.05, 7.0, 10)
        d = np.sqrt(kl)
        for rule, scale, shift in (("soft", 1.6, 0.2), ("poisson", 0.7, -0.1)):
            frames.append(
                pd.DataFrame(
                    {
                        "method": "bon",
                        "rule": rule,
                        "n": 4096.0 if rule == "soft" else np.nan,
                        "param_value": np.geomspace(0.1, 100.0, len(kl)),
                        "kl": kl,
                        "gold": d * (scale * a - 0.5 * b * d) + shift + rng.normal(0, 0.01, len(kl)),
                        "gold_se": 0.01,
                        "rm_params": size,
                        "data_size": FULL,
                        "objective": "single",
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def tables():
    base = world()
    mixed = pd.concat([base, rule_rows()], ignore_index=True)
    fit = lambda t: fit_table(t, n_boot=40, seed=0, d_cut_frac=0.6)
    return base, mixed, fit(base), fit(mixed)


def without_rule(rows):
    return [{k: v for k, v in r.items() if k != "rule"} for r in rows]


def test_max_rule_filter_on_columns_and_values():
    col = pd.Series(["max", None, np.nan, "soft", "poisson", "regularized"], dtype=object)
    assert is_max_rule(col).tolist() == [True, True, True, False, False, False]
    assert is_max_rule(pd.Series([np.nan, np.nan])).tolist() == [True, True]
    for v, want in [(None, True), (math.nan, True), (pd.NA, True), ("max", True), ("soft", False)]:
        assert is_max_rule(v) is want
    df = pd.DataFrame({"rule": col, "gold": range(6)})
    assert max_rule(df)["gold"].tolist() == [0, 1, 2]
    assert max_rule(df.drop(columns="rule")) is not None and len(max_rule(df.drop(columns="rule"))) == 6


def test_one_fit_per_rule_and_proxy_each_carrying_its_rule(tables):
    _, _, _, fits = tables
    bon = [r for r in fits["fits"] if r["method"] == "bon"]
    assert sorted((r["rm_params"], r["rule"]) for r in bon) == sorted(
        (s, rule) for s in SIZES for rule in ("max", *OTHER_RULES)
    )
    assert {r["rule"] for r in fits["fits"] if r["method"] == "rl"} == {None}  # RL has no rule
    # the other rules' fits describe their own curves: one curve point a parameter value
    assert {r["n_points"] for r in bon if r["rule"] != "max"} == {10}
    # coefficient scaling per rule: one alpha_bon scaling row per rule
    alpha = [s for s in fits["scaling"] if s["method"] == "bon" and s["coef"] == "alpha" and s["x"] == "rm_params"]
    assert sorted(s["rule"] for s in alpha) == sorted(("max", *OTHER_RULES))


def test_fits_of_the_max_rule_are_unchanged_by_other_rules(tables):
    _, _, base_fits, fits = tables
    for key in ("fits", "scaling", "advance"):
        mine = [r for r in fits[key] if is_max_rule(r.get("rule"))]
        assert without_rule(mine) == base_fits[key], key  # intervals too: the other rules draw after


def test_criteria_are_unchanged_by_other_rules(tables):
    base, mixed, base_fits, fits = tables
    prox = proxies([0.69, 0.66, 0.62, 0.58])
    want = gao_checks(base, base_fits, proxies=prox)
    assert gao_checks(mixed, fits, proxies=prox) == want
    # the rules' rows written as "max" (not missing) change nothing either
    assert gao_checks(validate_points(mixed), fits, proxies=prox) == want
    # ... while the checks would see them if they were best-of-n's own rows: the test can fail
    pooled = mixed.assign(rule=None).drop(columns="rule")
    assert gao_checks(pooled, fit_table(pooled, n_boot=0, d_cut_frac=0.6), proxies=prox) != want


def test_main_slice_and_figure_data_are_unchanged_by_other_rules(tables):
    base, mixed, base_fits, fits = tables
    a, b = main_slice(validate_points(base)), main_slice(validate_points(mixed))
    assert set(b["rule"].dropna()) == {"max"}
    cols = list(base.columns)
    pd.testing.assert_frame_equal(a[cols].reset_index(drop=True), b[cols].reset_index(drop=True), check_dtype=False)
    for (key, ga), (_, gb) in zip(a.groupby(["method", "rm_params"]), b.groupby(["method", "rm_params"]), strict=True):
        pd.testing.assert_frame_equal(curve(ga)[["kl", "gold"]], curve(gb)[["kl", "gold"]], obj=str(key))
    # figures that read fit rows and their points
    from figures.coef_vs_rm_size import fit_frame
    from figures.predicted_peaks import observed_peaks

    fa, fb = fit_frame(base_fits["fits"], "rm_params"), fit_frame(fits["fits"], "rm_params")
    pd.testing.assert_frame_equal(fa.reset_index(drop=True), fb.drop(columns="rule").reset_index(drop=True))
    pa = observed_peaks(FigureData(points=validate_points(base), fits=base_fits))
    pb = observed_peaks(FigureData(points=validate_points(mixed), fits=fits))
    assert pa == pb and len(pa) > 0
    # a soft fit row takes the soft points; a fit row without a rule the max rule's
    soft = next(r for r in fits["fits"] if r.get("rule") == "soft")
    assert set(fit_points(validate_points(mixed), soft)["rule"]) == {"soft"}
    no_rule = {k: v for k, v in soft.items() if k != "rule"}
    assert set(fit_points(validate_points(mixed), no_rule)["rule"]) == {"max"}


def test_curves_of_other_rules_are_by_kl():
    rows = validate_points(rule_rows())
    soft = rows[rows["rule"] == "soft"]
    assert curve_key(soft, "bon") == "kl" and len(curve(soft[soft["rm_params"] == SIZES[0]])) == 10
    assert curve_key(validate_points(world()).query("method == 'bon'"), "bon") == "n"


def test_study_finish_writes_max_rule_criteria_and_per_rule_fits(tmp_path):
    """write_results (a study's and a sweep's finish step) on a table with rule rows: criteria.json as
    without them; fits.json has every rule's fits (the per-prompt rows replace the max rule's only)."""
    from criteria_world import bon_prompts

    from study.finish import write_results

    base = world(seeds=(0, 1))
    prompts = pd.concat([bon_prompts(s, a, b, n_prompts=8) for s, a, b in zip(SIZES, ALPHA_BON, BETA_BON)])
    write_results(tmp_path / "a", base, bon_prompts=prompts)
    write_results(tmp_path / "b", pd.concat([base, rule_rows()], ignore_index=True), bon_prompts=prompts)
    read = lambda d, f: json.loads((tmp_path / d / f).read_text())
    assert read("a", "criteria.json") == read("b", "criteria.json")
    fa, fb = read("a", "fits.json"), read("b", "fits.json")
    assert without_rule([r for r in fb["fits"] if is_max_rule(r.get("rule"))]) == fa["fits"]
    assert {r["rule"] for r in fb["fits"] if r["method"] == "bon"} == {"max", *OTHER_RULES}
    assert {r["interval"] for r in fb["fits"] if r.get("rule") == "max"} == {"prompts"}


def test_fit_cli_table_shows_the_rule(tables):
    from overopt.fit import format_result

    _, _, _, fits = tables
    text = format_result(fits)
    assert "rule=soft" in text and "rule=poisson" in text and "rule=max" in text
