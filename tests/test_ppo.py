"""PPO engine at a tiny size: a probe task, the KL penalty, vmap vs a single run, resume, NaN stop.

The probe (tests/ppo_probe.py) is shared with test_rl_schedule: one compiled program for both modules;
`conftest` builds the policy and the grid run once for the session.
"""

import dataclasses
import json

import jax
import numpy as np
import pytest
from ppo_probe import CFG, GOLD, GRID, POISON, REWARD, grid_point_vs_single, make_bank

from core.errors import UsageError
from rl import ppo, program, runner
from rl.ppo_config import LOOP_FIELDS, Hyper, PPOConfig, Static


@pytest.fixture
def policy(probe_policy):
    return probe_policy


@pytest.fixture
def grid_run(probe_grid_run):
    return probe_grid_run


def test_probe_task_is_solved(grid_run):
    free = grid_run[0]
    assert free["kl_coef"] == 0.0 and [e["step"] for e in free["eval"]] == [0, 10, 20, 30, 40]
    first, last = free["eval"][0], free["eval"][-1]
    assert abs(first["objective/kl"]) < 1e-5  # the policy starts as the reference (trunk and LM head copied)
    assert first["gold/score"] < 0.8
    assert last["gold/score"] > 0.95 and last["proxy/score"] > 0.95
    assert free["train"]["objective/scores"].shape == (CFG.updates,)
    assert free["train"]["objective/scores"][-5:].mean() > 0.9
    assert all(np.isfinite(v).all() for v in free["train"].values())
    assert 0 < last["eval/distinct_1"] <= 1 and 0 <= last["eval/self_bleu"] <= 1
    # the gold here is 0/1, so the SE of a mean p over n samples (std with ddof 1) is sqrt(p (1 - p) / (n - 1))
    n = CFG.eval_batch
    for e in free["eval"]:
        p = e["gold/score"]
        np.testing.assert_allclose(e["eval/gold_se"], np.sqrt(p * (1 - p) / (n - 1)), rtol=1e-4, atol=1e-6)


def test_kl_penalty_keeps_policy_close(grid_run):
    free, tied = grid_run
    assert tied["kl_coef"] == 2.0
    kl_free, kl_tied = free["eval"][-1]["objective/kl"], tied["eval"][-1]["objective/kl"]
    assert kl_free > 1.0
    assert kl_tied < 0.2 * kl_free
    assert np.all(tied["train"]["objective/kl_coef"] == 2.0)  # fixed controller


def test_vmapped_grid_point_equals_single_run(policy):
    _, grid, _ = grid_point_vs_single(policy, CFG, GRID)
    assert all(x.is_deleted() for x in jax.tree.leaves(grid))  # the runner is donated


def _rows(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in rows]


def test_resume_equals_uninterrupted(policy, tmp_path):
    cfg = dataclasses.replace(CFG, updates=20)
    bank = make_bank()
    straight = runner.run_ppo(tmp_path / "a", policy, REWARD, GOLD, bank, cfg, GRID, rm_params=123)
    assert runner.run_ppo(tmp_path / "b", policy, REWARD, GOLD, bank, cfg, GRID, rm_params=123, max_chunks=1) is None
    assert json.loads((tmp_path / "b" / "checkpoint.json").read_text())["step"] == 10
    assert not (tmp_path / "b" / "DONE").exists()
    resumed = runner.run_ppo(tmp_path / "b", policy, REWARD, GOLD, bank, cfg, GRID, rm_params=123)
    assert (tmp_path / "b" / "DONE").exists()
    assert straight.equals(resumed)
    assert _rows(tmp_path / "a") == _rows(tmp_path / "b")
    prog = program.build(policy, REWARD, GOLD, bank, cfg, GRID)
    template = jax.eval_shape(prog.fns.init_grid, prog.policy_states, prog.hyper, prog.seeds)
    (ra, sa), (rb, sb) = program.load(tmp_path / "a", template), program.load(tmp_path / "b", template)
    assert sa == sb == 20 and int(ra.step[0]) == 20
    for a, b in zip(jax.tree.leaves(ra), jax.tree.leaves(rb), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # points: one row per grid point and evaluation (steps 0, 10, 20), the DESIGN.md columns
    assert len(straight) == 6 and set(straight["method"]) == {"rl"}
    for col in (
        "step",
        "kl",
        "gold",
        "proxy",
        "kl_coef",
        "seed",
        "rm_params",
        "policy_params",
        "gold/target",
        "gold/length",
        "entropy",
        "distinct_2",
        "self_bleu",
        "length",
    ):
        assert col in straight.columns, col
    assert (straight["kl"] >= 0).all() and (straight["rm_params"] == 123).all()
    with pytest.raises(UsageError, match="different PPO config"):
        runner.run_ppo(tmp_path / "a", policy, REWARD, GOLD, bank, dataclasses.replace(cfg, lr=0.5), GRID)
    # a finished run returns its points without training
    assert runner.run_ppo(tmp_path / "a", policy, REWARD, GOLD, bank, cfg, GRID, rm_params=123).equals(straight)


def test_non_finite_loss_stops_and_keeps_checkpoint(policy, tmp_path):
    bank = make_bank()
    runner.run_ppo(tmp_path, policy, REWARD, GOLD, bank, CFG, GRID, max_chunks=1)
    saved = (tmp_path / "checkpoint.json").read_text()
    poisoned = bank.copy()
    poisoned[:, 1] = POISON
    with pytest.raises(runner.NonFiniteLoss, match="non-finite loss at update 11.*kept"):
        runner.run_ppo(tmp_path, policy, REWARD, GOLD, poisoned, CFG, GRID)
    assert (tmp_path / "checkpoint.json").read_text() == saved
    assert not (tmp_path / "DONE").exists()


def test_adaptive_kl_controller_and_config_checks():
    # Ziegler et al.: e = clip(KL/target - 1, -0.2, 0.2); beta *= 1 + e * n / horizon
    assert float(ppo.adaptive_kl_coef(0.1, 9.0, 6.0, 10000.0, 256)) == pytest.approx(0.1 * (1 + 0.2 * 256 / 10000))
    assert float(ppo.adaptive_kl_coef(0.1, 5.4, 6.0, 10000.0, 256)) == pytest.approx(0.1 * (1 - 0.1 * 256 / 10000))
    assert float(ppo.adaptive_kl_coef(0.1, 0.0, 6.0, 100.0, 10)) == pytest.approx(0.1 * (1 - 0.2 * 10 / 100))
    assert set(Static._fields) | set(Hyper._fields) | set(LOOP_FIELDS) == {
        f.name for f in dataclasses.fields(PPOConfig)
    }
    h = CFG.hyper(kl_coef=0.5)
    assert float(h.kl_coef) == 0.5 and float(h.clip) == pytest.approx(0.2) and float(h.lam) == pytest.approx(0.95)
    for bad in (
        {"minibatches": 3},
        {"updates": 15},
        {"kl_penalty": "k4"},
        {"kl_controller": "pid"},
        {"batch_size": 0},
        {"temperature": 0.0},
    ):
        with pytest.raises(UsageError):
            dataclasses.replace(CFG, **bad)
    with pytest.raises(UsageError):
        program.check_grid([(0.1, 0), (0.1, 0)])
    with pytest.raises(UsageError):
        program.check_grid([(-1.0, 0)])
