"""Sharding inside a job (issue 36): with 4 forced host devices the PPO and GRPO grids (3 points dealt one a
device), the sampler and a Bradley-Terry ensemble (3 members, padded) give the same numbers as one device, and
each device holds its share. XLA_FLAGS must be set before JAX is imported, so tests/shard_check.py runs
in one subprocess with 4 forced devices that computes both sides (one device: OVEROPT_DEVICES=1, no mesh,
the one-device program on device 0; then the mesh of 4). Tolerances: grid metrics bit for bit (each point
runs one device's program wherever it is dealt; a program partitioned over devices rounds differently, and
a few hundred PPO updates grow that into different policies); sampler log-probs 1e-5 relative (atol 1e-6
for values near 0); sampled tokens and masks equal; proxy scores (rows split across devices: a matmul's
summation order changes) 1e-4 of their scale."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core import mesh as meshes

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("shard") / "shard.npz"
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "PYTHONPATH": str(ROOT)}
    env.pop("OVEROPT_DEVICES", None)
    subprocess.run([sys.executable, str(ROOT / "tests" / "shard_check.py"), str(out)], env=env, check=True, timeout=600)
    d = dict(np.load(out))
    return tuple({k.split("/", 1)[1]: v for k, v in d.items() if k.startswith(side)} for side in ("four/", "one/"))


def test_each_device_holds_its_share(runs):
    four, one = runs
    assert int(four["devices"]) == 4 and int(one["devices"]) == 1
    for name in ("ppo", "grpo"):  # 3 grid points dealt over 4 devices: one a device (device 3 idle)
        assert four[f"layout/{name}"].tolist() == [0, 1, 2]
        assert one[f"layout/{name}"].tolist() == [0, 0, 0]
    assert four["layout/sample"].tolist() == [4, 2, 2, 2, 2]  # 8 prompts, 2 a device
    assert one["layout/sample"].tolist() == [1, 8]


def test_same_points_as_one_device(runs):
    four, one = runs
    keys = [k for k in one if not k.startswith("layout/") and k != "devices"]
    assert (
        set(keys) <= set(four) and any(k.startswith("ppo/") for k in keys) and any(k.startswith("grpo/") for k in keys)
    )
    for k in keys:
        a, b = four[k], one[k]
        assert a.shape == b.shape, k
        if k == "bt/scores":
            assert np.max(np.abs(a - b)) <= 1e-4 * np.max(np.abs(b)), k
        elif k.startswith(("ppo/", "grpo/")):  # each point runs one device's program wherever it is dealt
            np.testing.assert_array_equal(a, b, err_msg=k)
        elif a.dtype.kind == "f":
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=k)
        else:
            np.testing.assert_array_equal(a, b, err_msg=k)


def test_a_lone_member_trains_bit_identically(runs):
    four, one = runs  # an ensemble of 1 takes one device's program on 4 devices (a padded one drifted: tiny's rm-l)
    np.testing.assert_array_equal(four["bt1/params"], one["bt1/params"])
    np.testing.assert_array_equal(four["bt1/val_loss"], one["bt1/val_loss"])


def test_padding_helpers():
    x = np.arange(6.0).reshape(3, 2)
    padded = np.asarray(meshes.pad_leading({"x": x}, 4)["x"])
    np.testing.assert_array_equal(padded, np.concatenate([x, x[-1:]]))
    np.testing.assert_array_equal(np.asarray(meshes.unpad({"x": padded}, 3)["x"]), x)
    assert meshes.padded(3, None) == 3 and meshes.size(None) == 1
    assert meshes.describe(None).startswith("mesh: 1 device (")


def test_interrupted_sharded_run_resumes(tmp_path):
    """A PPO run on 4 forced devices (3 grid points dealt one a device) interrupted after its first checkpointed
    chunk and resumed on the same 4 devices gives exactly the uninterrupted run's points; resumed on one device
    (the checkpoint holds the 3 points stacked, no layout) it gives them bit for bit too: each point runs one
    device's program wherever it is dealt."""
    out = tmp_path / "resume.npz"
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "PYTHONPATH": str(ROOT)}
    env.pop("OVEROPT_DEVICES", None)
    script = str(ROOT / "tests" / "shard_resume_check.py")
    subprocess.run([sys.executable, script, str(tmp_path), str(out)], env=env, check=True, timeout=600)
    d = dict(np.load(out))
    assert int(d["interrupted_step"]) == 2 and not bool(d["interrupted_done"])  # stopped mid-way, resumable
    assert (
        str(d["mesh_a"]) == str(d["mesh_b"]) == "mesh: 4 devices (cpu)" and str(d["mesh_c"]) == "mesh: 1 device (cpu)"
    )
    straight, resumed, one = d["straight/values"], d["resumed/values"], d["one_device/values"]
    assert straight.shape[0] == 9 and d["straight/columns"].tolist() == d["one_device/columns"].tolist()
    np.testing.assert_array_equal(resumed, straight)  # the same layout: bit-identical
    np.testing.assert_array_equal(one, straight)  # another device count: the same points, bit for bit
