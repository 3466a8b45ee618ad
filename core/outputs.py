"""Where outputs may go: regular files only, never over one of the running command's inputs.

`protect_inputs(paths, skip, record)` (the CLI wraps every verb in it, with the paths its positional
arguments name): each named file, and every regular file inside a named directory (a bounded walk, so
`--json study/points.parquet` is refused as well), is an input; with `record`, every file `core.safe_read`
opens while the command runs is one too. `check_targets(targets)` checks every output a verb will write
before it does any work (the CLI calls it with the verb's `output_targets(args)`), and `check_output(path)`
is called again by `core.store.atomic_write_bytes` before it writes anything. Inputs are compared by
(st_dev, st_ino): a symbolic or hard link to an input is the input. Light: no numpy.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections import deque
from pathlib import Path

from core.errors import UsageError

_INPUTS: set[tuple[int, int]] = set()
"""(st_dev, st_ino) of the files the running command reads (`protect_inputs`): never written over."""
_RECORD: list[bool] = [False]
"""Whether `note_read` registers what `core.safe_read` opens (within `protect_inputs(..., record=True)`)."""
WALK_LIMIT = 20_000
"""The most entries of an input directory registered up front (breadth first: its top-level tables come
first); what lies beyond is protected when read (`record`) and refused by type at write time."""
OUTPUT_NAMES = (".json", ".parquet", ".md", ".html", ".png", ".pdf", ".csv", ".jsonl", "DONE", "RUNNING", "FAILED")
"""Names (by ending) of the files overopt writes into an output directory: checked up front there."""


def kind(mode: int) -> str:
    """What a file of `mode` is, in words (for messages)."""
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _walk(root: str | os.PathLike, skip: set[str], budget: list[int]) -> set[tuple[int, int]]:
    """(st_dev, st_ino) of the regular files under directory `root` (symbolic links to files followed,
    linked directories not entered), breadth first, at most `budget[0]` entries, paths in `skip` left out."""
    keys, todo = set(), deque([os.fspath(root)])
    while todo and budget[0] > 0:
        d = todo.popleft()
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for e in entries:
            budget[0] -= 1
            if budget[0] < 0:
                break
            if os.path.abspath(e.path) in skip:
                continue
            with contextlib.suppress(OSError):
                if e.is_dir(follow_symlinks=False):
                    todo.append(e.path)
                elif e.is_file():  # a regular file, or a link to one
                    st = e.stat()
                    keys.add((st.st_dev, st.st_ino))
    return keys


@contextlib.contextmanager
def protect_inputs(paths, skip=(), record: bool = False):
    """Within the block, `atomic_write_bytes` refuses to replace any of `paths` that is an existing file (the
    command's inputs: `--json s.csv` with s.csv the input is refused, not renamed over it), nor a regular
    file inside a directory of `paths` (except under `skip`: the verb's own output directories and files);
    with `record`, nor any file `core.safe_read` opens meanwhile (`note_read`)."""
    added = set()
    skipped = {os.path.abspath(p) for p in skip if p is not None and str(p) != ""}
    budget = [WALK_LIMIT]
    for p in paths:
        try:
            st = os.stat(p)
        except (OSError, ValueError):
            continue
        if stat.S_ISDIR(st.st_mode):
            if os.path.abspath(p) not in skipped:
                added |= _walk(p, skipped, budget)
        else:
            added.add((st.st_dev, st.st_ino))
    added -= _INPUTS
    saved = _RECORD[0]
    _INPUTS.update(added)
    _RECORD[0] = record
    try:
        yield
    finally:
        _RECORD[0] = saved
        _INPUTS.difference_update(added)


def note_read(st: os.stat_result) -> None:
    """Called by `core.safe_read` for each file it opens: an input of the command while reads are recorded.
    (Registered for the rest of the command: a file read is never written over.)"""
    if _RECORD[0]:
        _INPUTS.add((st.st_dev, st.st_ino))


def check_output(path: str | os.PathLike, flag: str | None = None, inputs: bool = True) -> None:
    """UsageError unless `path` may be written: absent, or an existing regular file (not a symbolic link, a
    device, a FIFO, a socket or a directory) that is not one of the command's inputs (unless not `inputs`)."""
    where = f"{flag} {path}" if flag else f"{path}"
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot write {where}: {getattr(e, 'strerror', None) or e}") from None
    if not stat.S_ISREG(st.st_mode):
        what = kind(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            what += f" to nothing ({os.readlink(path)})" if not os.path.exists(path) else f" ({os.readlink(path)})"
        raise UsageError(f"refusing to write {where}: it is {what}; outputs are written to regular files only")
    if inputs and (st.st_dev, st.st_ino) in _INPUTS:
        raise UsageError(f"refusing to write {where}: it is one of this command's inputs")


def check_output_dir(path: str | os.PathLike, flag: str | None = None) -> None:
    """UsageError unless `path` may hold outputs: absent, or a directory (a link to one followed) whose
    top-level entries named as overopt's outputs (`OUTPUT_NAMES`) are files `check_output` accepts."""
    where = f"{flag} {path}" if flag else f"{path}"
    try:
        lst = os.lstat(path)
    except FileNotFoundError:
        return
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot write {where}: {getattr(e, 'strerror', None) or e}") from None
    try:
        st = os.stat(path)
    except OSError:
        raise UsageError(f"refusing to write into {where}: it is a symbolic link to nothing") from None
    if not stat.S_ISDIR(st.st_mode):
        what = kind(lst.st_mode) if not stat.S_ISLNK(lst.st_mode) else f"a symbolic link to {kind(st.st_mode)}"
        raise UsageError(f"refusing to write into {where}: it is {what}, not a directory")
    try:
        names = sorted(e.name for e in os.scandir(path))[:WALK_LIMIT]
    except OSError as e:
        raise UsageError(f"cannot write into {where}: {e.strerror}") from None
    for name in names:
        if name.endswith(OUTPUT_NAMES) and not name.startswith("."):
            check_output(Path(path) / name, flag)


def check_targets(targets) -> None:
    """Every output a verb will write, checked before it starts: (flag, path, kind) with kind "file" (a
    file it writes: `check_output`), "own" (a file it rewrites in its own input directory: by type only)
    or "dir" (a directory it writes into: `check_output_dir`); a path of None is not written."""
    for flag, path, what in targets:
        if path is None or str(path) == "":
            continue
        if what == "dir":
            check_output_dir(path, flag)
        else:
            check_output(path, flag, inputs=what != "own")
