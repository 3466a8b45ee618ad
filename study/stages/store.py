"""The version of a runs root (DIR/runs/store.json): stage ids changed once with the declared graph, and a
root of another version is refused rather than silently recomputed into a mix of old and new stages."""

from __future__ import annotations

from pathlib import Path

from core import safe_read
from core.errors import UsageError
from core.store import atomic_write_json
from study.stages.graph import STORE_VERSION

STORE_FILE = "store.json"


def store_version(runs_root: Path) -> int | None:
    """The version of `runs_root`: its store.json's, 1 for a root holding runs but no store.json (written
    before versions were recorded), None for a root that does not exist or is empty."""
    root = Path(runs_root)
    f = root / STORE_FILE
    if f.exists():
        try:
            v = safe_read.read_json(f).get("version")
        except (OSError, ValueError, AttributeError, UsageError):
            raise UsageError(f"{f} is unreadable; `overopt verify` the directory") from None
        return v
    if root.is_dir() and any(root.iterdir()):
        return 1
    return None


def check_store(runs_root: Path, create: bool = True) -> None:
    """UsageError (one line) when `runs_root` holds runs of another store version; else, with `create`,
    record this version in it (an empty or new root)."""
    root = Path(runs_root)
    v = store_version(root)
    if v is not None and v != STORE_VERSION:
        raise UsageError(
            f"{root} holds a version-{v} run store; this overopt reads version {STORE_VERSION} (stage ids changed "
            f"with the declared stage graph): write to a new directory, or move {root} away to recompute every stage"
        )
    if v is None and create:
        root.mkdir(parents=True, exist_ok=True)
        atomic_write_json(root / STORE_FILE, {"version": STORE_VERSION})
