"""Run as `python tests/multihost_point.py POINT_DIR AUDIT.json` in each process of a multi-process point
(test_multihost): the sweep worker (`sweeps.worker.main`) under a Python audit hook that records every write
this process makes below the sweep directory (files opened for writing, renames, new directories,
removals), dumped to AUDIT.json with the process's exit code and wall time. No hook in production code."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

SWEEP = Path(sys.argv[1]).resolve().parent.parent
WRITES: list[str] = []
_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _inside(path) -> bool:
    try:
        return isinstance(path, (str, bytes, os.PathLike)) and Path(os.fsdecode(path)).resolve().is_relative_to(SWEEP)
    except (OSError, ValueError):
        return False


def _hook(event: str, args) -> None:
    if event == "open" and args:
        path, mode, flags = (list(args) + [None, None])[:3]
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & _FLAGS
        )
        if writing and _inside(path):
            WRITES.append(f"open {path}")
    elif event in ("os.rename", "os.replace", "os.mkdir", "os.remove", "os.rmdir", "os.truncate", "shutil.rmtree"):
        if args and _inside(args[0]):
            WRITES.append(f"{event} {args[0]}")


if __name__ == "__main__":
    sys.addaudithook(_hook)
    from sweeps import worker

    t0 = time.time()
    rc = worker.main([sys.argv[1]])
    Path(sys.argv[2]).write_text(json.dumps({"rc": rc, "seconds": time.time() - t0, "writes": WRITES}))
    sys.exit(rc)
