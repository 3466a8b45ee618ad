"""Run as `python tests/shard_check.py OUT.npz` in one subprocess whose XLA_FLAGS force 4 host devices
(they must be set before JAX is imported): the programs of issue 36 at micro sizes (PPO and GRPO grids of 3
points dealt over the devices, a sampler chunk, a Bradley-Terry ensemble of 3 members and its scores), run twice in the
same process: first under OVEROPT_DEVICES=1 (no mesh: today's one-device program, on device 0), then over
the mesh of all 4 devices. Writes every number to OUT.npz under `one/` and `four/`, and, for each program,
how its arrays were laid out (`layout/<name>`: for the sampler, the device count of the array's sharding and
the leading length of each addressable shard; for a grid, the device each point's arrays are on), which
test_sharding compares."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from ppo_probe import CFG, GOLD, REWARD, make_bank, make_policy  # noqa: E402

from core import mesh as meshes  # noqa: E402
from lm import reward_train as rt  # noqa: E402
from lm.model import ModelConfig  # noqa: E402
from lm.sampling import sample, sample_many  # noqa: E402
from proxy_rm.train import ProxyTrainConfig  # noqa: E402
from rl import program, runner  # noqa: E402
from rl.grpo_config import GRPOConfig  # noqa: E402

GRID = [(0.0, 0), (0.5, 1), (2.0, 2)]  # 3 points: one a device on 4 devices (device 3 idle)


def layout(x) -> np.ndarray:
    """[devices of the sharding, leading length of each addressable shard...]."""
    return np.array([len(x.sharding.device_set)] + [s.data.shape[0] for s in x.addressable_shards])


def dealt(r: dict) -> np.ndarray:
    """[the device id of each grid point's arrays] (every array of a point on that one device)."""
    ids = []
    for g in sorted(r):
        sets = {frozenset(d.id for d in x.sharding.device_set) for x in jax.tree.leaves(r[g])}
        assert len(sets) == 1 and len(next(iter(sets))) == 1, sets  # one device holds the whole point
        ids.append(next(iter(next(iter(sets)))))
    return np.array(ids)


def grid(out: dict, name: str, cfg) -> None:
    policy = make_policy()
    prog = program.build(policy, REWARD, GOLD, make_bank(), cfg, GRID)
    r, _ = program.chunk(prog, program.init(prog))
    out[f"layout/{name}"] = dealt(r)
    for p in runner.train_grid(policy, REWARD, GOLD, make_bank(), cfg, GRID):
        for e in p["eval"]:
            for k, v in e.items():
                if isinstance(v, float) and k not in ("kl_coef",):
                    out.setdefault(f"{name}/{k}", []).append(v)


def checks() -> dict:
    """Every number and layout of the programs, on the devices `meshes.job_mesh()` gives now."""
    out: dict = {"devices": np.array(meshes.size(meshes.job_mesh()))}
    small = dict(updates=2, eval_every=2, batch_size=16, eval_batch=16, bleu_sample=4)
    grid(out, "ppo", dataclasses.replace(CFG, epochs=1, minibatches=1, **small))
    grid(
        out,
        "grpo",
        GRPOConfig(group_size=4, max_new=CFG.max_new, epochs=1, minibatches=1, fast_compile=True, lr=1e-3, **small),
    )

    g, st = make_policy()
    mesh = meshes.job_mesh()
    rows = make_bank(8)
    placed = rows if mesh is None else meshes.shard_leading(rows, mesh)
    one = sample(g, st if mesh is None else meshes.replicate(st, mesh), placed, jax.random.PRNGKey(3), max_new=8)
    out["layout/sample"] = layout(one.tokens)
    s = sample_many(g, st, make_bank(8), jax.random.PRNGKey(3), 16, max_new=8, batch_size=64)
    out["sample/tokens"], out["sample/logprobs"], out["sample/mask"] = s.tokens, s.logprobs, s.mask

    bank = make_bank(64, seed=5)
    ta, tb = np.concatenate([bank, s.tokens[:64, 4:]], 1), np.concatenate([bank, s.tokens[64:128, 4:]], 1)
    ma, mb = s.mask[:64], s.mask[64:128]
    comps = rt.Comparisons(ta, ma, tb, mb, (ta.sum(1) > tb.sum(1)).astype(np.int8), 4)
    tr, va = comps.split(0.25, 0)
    mcfg = ModelConfig(vocab_size=16, n_ctx=12, n_layer=1, d_model=8, n_head=2)
    gd, states, hist = rt.train_ensemble(mcfg, ProxyTrainConfig(epochs=1, batch_size=16), tr, va, [0, 1, 2])
    out["bt/val_loss"] = np.array([h["val/loss"] for h in hist])
    out["bt/train_loss"] = np.array([h["train/loss"] for h in hist])
    out["bt/scores"] = rt.score(gd, states, s.tokens[:50], s.mask[:50], 4, batch_size=32)
    # a lone member (an ensemble of 1, as tiny's proxies) is not padded across devices: one device's program, bits
    two = ModelConfig(vocab_size=16, n_ctx=12, n_layer=2, d_model=32, n_head=2)
    _, lone, hist = rt.train_ensemble(two, ProxyTrainConfig(epochs=2, batch_size=8), tr, va, [0])
    out["bt1/val_loss"] = np.array([h["val/loss"] for h in hist])
    out["bt1/params"] = np.concatenate([np.asarray(x, np.float32).ravel() for x in jax.tree.leaves(lone)])
    return out


def main(path: str) -> None:
    os.environ["OVEROPT_DEVICES"] = "1"
    one = checks()
    del os.environ["OVEROPT_DEVICES"]
    four = checks()
    out = {f"one/{k}": v for k, v in one.items()} | {f"four/{k}": v for k, v in four.items()}
    np.savez(path, **{k: np.asarray(v) for k, v in out.items()})


if __name__ == "__main__":
    main(sys.argv[1])
