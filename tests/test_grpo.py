"""GRPO (rl/grpo.py) at the probe's tiny size (tests/ppo_probe.py): group advantages against a plain loop,
the loss's k3 term and the whole loss against float64 numpy, the probe task solved through the runner
(points with algo "grpo"), and a vmapped grid point equal to the single run."""

import dataclasses
import statistics

import jax.numpy as jnp
import numpy as np
import pytest
from ppo_probe import GOLD, REWARD, T, grid_point_vs_single, make_bank

from core.errors import UsageError
from rl import runner
from rl.grpo import GRPO, group_advantages, grpo_loss_terms
from rl.grpo_config import LOOP_FIELDS, GHyper, GRPOConfig, GStatic

CFG = GRPOConfig(
    batch_size=32,
    group_size=4,
    max_new=T,
    epochs=2,
    minibatches=2,
    eval_every=10,
    eval_batch=64,
    updates=30,
    lr=1e-3,
    fast_compile=True,
    bleu_sample=16,
)
GRID = [(0.0, 0), (0.04, 1)]


def test_group_advantages_against_a_loop():
    rng = np.random.default_rng(0)
    r = rng.normal(size=24).astype(np.float32)
    r[4:8] = 1.0  # a flat group: advantage 0, not NaN
    got = np.asarray(group_advantages(jnp.asarray(r), 4, 1e-4))
    want = []
    for g in range(6):
        grp = [float(x) for x in r[4 * g : 4 * g + 4]]
        mu, sd = statistics.fmean(grp), statistics.stdev(grp)
        want += [(x - mu) / (sd + 1e-4) for x in grp]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.all(got[4:8] == 0)


def test_loss_and_k3_term_against_float64_numpy():
    rng = np.random.default_rng(1)
    B, L = 6, 5
    mask = np.arange(L)[None, :] < rng.integers(1, L + 1, size=B)[:, None]
    logp, old, ref = (np.where(mask, -rng.uniform(0.1, 3.0, size=(B, L)), 0.0) for _ in range(3))
    adv = rng.normal(size=B)
    clip, beta = 0.2, 0.3
    loss, surr, kl = grpo_loss_terms(*(jnp.asarray(x, jnp.float32) for x in (logp, old, ref, adv)), mask, clip, beta)
    want_kl = np.exp(ref - logp) - (ref - logp) - 1.0  # pi_ref/pi - log(pi_ref/pi) - 1 (Shao et al., eq. 4)
    np.testing.assert_allclose(np.where(mask, kl, 0), np.where(mask, want_kl, 0), rtol=1e-5, atol=1e-6)
    total = 0.0
    for i in range(B):
        terms = []
        for t in range(L):
            if mask[i, t]:
                rho = np.exp(logp[i, t] - old[i, t])
                s = min(rho * adv[i], np.clip(rho, 1 - clip, 1 + clip) * adv[i])
                terms.append(-(s - beta * want_kl[i, t]))
        total += sum(terms) / len(terms)
    assert float(loss) == pytest.approx(total / B, rel=1e-5)


@pytest.fixture(scope="module")
def grpo_run(probe_policy, tmp_path_factory):
    path = tmp_path_factory.mktemp("grpo") / "run"
    return path, runner.run_rl(path, probe_policy, REWARD, GOLD, make_bank(), CFG, GRID, rm_params=5)


def test_probe_task_is_solved_through_the_runner(grpo_run):
    path, pts = grpo_run
    assert set(pts["algo"]) == {"grpo"} and set(pts["method"]) == {"rl"}
    assert sorted(set(pts["step"])) == [0, 10, 20, 30] and len(pts) == 8
    free = pts[pts["kl_coef"] == 0.0].sort_values("step")
    assert free["kl"].iloc[0] < 1e-5 and free["gold"].iloc[0] < 0.8  # starts at the reference
    assert free["gold"].iloc[-1] > 0.95 and free["proxy"].iloc[-1] > 0.95
    assert (path / "DONE").exists() and "grpo" in (path / "config.json").read_text()
    # a finished run returns its points; another config in the same directory is refused
    assert runner.run_rl(path, None, REWARD, GOLD, make_bank(), CFG, GRID, rm_params=5).equals(pts)
    with pytest.raises(UsageError, match="different GRPO config"):
        runner.run_rl(path, None, REWARD, GOLD, make_bank(), dataclasses.replace(CFG, lr=0.5), GRID)


def test_vmapped_grid_point_equals_single_run(probe_policy):
    prog, _, m = grid_point_vs_single(probe_policy, CFG, GRID)
    assert prog.opt is GRPO
    assert float(m["objective/kl_coef"][0]) == pytest.approx(0.04)


def test_config_split_and_checks():
    assert set(GStatic._fields) | set(GHyper._fields) | set(LOOP_FIELDS) == {
        f.name for f in dataclasses.fields(GRPOConfig)
    }
    assert float(CFG.hyper(kl_coef=0.5).kl_coef) == 0.5
    for bad in ({"group_size": 1}, {"group_size": 5}, {"minibatches": 3}, {"updates": 15}, {"kl_coef": -1.0}):
        with pytest.raises(UsageError):
            dataclasses.replace(CFG, **bad)
    with pytest.raises(UsageError, match="no optimizer"):
        runner.optimizer_for(object())
