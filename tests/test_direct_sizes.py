"""DPO/IPO across policy sizes (`figures.report_direct_sizes`): the per-size table and the "smaller policies
degrade sooner" verdicts against a hand-made table."""

import pandas as pd
import pytest

from figures.data import FigureData
from figures.report_direct_sizes import direct_size_blocks, pair_verdict, size_table, sooner


def _rows(algo, pp, beta, golds, kls, se=0.02):
    """golds, kls: one list a seed (steps 0, 1, 2, ...; epoch = step / 2)."""
    out = []
    for seed, (gs, ks) in enumerate(zip(golds, kls)):
        for step, (g, k) in enumerate(zip(gs, ks)):
            row = {"method": "rl", "algo": algo, "policy_params": pp, "beta_dpo": beta, "kl_coef": beta}
            out.append(row | {"seed": seed, "step": step, "epoch": step / 2, "gold": g, "kl": k, "gold_eval_se": se})
    return out


def points() -> pd.DataFrame:
    rows = _rows("dpo", 1e4, 0.1, [[0, 0.5, 0.3, 0.1], [0, 0.7, 0.5, 0.1]], [[0, 0.5, 1, 2], [0, 0.7, 1, 2]])
    rows += _rows("dpo", 1e5, 0.1, [[0, 0.2, 0.4, 0.6]] * 2, [[0, 0.5, 1.5, 3.0]] * 2)
    rows += _rows("dpo", 1e4, 0.5, [[0, 0.1, 0.2, 0.3]] * 2, [[0, 0.1, 0.2, 0.3]] * 2)
    rows += _rows("dpo", 1e5, 0.5, [[0, 0.2, 0.5, 0.2]] * 2, [[0, 0.5, 1.0, 2.0]] * 2)
    rows += _rows("ipo", 1e4, 0.1, [[0, 0.2, 0.3, 0.6, 0.1]] * 2, [[0, 0.5, 1, 2, 3]] * 2)
    rows += _rows("ipo", 1e5, 0.1, [[0, 0.2, 0.6, 0.3]] * 2, [[0, 0.5, 1, 2]] * 2)
    rows += _rows("ipo", 1e6, 0.1, [[0, 0.4, 0.35]] * 2, [[0, 1, 2]] * 2, se=0.1)  # a drop within 2 SE
    rows += _rows("slic", 1e4, 0.1, [[0, 0.5, 0.1]], [[0, 1, 2]])  # one size: no verdict
    rows += [{"method": "rl", "algo": "ppo", "policy_params": 1e4, "kl": 1.0, "gold": 9.0, "step": 1, "seed": 0}]
    return pd.DataFrame(rows)


def test_size_table_by_hand():
    t = size_table(points()).set_index(["algo", "policy_params", "beta"])
    assert len(t) == 8  # ppo rows ignored
    r = t.loc[("dpo", 1e4, 0.1)]  # pooled gold 0, 0.6, 0.4, 0.1; kl 0, 0.6, 1, 2
    assert (r["seeds"], r["peak_step"], r["peak_epoch"], r["last_gold"], r["kl_max"]) == (2, 1, 0.5, 0.1, 2.0)
    assert r["peak_gold"] == pytest.approx(0.6) and r["kl_peak"] == pytest.approx(0.6) and r["fell"]
    assert not t.loc[("dpo", 1e5, 0.1), "fell"]  # peak at the last checkpoint
    assert t.loc[("dpo", 1e5, 0.5), "fell"] and t.loc[("dpo", 1e5, 0.5), "kl_peak"] == 1.0
    # the pooled SE is sqrt(2 * 0.1^2) / 2 = 0.0707 a checkpoint: a drop of 0.05 is within 2 * 0.1
    assert not t.loc[("ipo", 1e6, 0.1), "fell"] and t.loc[("ipo", 1e6, 0.1), "peak_gold"] == pytest.approx(0.4)
    assert t.loc[("ipo", 1e4, 0.1), "kl_peak"] == 2.0 and t.loc[("ipo", 1e4, 0.1), "fell"]


def test_sooner_verdicts_by_hand():
    got = {(c["algo"], c["beta"]): (c["pairs"], c["claim"]) for c in sooner(size_table(points()))}
    assert got == {
        ("dpo", 0.1): (["yes"], "holds"),  # the smaller fell at KL 0.6; the larger went to 3 without falling
        ("dpo", 0.5): (["undecided"], "not judged"),  # the smaller never reached the larger's peak KL (1.0)
        # 10k and 100k both fell, the smaller at more KL (2 > 1); 1M went past 100k's peak KL (1) to 2 and its
        # drop is within 2 SE: the middle one degraded sooner
        ("ipo", 0.1): (["no", "yes"], "fails"),
    }
    base = {"fell": False, "kl_peak": 1.0, "kl_max": 1.0}
    assert pair_verdict(base, base) == "undecided"
    assert pair_verdict(base | {"kl_max": 2.0}, base | {"fell": True}) == "no"
    assert pair_verdict(base | {"fell": True}, base | {"fell": True, "kl_peak": 1.5}) == "yes"
    assert pair_verdict(base | {"fell": True}, base) == "undecided"  # the larger stopped at the same KL


def test_blocks():
    blocks = direct_size_blocks(FigureData(points=points(), fits={}))
    assert blocks[0] == ("h2", "Direct alignment across policy sizes")
    assert blocks[2][2][0][:3] == ["dpo", "10k", "0.1"] and blocks[2][2][0][-1] == "yes"
    assert "holds for 1 of 3 (algo, beta) curves, fails for 1, and is not judged for 1" in blocks[-1][1]
    one = points()
    assert direct_size_blocks(FigureData(points=one[one["policy_params"] == 1e4], fits={})) == []
    assert size_table(one[one["algo"] == "ppo"]).empty


def test_kl_penalty_figure_skips_direct_only_points(tmp_path):
    """A sweep of direct alignment alone (kl_coef = beta, no proxy) has no KL-penalty figure to draw: a Skip,
    not an IndexError (dpo_sizes_tiny's aggregation hit it)."""
    from figures import kl_penalty
    from figures.data import Skip

    with pytest.raises(Skip):
        kl_penalty.make(FigureData(points=points().assign(rm_params=None), fits={}), tmp_path)
