"""Waiting for an event instead of sleeping: a thread or process blocked on a file's flock."""

from __future__ import annotations

import os
import time
from pathlib import Path

HANG = 600  # seconds: a guard against a hung test only


def blocked_on(lock_file: str | os.PathLike) -> bool | None:
    """Whether some thread or process waits for an flock of `lock_file` (a '->' line of /proc/locks naming
    its inode); None where /proc/locks does not exist."""
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    inode = str(os.stat(lock_file).st_ino)
    return any("->" in line and line.split()[-3].rsplit(":", 1)[-1] == inode for line in lines)


def wait_until_blocked(lock_file: str | os.PathLike, gave_up=lambda: False) -> None:
    """Return once a waiter is blocked on `lock_file`'s flock, or once gave_up() (the waiter got the lock
    after all: the caller's assertions then fail). Without /proc/locks: a short sleep, best effort."""
    if blocked_on(lock_file) is None:
        time.sleep(0.2)
        return
    deadline = time.monotonic() + HANG
    while not blocked_on(lock_file) and not gave_up():
        assert time.monotonic() < deadline, f"nothing waited on {lock_file} within {HANG} s"
        time.sleep(0.01)
