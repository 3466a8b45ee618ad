"""Run store: one directory per run, written atomically, resumable.

A run directory holds
  config.json     the full resolved config (written first)
  metrics.jsonl   one JSON object a line, flattened `a/b` keys, appended as the run goes
  points.parquet  its fit-ready points (written at the end)
  DONE            marker written last, atomically, with the manifest (size, sha256) of every file above
                  and any other the run holds (core.integrity)
A run id is a stable hash of its config, so a relaunch finds finished runs and skips them
(`stage_run`: after checking the manifest; a damaged run is quarantined and recomputed).
Every name that becomes a path passes `safe_name`, and every write resolves inside its run (`Run.file`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import math
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from core import integrity, safe_read
from core.errors import UsageError
from core.integrity import lock_dir, manifest
from core.outputs import check_output, protect_inputs  # noqa: F401 - protect_inputs re-exported

_SAFE = re.compile(r"[A-Za-z0-9._-]+")
MAX_NAME = 100


def safe_name(name: str, what: str) -> str:
    """`name` when it is safe as one path component, else UsageError "bad <what> name '<name>': <why>".

    Safe: characters [A-Za-z0-9._-] only, not starting with '.', no '..', at most 100 characters.
    Every name that becomes part of a path (stage prefixes, proxy sizes, presets, sweep points) goes
    through here before anything is written.
    """
    shown = repr(name)[1:-1] if isinstance(name, str) else repr(name)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    if not isinstance(name, str) or not name:
        why = "it must be a non-empty string"
    elif len(name) > MAX_NAME:
        why = f"it is longer than {MAX_NAME} characters"
    elif not _SAFE.fullmatch(name):
        why = "use only letters, digits, '.', '_' and '-' (no path separators or spaces)"
    elif name.startswith("."):
        why = "it must not start with '.'"
    elif ".." in name:
        why = "it must not contain '..'"
    else:
        return name
    raise UsageError(f"bad {what} name '{shown}': {why}")


def inside(root: str | os.PathLike, path: str | os.PathLike) -> Path:
    """`path`, after checking that it resolves (symlinks followed) inside `root`; UsageError otherwise."""
    root_r, path_r = Path(root).resolve(), Path(path).resolve()
    if not path_r.is_relative_to(root_r):
        raise UsageError(f"refusing to write {path}: it resolves to {path_r}, outside {root_r}")
    return Path(path)


OMIT_DEFAULT = {"id": "omit_default"}  # dataclass field metadata: left out of ids while at its default


def _at_default(f: dataclasses.Field, value: Any) -> bool:
    if f.default is not dataclasses.MISSING:
        return value == f.default
    if f.default_factory is not dataclasses.MISSING:
        return value == f.default_factory()
    return False


def to_jsonable(obj: Any, for_id: bool = False) -> Any:
    """Dataclasses, tuples, numpy scalars/arrays and paths to plain JSON types (non-finite floats to None).
    for_id: leave out the dataclass fields marked OMIT_DEFAULT while they hold their default (a knob added
    later, off by default, then keeps every existing run id and study directory valid)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: to_jsonable(getattr(obj, f.name), for_id)
            for f in dataclasses.fields(obj)
            if not (for_id and f.metadata.get("id") == "omit_default" and _at_default(f, getattr(obj, f.name)))
        }
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v, for_id) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v, for_id) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def canonical_json(obj: Any) -> str:
    """The JSON an id hashes: sorted keys, no spaces, OMIT_DEFAULT fields at their default left out."""
    return json.dumps(to_jsonable(obj, for_id=True), sort_keys=True, separators=(",", ":"))


def run_id(config: Any, prefix: str = "") -> str:
    """Stable id of a resolved config: sha256 of its canonical JSON (independent of process and dict order)."""
    digest = hashlib.sha256(canonical_json(config).encode()).hexdigest()[:12]
    return f"{prefix}-{digest}" if prefix else digest


_UMASK = os.umask(0)
os.umask(_UMASK)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temp file in the same directory, fsync, then rename over `path`.

    A crash before the rename leaves the previous file (if any) intact. `path` must be absent or a regular
    file that is not one of the command's inputs (`check_output`): a link or a device is never replaced.
    """
    path = Path(path)
    check_output(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(to_jsonable(obj), indent=2, sort_keys=True) + "\n")


def atomic_write_parquet(path: str | os.PathLike, df) -> None:
    """Write a DataFrame as Parquet atomically."""
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    atomic_write_bytes(path, buf.getvalue())


def flatten(d: dict, prefix: str = "") -> dict:
    """{'a': {'b': 1}} -> {'a/b': 1}."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}/{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def read_metrics(path: str | os.PathLike, warn: bool = True) -> tuple[list[dict], bytes | None]:
    """(rows, torn) of a metrics.jsonl file. Only a torn last line (no newline at its end, not a JSON
    object: a kill in the middle of a write) is tolerated: left out, returned as `torn` (else None) and,
    with `warn`, reported by one line on stderr. Any other line that is not a JSON object raises
    UsageError naming the file and the line number; blank lines are skipped."""
    data = safe_read.read_bytes(path, safe_read.MAX_LOG)
    lines = data.split(b"\n")
    last = lines.pop()  # b"" when the file ends with a newline
    rows = []
    for i, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        row = _row(raw)
        if row is None:
            raise UsageError(f"{path}: line {i} is not a JSON object (damaged metrics; nothing was rewritten)")
        rows.append(row)
    torn = None
    if last.strip():
        row = _row(last)
        if row is None:
            torn = last
            if warn:
                print(f"overopt: warning: {path}: torn last line {len(lines) + 1} skipped", file=sys.stderr)
        else:
            rows.append(row)
    return rows, torn


def _row(raw: bytes) -> dict | None:
    try:
        row = safe_read.loads(raw.decode())  # an integer too long to convert: damage, not an internal error
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    return row if isinstance(row, dict) else None


class Run:
    """One run directory. `Run.open(root, config)` creates it (or finds it) under `root/<run_id>`."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def file(self, name: str) -> Path:
        """The path of `name` inside this run, checked to resolve inside it (no symlinked escape)."""
        return inside(self.path, self.path / name)

    @classmethod
    def open(cls, root: str | os.PathLike, config: Any, prefix: str = "") -> Run:
        if prefix:
            safe_name(prefix, "stage")
        rid = run_id(config, prefix)
        run = cls(Path(root) / rid)
        inside(root, run.path)
        run.path.mkdir(parents=True, exist_ok=True)
        cfg_path = run.file("config.json")
        if cfg_path.exists():
            try:
                stored = safe_read.loads(safe_read.read_text(cfg_path))
            except ValueError:  # JSON and UTF-8 errors: damage to a run that has no manifest yet
                raise UsageError(f"{cfg_path} is unreadable; move {run.path} away to recompute the run") from None
            if canonical_json(stored) != canonical_json(config):
                raise RuntimeError(f"run {run.path} exists with a different config (hash collision?)")
        else:
            atomic_write_json(cfg_path, config)
        return run

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def done(self) -> bool:
        return (self.path / "DONE").exists()

    def config(self) -> dict:
        return safe_read.read_json(self.path / "config.json")

    def log(self, metrics: dict, **extra) -> None:
        """Append one flattened JSON line to metrics.jsonl (a single write). A torn last line left by a
        kill (no newline at its end) is first cut off, with a warning, unless it parses."""
        row = flatten({**extra, **metrics})
        line = json.dumps(to_jsonable(row), sort_keys=True) + "\n"
        p = self.file("metrics.jsonl")
        with open(p, "a+b") as f:
            end = f.seek(0, os.SEEK_END)
            if end:
                f.seek(end - 1)
                if f.read(1) != b"\n":
                    _, torn = read_metrics(p)
                    if torn is None:  # a whole last row missing only its newline
                        f.write(b"\n")
                    else:
                        f.truncate(end - len(torn))
            f.write(line.encode())
            f.flush()
            os.fsync(f.fileno())

    def reset_metrics(self) -> None:
        """Start metrics afresh (a resumed run that restarts from its beginning)."""
        p = self.file("metrics.jsonl")
        if p.exists():
            p.unlink()

    def metrics(self) -> list[dict]:
        """The rows of metrics.jsonl (see `read_metrics`: a torn last line is skipped with a warning,
        any other unreadable line is a UsageError naming the file and line)."""
        p = self.path / "metrics.jsonl"
        return read_metrics(p)[0] if p.exists() else []

    def write_points(self, df) -> None:
        atomic_write_parquet(self.file("points.parquet"), df)

    def points(self):
        return safe_read.read_parquet(self.path / "points.parquet")

    @contextlib.contextmanager
    def lock(self):
        """Exclusive lock on this run (an flock on `.lock`), held while a process computes it.

        Parallel sweep jobs that share a stage wait here; the one that got the lock first
        marks it DONE and the others then find it done. The OS drops the lock if a holder dies.
        """
        self.file(".lock")
        with lock_dir(self.path):
            yield self

    def mark_done(self, info: dict | None = None) -> None:
        """Write DONE (last, atomically): `info` plus the manifest of every file the run guards
        (core.integrity: sizes and sha256), which a resume and `overopt verify` check."""
        atomic_write_json(self.file("DONE"), {**(info or {}), "manifest": manifest(self.path)})


def find_runs(root: str | os.PathLike, done_only: bool = True) -> list[Run]:
    """Every run directory (one holding config.json) at or below `root`, sorted by path."""
    root = Path(root)
    runs = [Run(p.parent) for p in sorted(root.rglob("config.json"))]
    return [r for r in runs if r.done] if done_only else runs


def _warn(msg: str) -> None:
    print(f"overopt: warning: {msg}", file=sys.stderr, flush=True)


def _repair(root: Path, rid: str, quarantine_root: Path, log) -> dict | None:
    """When the finished run root/rid is damaged (core.integrity), move it whole to quarantine (under its
    lock, checked again there) and return the manifest of the damaged copy ({} when its DONE is
    unreadable); None when it is not finished, verified, or unverified (no manifest: trusted as is)."""
    path = root / rid
    if not os.path.lexists(path / "DONE") or integrity.run_status(path)[0] != "damaged":  # a dangling DONE too
        return None
    with lock_dir(path):
        status, problems = integrity.run_status(path)
        if status != "damaged":  # another process repaired it while this one waited
            return None
        try:
            old = (integrity.read_done(path) or {}).get("manifest") or {}
        except ValueError:
            old = {}
        file, problem = problems[0]
        where = f"{root.name}/{rid}: {file}: {problem}"
        try:
            dest = integrity.quarantine(path, quarantine_root)
        except OSError as e:
            why = f"it cannot be moved to {quarantine_root} ({e.strerror}), so it cannot be recomputed"
            raise UsageError(f"{where}; {why}") from None
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    log(f"{where}{more}; moved to {dest}, recomputing it")
    return old


def _recomputed(run: Run, old: dict, quarantine_root: Path, log) -> None:
    """After recomputing a quarantined run: where it differs from the damaged copy's manifest (the
    computation did not reproduce itself here), move every run computed from the old copy to quarantine
    too, so that the pipeline recomputes them from the new one."""
    changed = integrity.changed_files(run.path, old) if run.done else []
    if not changed:
        return
    deps = integrity.dependents(run.path.parent, run.id)
    log(
        f"{run.path.parent.name}/{run.id}: recomputed {changed[0]} differs from the damaged copy's manifest "
        f"(not reproducible here); moving the {len(deps)} run(s) computed from it to quarantine"
    )
    for d in deps:
        with lock_dir(d):
            dest = integrity.quarantine(d, quarantine_root)
        log(f"{d.parent.name}/{d.name}: moved to {dest}, recomputing it")


@contextlib.contextmanager
def stage_run(root, config: Any, prefix: str, quarantine_root, log=_warn):
    """The run of one pipeline stage (`Run.open(root, config, prefix)`), for a `with` block whose body
    computes it unless it is DONE. A finished run that fails its manifest is first moved whole to
    `quarantine_root` and recomputed (and, if the recomputation differs, the runs that depend on it
    are quarantined as well: see `_recomputed`). The run is locked while the body may compute it
    (parallel sweep jobs share stages: the first computes, the others wait, then find it DONE).
    `log` receives one line per repair."""
    root, quarantine_root = Path(root), Path(quarantine_root)
    safe_name(prefix, "stage")
    old = _repair(root, run_id(config, prefix), quarantine_root, log)
    run = Run.open(root, config, prefix)
    if run.done:
        yield run
        return
    with run.lock():
        yield run
    if old is not None:
        _recomputed(run, old, quarantine_root, log)
