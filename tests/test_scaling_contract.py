"""The points-table contract in scaling.points (grouping columns, the single-objective rule) and
scaling.fitting.fittable (which groups fit_table can fit)."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from core.errors import UsageError
from scaling.fitting import MIN_POINTS, fit_table, fittable
from scaling.laws import bon_law
from scaling.points import GROUP_COLS, SIZE_COLS, is_single_objective, single_objective


def test_group_cols_hold_the_ensemble_columns_the_replicate_the_rule_and_the_sizes():
    # replicate after objective: replicates are grouped apart (never pooled by accident); then the rule (the
    # selection rules of best-of-n are never pooled), the optimizer (`algo`) and a trainer's run (each input
    # run its own curve): tables without these columns group as before
    assert GROUP_COLS[-6:] == ("objective", "replicate", "ensemble_size", "rule", "algo", "run")
    assert set(SIZE_COLS) <= set(GROUP_COLS)


def test_single_objective_rule_on_columns_and_values():
    col = pd.Series(["single", None, np.nan, "mean", "min"], dtype=object)
    assert is_single_objective(col).tolist() == [True, True, True, False, False]
    assert is_single_objective(pd.Series([np.nan, np.nan])).tolist() == [True, True]  # an all-NaN float column
    for v, want in [
        (None, True),
        (math.nan, True),
        (np.float64("nan"), True),
        (pd.NA, True),
        ("single", True),
        ("mean", False),
        ("uwo", False),
    ]:
        assert is_single_objective(v) is want
    df = pd.DataFrame({"objective": col, "gold": range(5)})
    assert single_objective(df)["gold"].tolist() == [0, 1, 2]
    no_col = df.drop(columns="objective")
    assert single_objective(no_col) is no_col


def _points(n_per_group: dict) -> pd.DataFrame:
    """One BoN curve per rm_params with the given number of points at kl > 0, plus one point at kl = 0."""
    frames = []
    for size, n in n_per_group.items():
        d = np.linspace(0.3, 2.0, n)
        frames.append(
            pd.DataFrame(
                {
                    "method": "bon",
                    "rm_params": np.float64(size),
                    "kl": np.r_[0.0, d**2],
                    "gold": np.r_[0.0, bon_law(d, 1.0, 0.3)],
                    "objective": None,
                    "ensemble_size": np.nan,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _reference(points: pd.DataFrame, by: list[str]):
    """A plain loop: the groups with >= MIN_POINTS points at kl > 0 kept, the others listed."""
    keep, left = [], []
    for key, sub in points.groupby(by, dropna=False, sort=False):
        if int((sub["kl"] > 0).sum()) >= MIN_POINTS:
            keep += list(sub.index)
        else:
            left.append(dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True)))
    return points.loc[sorted(keep)], left


def test_fittable_keeps_groups_with_enough_points_and_lists_the_rest():
    points = _points({1e4: 2, 1e5: 3, 1e6: 8})  # the kl = 0 point of the 1e4 group does not count
    fit_input, unfitted = fittable(points)
    ref_input, ref_left = _reference(points, [c for c in GROUP_COLS if c in points.columns])
    pd.testing.assert_frame_equal(fit_input, ref_input)
    assert unfitted == [{"method": "bon", "rm_params": 1e4, "objective": None, "ensemble_size": None}]
    assert ref_left[0]["rm_params"] == 1e4
    json.dumps(unfitted, allow_nan=False)  # JSON-safe: no NaN, no numpy scalars
    assert type(unfitted[0]["rm_params"]) is float
    assert [r["rm_params"] for r in fit_table(fit_input, n_boot=0)["fits"]] == [1e5, 1e6]
    with pytest.raises(UsageError, match="has 2 points with d > 0"):
        fit_table(points, n_boot=0)


def test_fittable_by_columns():
    points = _points({1e4: 2, 1e5: 3})
    fit_input, unfitted = fittable(points, by=["method"])  # one group of 5 points at kl > 0
    assert len(fit_input) == len(points) and unfitted == []
    fit_input, unfitted = fittable(points, by="method,rm_params")
    assert unfitted == [{"method": "bon", "rm_params": 1e4}]
    fit_input, unfitted = fittable(points.iloc[:3], by=[])  # one group, 2 points at kl > 0
    assert fit_input.empty and unfitted == [{}]
    with pytest.raises(UsageError, match="unknown --by column 'seed'"):
        fittable(points, by=["seed"])


def test_fit_rows_carry_every_group_column():
    rows = fit_table(_points({1e5: 5, 1e6: 5}), n_boot=0)["fits"]
    assert all(r["ensemble_size"] is None and r["objective"] is None for r in rows)


def test_replicate_spread_matches_a_hand_computation():
    from scaling.replicates import replicate_spread

    def row(k, rm, a, b):
        return {"method": "bon", "rm_params": rm, "replicate": k, "alpha": a, "beta": b, "converged": True}

    fits = [row(0, 10, 1.0, 0.1), row(1, 10, 2.0, 0.3), row(2, 10, 4.0, 0.2), row(0, 20, 5.0, 0.5)]
    spread = {(r["rm_params"], r["coef"]): r for r in replicate_spread(fits)}
    assert set(spread) == {(10, "alpha"), (10, "beta")}  # rm 20 has one replicate: no spread
    a = spread[(10, "alpha")]
    assert a["k"] == 3 and a["mean"] == pytest.approx(7 / 3)
    assert a["sd"] == pytest.approx(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) ** 0.5 / 2**0.5)
    assert (a["min"], a["max"], a["values"]) == (1.0, 4.0, {"0": 1.0, "1": 2.0, "2": 4.0})
    assert replicate_spread([row(0, 10, 1.0, 0.1)]) == []
