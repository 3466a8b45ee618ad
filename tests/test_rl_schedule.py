"""The RL evaluation schedule (`eval_steps`), the recorded stopping rule and resume under the "log" schedule.

PPO's probe task (tests/ppo_probe.py) with test_ppo's compiled program (chunks of 10 updates; the session
builds it once). The references are a hand computation (the schedule), a plain loop over the compiled
programs (the "every" rows), the session's grid run (evaluations at every chunk) and an uninterrupted
run (resume).
"""

import dataclasses
import json

import jax
import numpy as np
import pytest
from ppo_probe import CFG, GOLD, GRID, REWARD, make_bank

from core.errors import UsageError
from rl import program, runner
from rl.ppo_config import PPOConfig, eval_steps, stop_rule

# CFG: 40 updates, chunks of 10, evaluated after every chunk ("every")
LOG = dataclasses.replace(CFG, eval_schedule="log", n_evals=3)
# geomspace(1, 4, 3) chunks = 1, 2, 4 -> chunks of 10 updates; chunk 3 (update 30) is not evaluated
LOG_STEPS = [10, 20, 40]


@pytest.fixture
def policy(probe_policy):
    return probe_policy


def _rows(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in rows]


def _runner(policy, run_dir, cfg):
    prog = program.build(policy, REWARD, GOLD, make_bank(), cfg, GRID)
    template = jax.eval_shape(prog.fns.init_grid, prog.policy_states, prog.hyper, prog.seeds)
    return program.load(run_dir, template)


def _same_state(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_eval_steps_hand_computed():
    # updates 200, one update a chunk: 200 ** (k / 15) for k = 0..15 is 1, 1.42, 2.03, 2.89, 4.11, 5.85,
    # 8.32, 11.85, 16.87, 24.02, 34.20, 48.68, 69.31, 98.67, 140.47, 200; rounded, 1.42 merges into 1
    tiny = PPOConfig(updates=200, eval_every=1, eval_schedule="log", n_evals=16)
    assert eval_steps(tiny) == [1, 2, 3, 4, 6, 8, 12, 17, 24, 34, 49, 69, 99, 140, 200]
    # chunks of 5: 40 ** (k / 15) = 1, 1.28, 1.64, 2.09, 2.67, 3.42, 4.37, 5.59, 7.15, 9.15, 11.70, 14.96,
    # 19.13, 24.46, 31.28, 40 chunks
    five = dataclasses.replace(tiny, eval_every=5)
    assert eval_steps(five) == [5, 10, 15, 20, 30, 35, 45, 60, 75, 95, 120, 155, 200]
    assert eval_steps(LOG) == LOG_STEPS
    assert eval_steps(CFG) == [10, 20, 30, 40]  # "every", the default
    assert eval_steps(dataclasses.replace(tiny, n_evals=2)) == [1, 200]
    assert eval_steps(dataclasses.replace(tiny, n_evals=1)) == [200]
    many = eval_steps(dataclasses.replace(tiny, n_evals=500))  # 500 points merge into at most every chunk
    assert many[:100] == list(range(1, 101)) and many[-1] == 200 and len(many) == len(set(many)) < 200
    assert eval_steps(dataclasses.replace(five, updates=5)) == [5]
    assert stop_rule(tiny) == "updates=200"
    assert stop_rule(dataclasses.replace(tiny, stop_kl=20.0)) == "updates=200|stop_kl=20"
    assert PPOConfig().eval_schedule == "every" and PPOConfig().stop_kl is None
    for bad in ({"n_evals": 0}, {"n_evals": True}, {"eval_schedule": "linear"}, {"stop_kl": 0.0}, {"stop_kl": -1}):
        with pytest.raises(UsageError):
            dataclasses.replace(CFG, **bad)


def test_every_schedule_rows_as_a_plain_loop(policy, tmp_path):
    """Default schedule: train rows of every chunk, then evaluation rows of every chunk, as before."""
    pts = runner.run_ppo(tmp_path / "run", policy, REWARD, GOLD, make_bank(), CFG, GRID, rm_params=5)
    prog = program.build(policy, REWARD, GOLD, make_bank(), CFG, GRID)
    shared = (prog.ref_state, prog.bank, *prog.scorer_params)
    hyper = [jax.tree.map(lambda x, g=g: x[g], prog.hyper) for g in range(len(GRID))]
    policies = [jax.tree.map(lambda x, g=g: x[g], prog.policy_states) for g in range(len(GRID))]
    state = {g: prog.fns.init(policies[g], hyper[g], prog.seeds[g]) for g in range(len(GRID))}
    expect = runner._eval_rows(prog, state, 0)
    for step in range(0, CFG.updates, CFG.eval_every):
        out = [prog.fns.chunk(state[g], hyper[g], *shared) for g in range(len(GRID))]  # each point alone
        state = {g: o[0] for g, o in enumerate(out)}
        m = {k: np.stack([np.asarray(o[1][k]) for o in out]) for k in out[0][1]}
        expect += runner._train_rows(prog, m, step)
        expect += runner._eval_rows(prog, state, step + CFG.eval_every)
    assert _rows(tmp_path / "run") == json.loads(json.dumps(expect))
    assert sorted(set(pts["step"])) == [0, *eval_steps(CFG)] and len(pts) == 5 * len(GRID)
    assert (pts["stop_rule"] == "updates=40").all()
    done = json.loads((tmp_path / "run" / "DONE").read_text())
    assert done["stop_rule"] == "updates=40" and done["eval_steps"] == [0, 10, 20, 30, 40]
    assert done["updates"] == 40 and done["stopped_by"] == "updates"
    (ckpt, step) = _runner(policy, tmp_path / "run", CFG)
    assert step == 40
    _same_state(ckpt, jax.tree.map(lambda *xs: np.stack(xs), *state.values()))


@pytest.fixture(scope="module")
def log_run(probe_policy, tmp_path_factory):
    path = tmp_path_factory.mktemp("log") / "run"
    return path, runner.run_ppo(path, probe_policy, REWARD, GOLD, make_bank(), LOG, GRID, rm_params=5)


def test_log_schedule_rows_at_scheduled_steps(log_run, probe_grid_run):
    path, pts = log_run
    rows = _rows(path)
    for k, s in GRID:
        mine = [r for r in rows if r["kl_coef"] == k and r["seed"] == s]
        assert [r["step"] for r in mine if r["split"] == "eval"] == [0, *LOG_STEPS]
        assert [r["step"] for r in mine if r["split"] == "train"] == list(range(1, LOG.updates + 1))
    assert sorted(set(pts["step"])) == [0, *LOG_STEPS] and len(pts) == 4 * len(GRID)
    assert (pts["stop_rule"] == "updates=40").all()
    done = json.loads((path / "DONE").read_text())
    assert done["eval_steps"] == [0, *LOG_STEPS] and done["stop_rule"] == "updates=40"
    # evaluation does not touch training: the same numbers as the "every" run (CFG) at the scheduled steps
    every = probe_grid_run
    assert LOG.updates == CFG.updates and [e["step"] for e in every[0]["eval"]] == [0, 10, 20, 30, 40]
    for g, (k, s) in enumerate(GRID):
        want = [r for r in every[g]["eval"] if r["step"] in (0, *LOG_STEPS)]
        got = [{n: v for n, v in r.items() if not n.startswith("perf/")} for r in rows if r["split"] == "eval"]
        assert [r for r in got if r["kl_coef"] == k and r["seed"] == s] == json.loads(json.dumps(want))


def test_log_schedule_resume_bit_identical(policy, log_run, tmp_path):
    straight_path, straight = log_run
    bank = make_bank()

    def go(max_chunks):
        return runner.run_ppo(tmp_path, policy, REWARD, GOLD, bank, LOG, GRID, rm_params=5, max_chunks=max_chunks)

    assert go(1) is None  # 1 chunk = update 10: stops at an evaluation
    assert json.loads((tmp_path / "checkpoint.json").read_text())["step"] == 10
    assert not (tmp_path / "DONE").exists()
    assert go(2) is None  # from 10 to 30: update 30 is not an evaluation, the checkpoint is at 20
    assert json.loads((tmp_path / "checkpoint.json").read_text())["step"] == 20
    assert max(r["step"] for r in _rows(tmp_path)) == 30  # rows of chunk 3 are logged, redone on relaunch
    assert go(1) is None  # from 20 to 30 again
    assert json.loads((tmp_path / "checkpoint.json").read_text())["step"] == 20
    assert max(r["step"] for r in _rows(tmp_path)) == 30
    assert not (tmp_path / "DONE").exists()
    resumed = go(None)
    assert straight.equals(resumed)
    assert _rows(straight_path) == _rows(tmp_path)
    (a, sa), (b, sb) = _runner(policy, straight_path, LOG), _runner(policy, tmp_path, LOG)
    assert sa == sb == 40
    _same_state(a, b)


def test_stop_kl_stops_at_first_evaluation_past_it(policy, log_run, tmp_path):
    path, _ = log_run
    evals = [r for r in _rows(path) if r["split"] == "eval" and r["step"] > 0]
    kl = {s: min(r["objective/kl"] for r in evals if r["step"] == s) for s in LOG_STEPS}  # over the grid
    threshold = max(kl[s] for s in LOG_STEPS[:-1])  # reached by every grid point before the last evaluation
    assert threshold > 0
    first = next(s for s in LOG_STEPS if kl[s] >= threshold)
    cfg = dataclasses.replace(LOG, stop_kl=threshold)
    pts = runner.run_ppo(tmp_path, policy, REWARD, GOLD, make_bank(), cfg, GRID)
    assert sorted(set(pts["step"])) == [0, *(s for s in LOG_STEPS if s <= first)]
    assert (pts["stop_rule"] == f"updates=40|stop_kl={threshold:g}").all()
    done = json.loads((tmp_path / "DONE").read_text())
    assert done["updates"] == first and done["stopped_by"] == "stop_kl" and done["eval_steps"][-1] == first
    # a crash between the last checkpoint and DONE: the relaunch sees the stop without training again
    (tmp_path / "DONE").unlink()
    (tmp_path / "points.parquet").unlink()
    assert runner.run_ppo(tmp_path, policy, REWARD, GOLD, make_bank(), cfg, GRID).equals(pts)
    assert json.loads((tmp_path / "DONE").read_text()) == done
