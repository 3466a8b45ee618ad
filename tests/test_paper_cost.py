"""The paper cost estimate's FLOP counter (benchmarks.paper_flops) against a hand count of a tiny study config:
multiply-adds read off each weight matrix's shape and each attention product, in plain integer arithmetic;
the calibration pools the right stages and subtracts a backbone's pretraining from its proxy's timing."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ sits beside the installed packages, not inside them
    sys.path.insert(0, str(ROOT))

from benchmarks import paper_cost, paper_flops  # noqa: E402
from proxy_rm.ladder import ProxySize  # noqa: E402
from study.presets import tiny  # noqa: E402

V, P, T = 21, 7, 14  # the tiny world: vocabulary, prompt, response
S = P + T


def config():
    t = tiny()
    pre = dataclasses.replace(t.policy.pretrain, steps=3, batch_size=4, log_every=2)
    return dataclasses.replace(
        t,
        policy=dataclasses.replace(t.policy, n_layer=1, d_model=8, n_head=2, corpus_size=40, pretrain=pre),
        labels=dataclasses.replace(t.labels, n_comparisons=10, n_init_samples=5),
        ladder=dataclasses.replace(
            t.ladder,
            sizes=(ProxySize("rm-a", 1, 8, 2), ProxySize("rm-b", 2, 16, 2)),
            ensemble_size=2,
            backbone=True,
            data_sizes=(4, 8),
            data_sweep_sizes=("rm-b",),
            train=dataclasses.replace(t.ladder.train, epochs=2, batch_size=4, val_frac=0.2),
        ),
        bon=dataclasses.replace(t.bon, n_prompts=2, pool_size=3),
        rl=dataclasses.replace(
            t.rl,
            ppo=dataclasses.replace(
                t.rl.ppo,
                updates=4,
                eval_every=2,
                eval_schedule="every",
                batch_size=4,
                epochs=2,
                minibatches=2,
                eval_batch=4,
            ),
            kl_coefs=(0.0, 0.1),
            seeds=(0, 1, 2),
        ),
    )


def token(layers: int, d: int, keys: int) -> int:
    """FLOPs of one token through the blocks: 2 x the multiply-adds of qkv (d x 3d), the output projection
    (d x d), the MLP (d x 4d, 4d x d), the scores (keys x d) and the weighted values (keys x d)."""
    macs = d * 3 * d + d * d + d * 4 * d + 4 * d * d + keys * d + keys * d
    return 2 * layers * macs


def lm_pass(layers, d, n_seq):  # teacher-forced on tokens[:, :-1], logits everywhere
    return n_seq * (S - 1) * (token(layers, d, S - 1) + 2 * V * d)


def rm_pass(layers, d, n_seq):  # whole sequences, the scalar head at every position
    return n_seq * S * (token(layers, d, S) + 2 * d)


def sampled(layers, d, n):  # prefill of P tokens, T - 1 decode steps, cache P + T - 1; logits after each
    return n * (P * token(layers, d, S - 1) + 2 * V * d + (T - 1) * (token(layers, d, S - 1) + 2 * V * d))


def pretrain(layers, d):
    # 3 steps of 4 sequences (3 passes each); held-out loss on round(40 * 0.05) = 2 sequences at steps 2 and 3
    return 3 * 3 * lm_pass(layers, d, 4) + 2 * lm_pass(layers, d, 2)


def proxy(layers, d, n_train):
    # 2 members; 2 epochs of n_train // 4 steps on 4 pairs (8 sequences, 3 passes); validation (2 pairs: 4
    # sequences) after each epoch and once more to calibrate; the 5 recentring samples
    member = 2 * (n_train // 4) * 3 * rm_pass(layers, d, 8) + 3 * rm_pass(layers, d, 4) + rm_pass(layers, d, 5)
    return 2 * member


def ppo(rm_layers, rm_d):
    policy_fwd = 4 * (S - 1) * token(1, 8, S - 1) + 4 * T * (2 * V * 8 + 2 * 8)  # logits and value on T
    ref_fwd = 4 * (S - 1) * token(1, 8, S - 1) + 4 * T * 2 * V * 8
    reward = rm_pass(rm_layers, rm_d, 4)
    update = sampled(1, 8, 4) + policy_fwd + ref_fwd + reward + 2 * 3 * policy_fwd
    evaluate = sampled(1, 8, 4) + policy_fwd + ref_fwd + reward
    return 6 * (4 * update + 3 * evaluate)  # grid of 2 x 3; evaluations at steps 0, 2, 4


def test_stage_flops_match_a_hand_count():
    got = {st.name: st for st in paper_flops.stages(config())}
    want = {
        "lm-1x8 (policy)": pretrain(1, 8),
        "labels": sampled(1, 8, 2 * 10 + 5),
        "lm-2x16 (backbone rm-b)": pretrain(2, 16),  # rm-a has the policy's shape: its backbone is the policy
        "proxy-rm-a": proxy(1, 8, 8),
        "proxy-rm-b": proxy(2, 16, 8),
        "proxy-rm-b-4": proxy(2, 16, 4),  # data size 8 is the whole training split: not trained twice
        "pool": sampled(1, 8, 6),
        "bon-rm-a": 2 * rm_pass(1, 8, 6),
        "bon-rm-b": 2 * rm_pass(2, 16, 6),
        "bon-rm-b-4": 2 * rm_pass(2, 16, 6),
        # no "ref-logprob" stage: the selection rules' reference log-probs are kept from the pool's sampling
        "rl-rm-a": ppo(1, 8),
        "rl-rm-b": ppo(2, 16),
    }
    assert list(got) == list(want)
    for name, flops in want.items():
        assert got[name].flops == flops, name
    assert got["proxy-rm-b"].backbone == "lm-2x16" and got["proxy-rm-a"].backbone is None
    assert got["proxy-rm-b-4"].backbone is None


def test_paper_counts_six_params_per_training_token():
    """paper's largest pretraining: 6 x (non-embedding) params x tokens within the attention and head terms."""
    st = {s.name: s for s in paper_flops.stages(paper_cost.measured_config({"preset": "paper", "overrides": {}}))}
    pre = st["lm-8x384 (backbone rm-3xl)"]
    params = 8 * 12 * 384**2
    tokens = 10000 * 256 * (S - 1)
    assert 1.0 < pre.flops / (6 * params * tokens) < 1.2  # held-out evaluations, attention, the LM head


def test_calibration_pools_the_large_stages_and_subtracts_backbones():
    rows = [
        {"stage": "a", "kind": "k", "flops": 100.0, "seconds": 1.0},
        {"stage": "b", "kind": "k", "flops": 20.0, "seconds": 1.0},
        {"stage": "c", "kind": "k", "flops": 5.0, "seconds": 5.0},  # under 10% of the largest: overhead-bound
    ]
    cal = paper_cost.calibration(rows)
    assert cal["k"]["stages"] == ["a", "b"] and cal["k"]["rate"] == pytest.approx(60.0)
    run = {"timings": {"proxy-rm-b": 30.0, "lm-2x16": 12.0}}
    st = paper_flops.Stage("proxy-rm-b", "proxy", 1.0, backbone="lm-2x16")
    assert paper_cost._seconds(run, st) == pytest.approx(18.0)
