"""Run as `python tests/shard_resume_check.py DIR OUT.npz` with 4 forced host devices (test_sharding): a
PPO run on 4 devices (the probe of tests/ppo_probe.py, 3 grid points one a device, 4 updates in 2 checkpointed
chunks) straight through in DIR/a; the same run interrupted after its first checkpointed chunk in DIR/b (the
checkpoint copied to DIR/c), then resumed in DIR/b on the same 4 devices and in DIR/c on one device
(OVEROPT_DEVICES=1). Writes the three runs' points, the step of the interrupted checkpoint and the mesh each
DONE records to OUT.npz."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import os  # noqa: E402

import numpy as np  # noqa: E402
from ppo_probe import CFG, GOLD, REWARD, make_bank, make_policy  # noqa: E402

from rl import runner  # noqa: E402

GRID = [(0.0, 0), (0.5, 1), (2.0, 2)]
SMALL = dataclasses.replace(
    CFG, epochs=1, minibatches=1, updates=4, eval_every=2, batch_size=16, eval_batch=16, bleu_sample=4
)


def run(path: Path, policy, max_chunks=None):
    return runner.run_ppo(path, policy, REWARD, GOLD, make_bank(), SMALL, GRID, rm_params=1, max_chunks=max_chunks)


def main(root: Path, out: Path) -> None:
    policy = make_policy()
    res: dict = {}
    numeric = None
    straight = run(root / "a", policy)
    numeric = [c for c in straight.columns if straight[c].dtype.kind in "fi" and c != "run_time"]
    assert run(root / "b", policy, max_chunks=1) is None  # interrupted after its first checkpointed chunk
    res["interrupted_step"] = json.loads((root / "b" / "checkpoint.json").read_text())["step"]
    res["interrupted_done"] = (root / "b" / "DONE").exists()
    shutil.copytree(root / "b", root / "c")
    resumed = run(root / "b", policy)  # the same 4 devices
    os.environ["OVEROPT_DEVICES"] = "1"  # one device: no mesh
    other = run(root / "c", policy)
    for name, df in (("straight", straight), ("resumed", resumed), ("one_device", other)):
        res[f"{name}/columns"] = np.array(numeric)
        res[f"{name}/values"] = df[numeric].to_numpy(float)
    for name in "abc":
        res[f"mesh_{name}"] = np.array(json.loads((root / name / "DONE").read_text())["mesh"])
    np.savez(out, **res)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
