"""Constrained PPO (rl/ppo_constrained.py): the dual update against a closed-form toy where the constraint
binds at a known multiplier (and one where it does not), the probe task through the runner (the proxy held
near the threshold while plain PPO passes it; the multiplier logged in rows and points), and a vmapped grid
point equal to the single run."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
from ppo_probe import CFG as PPO_CFG
from ppo_probe import GOLD, REWARD, grid_point_vs_single, make_bank

from core.errors import UsageError
from rl import runner
from rl.ppo_config import PPOConfig
from rl.ppo_constrained import PPO_CONSTRAINED, ConstrainedPPOConfig, dual_ascent

CFG = ConstrainedPPOConfig(**dataclasses.asdict(PPO_CFG), threshold=0.6, dual_lr=0.5)
GRID = [(0.1, 0), (0.1, 1)]


def _toy(c, theta, steps=20000, alpha=0.05, eta=0.05):
    """Gradient ascent on the Lagrangian of  max_mu mu - c mu^2 / 2  s.t.  mu <= theta  (reward mu, a KL-like
    cost c mu^2 / 2), with the dual step under test. Closed form: mu*(lambda) = (1 - lambda) / c; when
    theta < 1 / c the constraint binds, mu* = theta and lambda* = 1 - c theta; else lambda* = 0, mu* = 1 / c."""
    mu, lam = 0.0, 0.0
    for _ in range(steps):
        mu = mu + alpha * ((1.0 - lam) - c * mu)
        lam = float(dual_ascent(jnp.float32(lam), jnp.float32(mu), jnp.float32(theta), jnp.float32(eta)))
    return mu, lam


def test_dual_update_against_a_closed_form_toy():
    mu, lam = _toy(c=2.0, theta=0.2)  # binds: lambda* = 1 - 2 * 0.2 = 0.6
    assert mu == pytest.approx(0.2, abs=1e-3) and lam == pytest.approx(0.6, abs=1e-3)
    mu, lam = _toy(c=2.0, theta=0.8)  # slack: the unconstrained optimum 0.5 is feasible, lambda* = 0
    assert mu == pytest.approx(0.5, abs=1e-3) and lam == 0.0
    # the step itself: projected onto lambda >= 0
    got = dual_ascent(jnp.array([0.3, 0.3, 0.0]), jnp.array([1.0, 0.0, -5.0]), 0.5, 0.2)
    np.testing.assert_allclose(np.asarray(got), [0.3 + 0.2 * 0.5, 0.3 - 0.2 * 0.5, 0.0], rtol=1e-6)


@pytest.fixture(scope="module")
def constrained_run(probe_policy, tmp_path_factory):
    path = tmp_path_factory.mktemp("cppo") / "run"
    return path, runner.run_rl(path, probe_policy, REWARD, GOLD, make_bank(), CFG, GRID, rm_params=5)


def test_probe_proxy_held_at_the_threshold(constrained_run, probe_policy):
    path, pts = constrained_run
    assert set(pts["algo"]) == {"ppo_constrained"} and set(pts["method"]) == {"rl"}
    np.testing.assert_allclose(pts["constraint_threshold"], 0.6, rtol=1e-6)
    assert (pts[pts["step"] == 0]["constraint_lambda"] == 0).all() and (
        pts[pts["step"] == 40]["constraint_lambda"] > 0.3
    ).all()
    # plain PPO on the same probe and grid passes the threshold; the constrained runs hover around it
    plain = runner.train_grid(probe_policy, REWARD, GOLD, make_bank(), PPO_CFG, GRID)
    ppo_late = np.mean([e["proxy/score"] for r in plain for e in r["eval"] if e["step"] >= 20])
    late = pts[pts["step"] >= 20]["proxy"].mean()
    assert ppo_late > 0.85 and abs(late - 0.6) < 0.12 and late < ppo_late - 0.15
    train = [r for r in (path / "metrics.jsonl").read_text().splitlines() if '"split": "train"' in r]
    assert '"constraint/lambda"' in train[0] and '"constraint/gap"' in train[0]
    assert "ppo_constrained" in (path / "config.json").read_text()


def test_vmapped_grid_point_equals_single_run(probe_policy):
    prog, _, _ = grid_point_vs_single(probe_policy, CFG, GRID)
    assert prog.opt is PPO_CONSTRAINED


def test_config_and_dispatch():
    assert runner.optimizer_for(CFG) is PPO_CONSTRAINED and runner.optimizer_for(PPOConfig()).name == "ppo"
    h = CFG.hyper(kl_coef=0.5)
    assert float(h.kl_coef) == 0.5 and float(h.threshold) == pytest.approx(0.6) and float(h.dual_lr) == 0.5
    for bad in ({"dual_lr": 0.0}, {"lambda_init": -1.0}, {"minibatches": 3}):
        with pytest.raises(UsageError):
            dataclasses.replace(CFG, **bad)


def test_stage_is_optional_and_changes_no_default_id(capsys):
    from study import stages
    from study.presets import resolve

    base = resolve("tiny", [])
    more = resolve("tiny", ["rl.algos=['ppo','ppo_constrained']", "rl.constraint.threshold=0.7"])
    a, b = ({i.label: i for i in stages.plan(c)} for c in (base, more))
    assert {k: v.id for k, v in a.items()} == {k: b[k].id for k in a}
    new = {k: v for k, v in b.items() if k not in a}
    assert {v.stage.name for v in new.values()} == {"cppo"} and "cppo:proxy[1]" in new
    assert new["cppo:proxy[1]"].reads["constraint"] == "rl.constraint"
    from study.stages.cppo import config

    cfg = config(more.rl)
    assert type(cfg) is ConstrainedPPOConfig and cfg.threshold == 0.7 and cfg.updates == more.rl.ppo.updates
    with pytest.raises(UsageError, match="rl.constraint"):
        resolve("tiny", ["rl.algos=['ppo_constrained']", "rl.constraint.dual_lr=0.0"])
