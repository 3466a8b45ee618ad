"""The device mesh a job shards over, chosen from the devices present (issue 36).

One axis, `AXIS`, over every device JAX sees (all hosts' devices after `jax.distributed.initialize`). With
one device there is no mesh (`job_mesh()` is None) and every caller runs exactly today's program: the
one-device numbers stay bit-identical. With several, a caller splits a leading axis (grid points,
ensemble members, prompts) across the devices: `pad_leading` pads it to a multiple of the device count by
repeating the last item (the caller drops the padding: `rows` items are the real ones), `shard_leading`
places it, `replicate` copies the shared arguments to every device, and `to_host` brings an array back
(gathered over processes under multi-host). The mesh is a property of the job, never of its results: no
stage key, run id or points row holds it; a run logs it (`describe`) and records it in its DONE info.

`OVEROPT_DEVICES=1` in the environment turns sharding off (one device, today's program) on any machine.
"""

from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "d"
"""The mesh's one axis name: the devices a leading axis is split across."""


def job_mesh() -> Mesh | None:
    """A one-axis mesh over every device of the job (all processes'), or None with one device or under
    OVEROPT_DEVICES=1."""
    if os.environ.get("OVEROPT_DEVICES", "") == "1":
        return None
    devices = jax.devices()
    if len(devices) < 2:
        return None
    return Mesh(np.array(devices), (AXIS,))


def size(mesh: Mesh | None) -> int:
    """Number of devices of `mesh` (1 for None)."""
    return 1 if mesh is None else int(mesh.devices.size)


def describe(mesh: Mesh | None) -> str:
    """`mesh: 4 devices (cpu)`; with several processes `mesh: 8 devices (gpu, 2 processes)`."""
    devices = jax.devices()[:1] if mesh is None else list(mesh.devices.flat)
    n = len(devices)
    kind = devices[0].platform
    procs = len({d.process_index for d in devices})
    extra = f", {procs} processes" if procs > 1 else ""
    return f"mesh: {n} device{'s' if n != 1 else ''} ({kind}{extra})"


def padded(n: int, mesh: Mesh | None) -> int:
    """`n` rounded up to a multiple of the mesh's device count."""
    k = size(mesh)
    return int(math.ceil(n / k) * k)


def pad_leading(tree, n: int):
    """Every leaf with its leading axis padded to `n` by repeating its last item (n >= the axis length)."""

    def pad(x):
        extra = n - x.shape[0]
        if extra == 0:
            return x
        return jnp.concatenate([x, jnp.repeat(x[-1:], extra, axis=0)])

    return jax.tree.map(pad, tree)


def unpad(tree, rows: int):
    """Every leaf's first `rows` items along its leading axis (the padding dropped)."""
    return jax.tree.map(lambda x: x[:rows], tree)


def leading(mesh: Mesh) -> NamedSharding:
    """The sharding that splits a leading axis across the mesh's devices."""
    return NamedSharding(mesh, P(AXIS))


def shard_leading(tree, mesh: Mesh):
    """`tree` with every leaf's leading axis split across the devices (its length a multiple of them)."""
    return _put(tree, leading(mesh))


def replicate(tree, mesh: Mesh):
    """`tree` with a full copy on every device of the mesh."""
    return _put(tree, NamedSharding(mesh, P()))


def _put(tree, sharding: NamedSharding):
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    # Several processes: every process holds the same full value; each places its own devices' shards.
    def one(x):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

    return jax.tree.map(one, tree)


def to_host(tree):
    """numpy copies of every leaf; a leaf spread over several processes is gathered first."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    from jax.experimental import multihost_utils  # only under multi-host

    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    return jax.tree.map(one, tree)
