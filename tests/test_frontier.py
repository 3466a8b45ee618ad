"""Constrained PPO's frontier against the KL-penalty sweep's (`figures.frontier`, `figures.report_frontier`): the
end points, intervals and comparison against a table computed by hand; the figure renders; the section's text."""

import math

import pandas as pd
import pytest

from figures.data import FigureData, Skip
from figures.frontier import compare, frontier_data, knob_table, make, t_interval, verdict
from figures.report_frontier import frontier_blocks

T1 = 12.706204736174698  # t_{0.975} with 1 degree of freedom (tables)

# (step, kl, gold, proxy) paths, by (knob, seed)
PENALTY = {
    (0.0, 0): [(0, 0, 0, 0), (1, 1, 0.5, 1), (2, 9, -1, 3)],
    (0.0, 1): [(0, 0, 0, 0), (1, 1, 0.7, 1.2), (2, 16, -2, 4)],
    (0.5, 0): [(0, 0, 0, 0), (1, 0.25, 0.2, 0.5), (2, 1, 0.4, 0.8)],
    (0.5, 1): [(0, 0, 0, 0), (1, 0.25, 0.3, 0.5), (2, 4, 0.6, 1.0)],
}
CONSTRAINED = {
    (1.0, 0): [(0, 0, 0, 0), (1, 1, 0.6, 1.2), (2, 4, 0.5, 1.0)],
    (1.0, 1): [(0, 0, 0, 0), (1, 1, 0.2, 0.9), (2, 9, 0.3, 1.1)],
    (2.0, 0): [(0, 0, 0, 0), (1, 1, 0.6, 1.2), (2, 25, -3, 5)],
    (2.0, 1): [(0, 0, 0, 0), (1, 1, 0.6, 1.2), (2, 9, -1, 2)],
}


def _rows(paths, **cols):
    out = []
    for (knob, seed), path in paths.items():
        for step, kl, gold, proxy in path:
            row = {"method": "rl", "step": step, "kl": kl, "gold": gold, "proxy": proxy, "seed": seed}
            out.append(row | {"rm_params": 4000.0, "policy_params": 1e5, **{k: v(knob) for k, v in cols.items()}})
    return out


def points() -> pd.DataFrame:
    rows = _rows(PENALTY, kl_coef=lambda k: k, algo=lambda k: None)  # a missing algo means ppo
    rows += _rows(CONSTRAINED, kl_coef=lambda k: 0.0, algo=lambda k: "ppo_constrained", constraint_threshold=float)
    noise = {k: [(s, kl, 9.0, p) for s, kl, _, p in v] for k, v in CONSTRAINED.items()}
    rows += _rows(noise, kl_coef=lambda k: 0.1, algo=lambda k: "ppo_constrained", constraint_threshold=float)
    rows += _rows(PENALTY, kl_coef=lambda k: k, algo=lambda k: "ppo", objective=lambda k: "min")  # an ensemble
    rows += _rows(PENALTY, kl_coef=lambda k: k, algo=lambda k: "grpo")
    rows += [r | {"rm_params": 1000.0, "gold": 9.0} for r in _rows(PENALTY, kl_coef=lambda k: k)]  # another proxy
    rows += [{"method": "bon", "n": 1, "kl": 0.0, "gold": 0.0, "proxy": 0.0, "rm_params": 4000.0}]
    return pd.DataFrame(rows)


def test_end_points_and_intervals_by_hand():
    fr = frontier_data(points())
    assert fr.proxy == 4000.0
    ends = fr.ends.set_index(["family", "knob", "seed"])
    assert len(ends) == 8  # the kl_coef 0.1 constrained runs, the ensemble, GRPO and the other proxy dropped
    assert ends.loc[("ppo", 0.0, 1)].to_dict() == {
        "kl": 16.0, "gold": -2.0, "proxy": 4.0, "gold_peak": 0.7, "kl_peak": 1.0
    }  # fmt: skip
    assert ends.loc[("ppo_constrained", 1.0, 0), ["gold", "gold_peak", "kl_peak"]].tolist() == [0.5, 0.6, 1.0]
    t = knob_table(fr.ends).set_index(["family", "knob"])
    r = t.loc[("ppo", 0.0)]
    assert (r["seeds"], r["kl"], r["gold"], r["proxy"], r["gold_peak"]) == (2, 12.5, -1.5, 3.5, pytest.approx(0.6))
    half = T1 * math.sqrt(0.5) / math.sqrt(2)  # sd of (-1, -2) = sqrt(0.5)
    assert (r["gold_lo"], r["gold_hi"]) == (pytest.approx(-1.5 - half), pytest.approx(-1.5 + half))
    assert t.loc[("ppo_constrained", 1.0), "gold"] == pytest.approx(0.4)
    assert t_interval([3.0])[0] == 3.0 and math.isnan(t_interval([3.0])[1])


def test_comparison_by_hand():
    points_, overall = compare(frontier_data(points()).ends)
    one, two = points_
    # seed 0: penalty end points (d 1, gold 0.4), (d 3, -1); theta 1 ends at d 2: frontier -0.3, delta 0.8.
    # seed 1: (d 2, 0.6), (d 4, -2); theta 1 ends at d 3: frontier -0.7, delta 1.0.
    assert one["knob"] == 1.0 and one["in_range"]
    assert one["penalty_gold"] == pytest.approx(-0.5) and one["delta"] == pytest.approx(0.9)
    half = T1 * math.sqrt(0.02) / math.sqrt(2)  # sd of (0.8, 1.0)
    assert (one["low"], one["high"]) == (pytest.approx(0.9 - half), pytest.approx(0.9 + half))
    assert one["verdict"] == "at"
    assert two["knob"] == 2.0 and not two["in_range"] and "delta" not in two  # seed 0 ends at d 5 > 3
    assert overall["n_points"] == 1 and overall["seeds"] == 2
    assert overall["delta"] == pytest.approx(0.9) and overall["verdict"] == "at"
    assert [verdict(0.1, 0.3), verdict(-0.3, -0.1), verdict(-0.1, 0.1), verdict(math.nan, math.nan)] == [
        "above", "below", "at", "-"
    ]  # fmt: skip


def test_one_seed_has_no_interval():
    pts = points()
    points_, overall = compare(frontier_data(pts[pts["seed"].isna() | (pts["seed"] == 0)]).ends)
    assert points_[0]["delta"] == pytest.approx(0.8) and points_[0]["verdict"] == "-"
    assert points_[1]["in_range"] is False
    assert overall["verdict"] == "-"


def test_figure_renders_and_section(tmp_path):
    data = FigureData(points=points(), fits={})
    files = make(data, tmp_path)
    assert [p.suffix for p in files] == [".png", ".pdf"] and files[0].stat().st_size > 5000
    blocks = frontier_blocks(data)
    assert blocks[0] == ("h2", "Constrained PPO against the KL-penalty sweep")
    table = blocks[2]
    assert [r[:2] for r in table[2]] == [
        ["PPO", "kl_coef 0"],
        ["PPO", "kl_coef 0.5"],
        ["constrained PPO", "proxy <= 1"],
        ["constrained PPO", "proxy <= 2"],
    ]
    assert "PPO: best gold at the end 0.5 [" in blocks[3][1] and "at KL 2.5 (kl_coef 0.5)" in blocks[3][1]
    assert blocks[5][2][1][3] == "outside the penalty sweep's KL"
    assert "is not told apart from the penalty sweep's" in blocks[6][1]


def test_skip_without_both_families(tmp_path):
    pts = points()
    no_con = pts[pts["algo"] != "ppo_constrained"]
    assert frontier_data(no_con) is None and frontier_blocks(FigureData(points=no_con, fits={})) == []
    with pytest.raises(Skip):
        make(FigureData(points=no_con, fits={}), tmp_path)
    only_con = pts[pts["algo"] == "ppo_constrained"]
    assert frontier_data(only_con) is None
