"""The `algo` grouping column (issue 35): RL rows of another optimizer (GRPO) are fitted apart from PPO's,
adding the column to PPO rows changes no fit number, a missing algo on an RL row means ppo, and the ladder
(what the criteria read) and the figures' main slice keep PPO's rows only."""

import numpy as np
import pandas as pd
from demo_data import synthetic_points

from figures.data import main_slice
from scaling.fitting import fit_table
from scaling.ladder import ladder
from scaling.points import GROUP_COLS, ppo_algo, validate_points


def _table():
    pts = synthetic_points(np.random.default_rng(0))
    pts = pts[(pts["data_size"] == pts["data_size"].max()) & (pts["policy_params"] == pts["policy_params"].max())]
    return pts[(pts["objective"] == "single") | pts["objective"].isna()].reset_index(drop=True)


def _numbers(fits):
    keys = ("method", "rm_params", "kl_coef", "alpha", "beta", "r2", "rmse", "n_points")
    return sorted((tuple(str(f.get(k)) for k in keys) for f in fits["fits"]), key=str)


def test_algo_column_keeps_ppo_fits_and_fits_grpo_apart():
    pts = _table()
    before = fit_table(pts, n_boot=20, seed=0)
    rl = pts["method"] == "rl"
    tagged = pts.assign(algo=np.where(rl, "ppo", None))
    grpo = pts[rl].assign(algo="grpo", gold=pts.loc[rl, "gold"] * 0.5)
    after = fit_table(pd.concat([tagged, grpo], ignore_index=True), n_boot=20, seed=0)
    assert "algo" in GROUP_COLS
    mine = [f for f in after["fits"] if f.get("algo") != "grpo"]
    assert _numbers({"fits": mine}) == _numbers(before)  # PPO's and best-of-n's numbers unchanged
    g = [f for f in after["fits"] if f.get("algo") == "grpo"]
    assert len(g) == sum(f["method"] == "rl" for f in before["fits"]) and all(f["method"] == "rl" for f in g)
    assert {f.get("algo") for f in mine if f["method"] == "rl"} == {"ppo"}


def test_missing_algo_means_ppo_and_the_main_slice_is_ppo():
    pts = _table()
    rl = pts["method"] == "rl"
    mixed = pd.concat([pts, pts[rl].assign(algo="grpo")], ignore_index=True)
    v = validate_points(mixed)
    assert set(v.loc[v["method"] == "rl", "algo"]) == {"ppo", "grpo"}
    assert v.loc[v["method"] == "bon", "algo"].isna().all()
    assert len(ppo_algo(v)) == len(pts)
    assert len(ladder(v)) == len(ladder(pts))
    assert (main_slice(v).get("algo", pd.Series(dtype=object)).dropna() == "ppo").all()


def test_grpo_and_ensemble_objectives_add_instances_and_change_no_id():
    from study import stages
    from study.presets import resolve

    base = resolve("tiny", ["ladder.ensemble_size=3"])
    extra = ["rl.algos=['ppo','grpo']", "rl.objectives=['single','min','uwo']"]
    more = resolve("tiny", ["ladder.ensemble_size=3", *extra])
    a, b = ({i.label: i for i in stages.plan(c)} for c in (base, more))
    assert {k: v.id for k, v in a.items()} == {k: b[k].id for k in a}  # every default instance keeps its id
    new = {k: v for k, v in b.items() if k not in a}
    assert {v.stage.name for v in new.values()} == {"grpo", "rl_objective"}
    assert sorted(k for k, v in new.items() if v.stage.name == "rl_objective" and "proxy[1]" in k) == [
        "rl:proxy[1]:min",
        "rl:proxy[1]:uwo",
    ]
    uwo = b["rl:proxy[1]:uwo"]
    assert uwo.params == {"objective": "uwo"} and uwo.reads["uwo_lambda"] == "bon.uwo_lambda"
    assert "uwo_lambda" not in b["rl:proxy[1]:min"].reads
