"""Where outputs may go: regular files only, never over one of the running command's inputs.

`protect_inputs(paths)` (the CLI wraps every verb in it, with the paths its positional arguments name) and
`check_output(path)` (called by `core.store.atomic_write_bytes` before it writes anything). Light: no numpy.
"""

from __future__ import annotations

import contextlib
import os
import stat

from core.errors import UsageError

_INPUTS: set[tuple[int, int]] = set()
"""(st_dev, st_ino) of the files the running command reads (`protect_inputs`): never written over."""


@contextlib.contextmanager
def protect_inputs(paths):
    """Within the block, `atomic_write_bytes` refuses to replace any of `paths` that is an existing file (the
    command's inputs: `--json s.csv` with s.csv the input is refused, not renamed over it)."""
    added = set()
    for p in paths:
        try:
            st = os.stat(p)
        except (OSError, ValueError):
            continue
        key = (st.st_dev, st.st_ino)
        if key not in _INPUTS:
            added.add(key)
    _INPUTS.update(added)
    try:
        yield
    finally:
        _INPUTS.difference_update(added)


def check_output(path: str | os.PathLike) -> None:
    """UsageError unless `path` may be written: absent, or an existing regular file (not a symbolic link, a
    device, a FIFO, a socket or a directory) that is not one of the command's inputs."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = (
            "a symbolic link"
            if stat.S_ISLNK(st.st_mode)
            else "a directory"
            if stat.S_ISDIR(st.st_mode)
            else "a FIFO"
            if stat.S_ISFIFO(st.st_mode)
            else "a device"
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
            else "not a regular file"
        )
        raise UsageError(f"refusing to write {path}: it is {kind}; outputs are written to regular files only")
    if (st.st_dev, st.st_ino) in _INPUTS:
        raise UsageError(f"refusing to write {path}: it is one of this command's inputs")
