"""Orbax checkpoints of model (or any pytree) states, published atomically.

A checkpoint is a directory written by Orbax's StandardCheckpointer from a flat
`{"blocks/0/attn/qkv/kernel": array, ...}` dict, so it does not depend on NNX's State classes.
Atomicity, from the caller's point of view: Orbax writes into a hidden staging directory and renames
it when complete; `save_state` then moves that into place. At any moment `path` is absent, the
complete old checkpoint or the complete new one; a crash leaves only dot-named staging directories.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path

import jax
import numpy as np

from core import multihost
from core.errors import UsageError


def _flatten(state) -> tuple[dict, object]:
    leaves, treedef = jax.tree_util.tree_flatten_with_path(state)
    flat = {jax.tree_util.keystr(p, simple=True, separator="/"): x for p, x in leaves}
    if len(flat) != len(leaves):
        raise UsageError("checkpoint: state has parameter paths that collide when flattened")
    return flat, treedef


def _checkpointer():
    """Orbax's checkpointer, local to this process: it saves host (numpy) arrays, and under multi-process JAX
    each process writes (or reads) its own path, without Orbax's barriers across processes (core.multihost:
    process 0 writes the store, a follower its scratch copy)."""
    import orbax.checkpoint as ocp  # slow to import: only when a checkpoint is written or read

    if jax.process_count() == 1:
        return ocp.StandardCheckpointer()
    me = jax.process_index()
    only_me = ocp.options.MultiprocessingOptions(
        primary_host=me, active_processes={me}, barrier_sync_key_prefix=f"overopt-process{me}"
    )
    return ocp.StandardCheckpointer(multiprocessing_options=only_me)


def _publish(staged: Path, path: Path) -> None:
    """Move the finished staging directory to `path`, replacing an existing checkpoint."""
    if path.exists():
        old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(path, old)
        os.replace(staged, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staged, path)


def save_state(path, state) -> None:
    """Write `state` (a pytree of arrays, e.g. an nnx State) as an Orbax checkpoint directory at `path`.

    Arguments: path (a directory; its parent is created; an existing checkpoint there is replaced);
    state. The write is atomic from the caller's point of view (see the module doc). A follower process of
    a multi-process point (`core.multihost`) writes nothing.
    """
    if multihost.follower():  # its stage's outputs are read from process 0's run, which holds the checkpoint
        return
    path = Path(path).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    flat, _ = _flatten(state)
    staged = path.parent / f".{path.name}.partial-{uuid.uuid4().hex[:8]}"
    ckptr = _checkpointer()
    try:
        ckptr.save(staged, {k: np.asarray(v) for k, v in flat.items()})
        ckptr.wait_until_finished()
    finally:
        ckptr.close()
    _publish(staged, path)


def load_state(path, abstract_state):
    """Read a checkpoint written by `save_state` into the structure of `abstract_state`.

    Arguments: path; abstract_state: a state of the same structure (arrays or jax.ShapeDtypeStruct,
    e.g. from `lm.model.abstract(cfg)`). Returns a state with that structure, holding the saved
    values. A missing checkpoint or a structure mismatch raises UsageError.
    """
    path = Path(path).absolute()
    if not path.is_dir():
        raise UsageError(f"no checkpoint at {path}")
    flat, treedef = _flatten(abstract_state)
    target = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in flat.items()}
    ckptr = _checkpointer()
    try:
        saved = ckptr.metadata(path).item_metadata
        saved_shapes = {k: tuple(m.shape) for k, m in saved.items()}
        want = {k: tuple(v.shape) for k, v in target.items()}
        if saved_shapes != want:
            diff = sorted(set(saved_shapes.items()) ^ set(want.items()))
            raise UsageError(f"checkpoint at {path} does not match the model: first difference {diff[0]}")
        restored = ckptr.restore(path, target)
    finally:
        ckptr.close()
    return jax.tree_util.tree_unflatten(treedef, [restored[k] for k in flat])


def content_digest(path) -> str:
    """sha256 over the arrays of the checkpoint at `path` (names, dtypes, shapes, bytes, in name order).

    Two saves of equal states give equal digests although Orbax's files differ (random data file
    names, timestamps): how a recomputed run's checkpoint is compared with the one it replaces.
    """
    path = Path(path).absolute()
    ckptr = _checkpointer()
    try:
        restored = ckptr.restore(path)
    finally:
        ckptr.close()
    h = hashlib.sha256()
    for name in sorted(restored):
        a = np.ascontiguousarray(np.asarray(restored[name]))
        h.update(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.tobytes())
    return h.hexdigest()
