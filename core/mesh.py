"""The device mesh a job shards over, chosen from the devices present (issue 36).

One axis, `AXIS`, over every device JAX sees (all hosts' devices after `jax.distributed.initialize`). With
one device there is no mesh (`job_mesh()` is None) and every caller runs exactly today's program: the
one-device numbers stay bit-identical. With several, a caller splits a leading axis (grid points,
ensemble members, prompts) across the devices: `pad_leading` pads it to a multiple of the device count by
repeating the last item (the caller drops the padding: `rows` items are the real ones), `shard_leading`
places it, `replicate` copies the shared arguments to every device, and `to_host` brings an array back
(gathered over processes under multi-host). The mesh is a property of the job, never of its results: no
stage key, run id or points row holds it; a run logs it (`describe`) and records it in its DONE info.

Grid points (RL's (kl_coef, seed) points) are not split this way: a program compiled for several devices
(XLA's SPMD partitioner) rounds differently from the one-device program (e.g. `a / b` kept where the
one-device compile writes `a * (1 / b)`), and a few hundred PPO updates grow a last-bit difference into a
different policy. They are *dealt* instead (`deal`): each point runs alone with one device's program on the
device it is dealt to (every device runs the same compiled program), so a point's numbers depend neither on
the device count nor on the other points of its grid. `gather` brings the dealt points' results back, in
point order (exchanged between processes under multi-host).

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


def deal(n: int, mesh: Mesh | None) -> list:
    """The device each of `n` items (grid points) runs on: item i on device i mod d of the mesh's d devices,
    taken with the processes interleaved (process 0's first device, process 1's first, ..., process 0's
    second, ...) so that every process has an item when n >= the process count; with no mesh, JAX's first
    device."""
    if mesh is None:
        return [jax.devices()[0]] * n
    devices = sorted(mesh.devices.flat, key=lambda d: (_local_rank(d), d.process_index))
    return [devices[i % len(devices)] for i in range(n)]


def _local_rank(device) -> int:
    return sorted(d.id for d in jax.devices() if d.process_index == device.process_index).index(device.id)


def mine(devices: list) -> list[int]:
    """The items of `deal`'s list this process runs: those dealt to its own devices, or item 0 (a padding copy,
    never gathered as a result) when none is."""
    out = [i for i, d in enumerate(devices) if d.process_index == jax.process_index()]
    return out or [0]


def placed_on(devices: list, i: int):
    """The device this process runs item `i` on: its dealt device, or this process's first device for the
    padding copy of `mine`."""
    d = devices[i]
    return d if d.process_index == jax.process_index() else jax.local_devices()[0]


def gather(items: dict, devices: list):
    """numpy copies of this process's item results (`items`: index -> pytree, the indices of `mine`) stacked
    along a new leading axis in item order, with every process's items (exchanged under multi-host)."""
    n = len(devices)
    if jax.process_count() == 1:
        local = jax.device_get([items[i] for i in range(n)])
        return jax.tree.map(lambda *xs: np.stack(xs), *local)
    from jax.experimental import multihost_utils  # only under multi-host

    owner = [[i for i, d in enumerate(devices) if d.process_index == p] for p in range(jax.process_count())]
    width = max(1, *(len(o) for o in owner))
    mine_ = sorted(items)
    order = mine_ + [mine_[-1]] * (width - len(mine_))  # every process sends `width` items
    local = jax.tree.map(lambda *xs: np.stack(xs), *jax.device_get([items[i] for i in order]))
    every = multihost_utils.process_allgather(local)  # [processes, width, ...]
    pos = {i: (p, k) for p, o in enumerate(owner) for k, i in enumerate(o)}
    return jax.tree.map(lambda x: np.stack([x[pos[i]] for i in range(n)]), every)
