"""Direct alignment (direct/): the DPO, IPO and SLiC losses against float64 numpy formulas, each loss
improving its own objective on the probe task (tests/ppo_probe.py: gold 1 when the response holds TARGET),
a vmapped grid point equal to the single run, the evaluation schedule and the points rows."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ppo_probe import GOLD, POISON, REWARD, TARGET, P, T, make_bank

from core.errors import UsageError
from core.tokens import N_SPECIAL
from direct.config import DirectConfig, eval_steps
from direct.losses import margin, pair_loss
from direct.train import make_direct, points_from_rows, train_direct
from lm.reward_train import Comparisons

CFG = DirectConfig(batch_size=32, max_new=T, eval_batch=64, epochs=2, evals_per_epoch=2, lr=3e-3, fast_compile=True)


def test_losses_against_float64_numpy():
    rng = np.random.default_rng(0)
    lw, rw, ll, rl = (rng.normal(-8.0, 3.0, size=50) for _ in range(4))
    h = (lw - rw) - (ll - rl)
    for beta in (0.05, 0.5, 2.0):
        want = {
            "dpo": np.log1p(np.exp(-beta * h)),  # -log sigmoid(beta h)
            "ipo": (h - 1.0 / (2.0 * beta)) ** 2,
            "slic": np.maximum(0.0, 1.0 - beta * h),
        }
        got_h = margin(*(jnp.asarray(x, jnp.float32) for x in (lw, rw, ll, rl)))
        np.testing.assert_allclose(np.asarray(got_h), h, rtol=1e-5, atol=1e-4)
        for name, w in want.items():
            got = np.asarray(pair_loss(name, jnp.asarray(h, jnp.float32), jnp.float32(beta)))
            np.testing.assert_allclose(got, w, rtol=1e-5, atol=1e-5, err_msg=f"{name} beta={beta}")
    assert float(pair_loss("dpo", jnp.float32(-1e4), 1.0)) == pytest.approx(1e4)  # stable far in the tail


def probe_comparisons(n=512, seed=0):
    """Pairs of random responses: one side holds TARGET (gold 1), the other does not; label 1 when side a does."""
    rng = np.random.default_rng(seed)
    bank = make_bank(n, seed)
    plain = [t for t in range(N_SPECIAL, POISON) if t != TARGET]
    good = rng.choice(plain, size=(n, T))
    good[np.arange(n), rng.integers(0, T, n)] = TARGET
    bad = rng.choice(plain, size=(n, T))
    label = rng.integers(0, 2, n).astype(np.int8)
    a = np.where(label[:, None] == 1, good, bad)
    b = np.where(label[:, None] == 1, bad, good)
    tok = lambda r: np.concatenate([bank, r], axis=1).astype(np.int32)
    full = np.ones((n, T), bool)
    return Comparisons(tok(a), full, tok(b), full, label, P)


@pytest.mark.parametrize("loss", ["dpo", "ipo", "slic"])
def test_each_loss_improves_its_objective_on_the_probe(loss, probe_policy):
    cfg = dataclasses.replace(CFG, loss=loss)
    rows = train_direct(probe_policy, REWARD, GOLD, probe_comparisons(), make_bank(), cfg, [(0.1, 0), (0.5, 1)])
    pts = points_from_rows(rows, loss, policy_params=7)
    assert sorted(set(pts["step"])) == eval_steps(cfg, 16) == [0, 8, 16, 24, 32]
    assert (
        set(pts["algo"]) == {loss} and set(pts["beta_dpo"]) == {0.1, 0.5} and (pts["kl_coef"] == pts["beta_dpo"]).all()
    )
    np.testing.assert_allclose(sorted(set(pts["epoch"])), [0, 0.5, 1, 1.5, 2])
    for beta in (0.1, 0.5):
        train = [r for r in rows if r["split"] == "train" and r["beta"] == beta]
        first = train[0]["loss"]
        start = {"dpo": np.log(2.0), "ipo": (1.0 / (2.0 * beta)) ** 2, "slic": 1.0}[loss]  # h = 0 at the reference
        assert first == pytest.approx(start, rel=1e-3)
        assert np.mean([r["loss"] for r in train[-4:]]) < 0.7 * start  # its own objective went down
        curve = pts[pts["beta_dpo"] == beta].sort_values("step")
        assert curve["kl"].iloc[0] < 1e-5 and curve["kl"].iloc[-1] > 0.05
        assert curve["gold"].iloc[-2:].mean() > curve["gold"].iloc[0] + 0.15  # preferring TARGET raised gold
        assert (curve["kl_se"].iloc[1:] > 0).all() and (curve["kl_k3"] >= -1e-6).all()


def test_vmapped_grid_point_equals_single_run(probe_policy):
    graphdef, state = probe_policy
    fns = make_direct(graphdef, REWARD.fn, GOLD.fn, CFG.static(), P)
    c = probe_comparisons(64)
    ref_a, ref_b = fns.ref(state, c.tokens_a, c.mask_a), fns.ref(state, c.tokens_b, c.mask_b)
    hyper = [CFG.hyper(0.1), CFG.hyper(1.0)]
    stacked = type(hyper[0])(*(jnp.stack([h[i] for h in hyper]) for i in range(len(hyper[0]))))
    arrays = (c.tokens_a, c.mask_a, c.tokens_b, c.mask_b, c.label.astype(np.int32), ref_a, ref_b)
    idx = np.stack([np.arange(32), np.arange(32, 64)])
    grid, m_grid = fns.step_grid(
        fns.init_grid(state, stacked), stacked, tuple(jnp.asarray(np.asarray(x)[idx]) for x in arrays)
    )
    g = 1
    one = jax.tree.map(lambda x: x[g], fns.init_grid(state, stacked))
    single, m = fns.step(one, hyper[g], tuple(jnp.asarray(np.asarray(x)[idx[g]]) for x in arrays))
    for a, b in zip(jax.tree.leaves(jax.tree.map(lambda x: x[g], grid)), jax.tree.leaves(single), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
    for k in m:
        np.testing.assert_allclose(np.asarray(m_grid[k][g]), np.asarray(m[k]), rtol=1e-4, atol=1e-5, err_msg=k)


def test_config_checks_and_schedule():
    assert eval_steps(dataclasses.replace(CFG, epochs=3, evals_per_epoch=1), 10) == [0, 10, 20, 30]
    assert eval_steps(dataclasses.replace(CFG, epochs=1, evals_per_epoch=3), 10) == [0, 3, 7, 10]
    assert float(CFG.hyper(0.3).beta) == pytest.approx(0.3)
    for bad in ({"loss": "kto"}, {"batch_size": 0}, {"beta": 0.0}, {"max_pairs": 0}):
        with pytest.raises(UsageError):
            dataclasses.replace(CFG, **bad)
    with pytest.raises(UsageError, match="beta > 0"):
        train_direct(None, REWARD, GOLD, probe_comparisons(32), make_bank(), CFG, [(0.0, 0)])


def test_stage_is_optional_changes_no_default_id_and_fits_keep_algos_apart():
    from scaling.fitting import fit_table
    from study import stages
    from study.presets import resolve

    base = resolve("tiny", [])
    more = resolve("tiny", ["rl.algos=['ppo','dpo','ipo']", "rl.direct_betas=[0.1,0.3]"])
    a, b = ({i.label: i for i in stages.plan(c)} for c in (base, more))
    assert {k: v.id for k, v in a.items()} == {k: b[k].id for k in a}
    new = {k: v for k, v in b.items() if k not in a}
    assert sorted(new) == ["dpo:dpo", "dpo:ipo"] and new["dpo:ipo"].params == {"algo": "ipo"}
    assert new["dpo:dpo"].inputs["labels"].stage.name == "labels" and new["dpo:dpo"].id != new["dpo:ipo"].id
    with pytest.raises(UsageError, match="direct_betas"):
        resolve("tiny", ["rl.algos=['dpo']", "rl.direct_betas=[0.0]"])
    # direct rows (no rm_params) fit one curve per (algo, beta), apart from each other
    rng = np.random.default_rng(0)
    rows = []
    for algo in ("dpo", "ipo"):
        for beta in (0.1, 0.3):
            for step in range(8):
                d = 0.3 * step + 0.1  # the RL law d (alpha - beta log d), alpha differing by algo
                gold = d * ((1.0 if algo == "dpo" else 1.5) - 0.5 * np.log(d)) + rng.normal(0, 0.01)
                rows.append(
                    {
                        "method": "rl",
                        "algo": algo,
                        "kl_coef": beta,
                        "beta_dpo": beta,
                        "rm_params": None,
                        "kl": d * d,
                        "gold": gold,
                        "seed": 0,
                        "step": step,
                        "policy_params": 7,
                    }
                )
    import pandas as pd

    fits = fit_table(pd.DataFrame(rows), n_boot=0)["fits"]
    assert sorted((f["algo"], f["kl_coef"]) for f in fits) == [("dpo", 0.1), ("dpo", 0.3), ("ipo", 0.1), ("ipo", 0.3)]
    assert all(f["r2"] > 0.95 for f in fits)
    alpha = {f["algo"]: f["alpha"] for f in fits}
    assert alpha["dpo"] == pytest.approx(1.0, abs=0.1) and alpha["ipo"] == pytest.approx(1.5, abs=0.1)
