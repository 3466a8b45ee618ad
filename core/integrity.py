"""Integrity of finished runs: the manifest their DONE carries, checking it, and quarantining damage.

A finished run's DONE (JSON, written last and atomically by `core.store.Run.mark_done`) holds, beside
the run's own info, a manifest of every file the run guards:

    "manifest": {"format": "overopt-manifest/1", "algorithm": "sha256",
                 "files": {"<path relative to the run, '/'-separated>": {"size": <bytes>, "sha256": "<hex>"}},
                 "checkpoints": {"<checkpoint dir>": "<sha256 of its arrays>"}}   (when it holds any)

Guarded: every regular file under the run directory except DONE itself, anything under a name
starting with '.' (the lock, staging files of atomic writes) and a point directory's bookkeeping
(RUNNING, FAILED, worker.log). A DONE without a manifest (a run finished before manifests existed)
is "unverified": it keeps working and is reported, never rewritten. The checkpoint digests serve
only to compare a recomputed run with the damaged copy it replaced (Orbax's files hold timestamps and
random names; the arrays are what must agree); damage is judged on the files' sizes and hashes.

Checking is read-only (`run_status`, `check_run`, `check_tree`). Repair (`quarantine`, `dependents`)
moves a damaged run directory whole to DIR/quarantine/<run id>-<UTC timestamp>/, never leaving
damaged files beside good ones; the pipeline (study.pipeline) then recomputes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import stat
import time
from pathlib import Path

from core import safe_read
from core.errors import UsageError

FORMAT = "overopt-manifest/1"
VOLATILE = frozenset({"DONE", "RUNNING", "FAILED", "worker.log"})
"""Top-level names a manifest never guards: the marker itself and a sweep point's bookkeeping."""
NOT_COMPARED = frozenset({"metrics.jsonl", "_CHECKPOINT_METADATA"})
"""Files whose bytes legitimately differ between two computations of one run (timings, timestamps):
guarded against damage, but left out when a recomputed run is compared with its old manifest."""
_CHUNK = 1 << 20


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with os.fdopen(safe_read.open_regular(path), "rb") as f:  # a FIFO or device is refused, not read
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def guarded_files(path: str | os.PathLike) -> list[str]:
    """The files a manifest of the run at `path` guards: '/'-separated paths relative to it, sorted."""
    root = Path(path)
    out = []
    for d, dirs, files in os.walk(root):  # symlinks are not followed (nor guarded)
        dirs[:] = [x for x in dirs if not x.startswith(".")]
        rel = Path(d).relative_to(root)
        for name in files:
            if name.startswith(".") or (rel == Path(".") and name in VOLATILE):
                continue
            if stat.S_ISREG(os.lstat(Path(d) / name).st_mode):
                out.append((rel / name).as_posix())
    return sorted(out)


def checkpoint_dirs(path: str | os.PathLike, files: list[str] | None = None) -> list[str]:
    """The Orbax checkpoint directories (holding _CHECKPOINT_METADATA) among a run's guarded files."""
    files = guarded_files(path) if files is None else files
    return sorted({f.rsplit("/", 1)[0] for f in files if f.endswith("/_CHECKPOINT_METADATA")})


def manifest(path: str | os.PathLike) -> dict:
    """The manifest of the run at `path` as it is now (see the module doc)."""
    root = Path(path)
    rels = guarded_files(root)
    files = {}
    for rel in rels:
        p = root / rel
        files[rel] = {"size": p.stat().st_size, "sha256": _sha256(p)}
    out = {"format": FORMAT, "algorithm": "sha256", "files": files}
    if ckpts := checkpoint_dirs(root, rels):
        from core.checkpoint import content_digest  # imports JAX: only where a run holds checkpoints

        out["checkpoints"] = {c: content_digest(root / c) for c in ckpts}
    return out


def read_done(path: str | os.PathLike) -> dict | None:
    """The run's DONE as a dict; None when there is no DONE; ValueError when it is unreadable, or a symbolic
    link to nothing or out of the run."""
    p = Path(path) / "DONE"
    if p.is_symlink():  # overopt writes DONE as a regular file: a link to nothing or out of the run is damage
        try:
            inside = p.resolve(strict=True).is_relative_to(Path(path).resolve())
        except (OSError, RuntimeError):
            raise ValueError(f"a symbolic link to nothing ({os.readlink(p)})") from None
        if not inside:
            raise ValueError(f"a symbolic link out of its run ({os.readlink(p)})")
    try:
        raw = safe_read.read_bytes(p)
    except FileNotFoundError:
        return None
    except UsageError as e:  # a FIFO, a device or a huge file where DONE should be: a damaged run
        raise ValueError(str(e)) from None
    try:
        info = safe_read.loads(raw.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"not JSON ({e.__class__.__name__})") from None
    if not isinstance(info, dict):
        raise ValueError("not a JSON object")
    return info


def _files_of(info: dict) -> dict | None:
    m = info.get("manifest")
    if m is None:
        return None
    if not isinstance(m, dict) or m.get("format") != FORMAT or not isinstance(m.get("files"), dict):
        raise ValueError("its manifest is malformed")
    return m["files"]


def run_status(path: str | os.PathLike) -> tuple[str, list[tuple[str, str]]]:
    """(status, [(file, problem)]) of the run at `path`, reading only.

    status: "ok" (every guarded file as the manifest says), "damaged" (a file missing, not a regular
    file, or of another size or hash; or DONE unreadable), "unverified" (DONE has no manifest) or
    "unfinished" (no DONE).
    """
    root = Path(path)
    try:
        info = read_done(root)
        files = _files_of(info) if info is not None else None
    except (ValueError, OSError) as e:
        return "damaged", [("DONE", f"unreadable: {e}")]
    if info is None:
        return "unfinished", [("DONE", "missing (the run is not finished)")]
    if files is None:
        return "unverified", [("DONE", "no manifest (finished before manifests; unverified)")]
    problems = []
    for rel, want in sorted(files.items()):
        if bad := _entry_problem(root, rel, want):
            problems.append((str(rel)[:200], bad))
            continue
        p = root / rel
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            problems.append((rel, "missing"))
            continue
        except OSError as e:
            problems.append((rel, f"unreadable: {e.strerror}"))
            continue
        if not stat.S_ISREG(st.st_mode):
            problems.append((rel, "not a regular file"))
        elif st.st_size != want.get("size"):
            problems.append((rel, f"size {st.st_size} bytes, the manifest says {want.get('size')}"))
        else:
            try:
                ok = _sha256(p) == want.get("sha256")
            except OSError as e:
                problems.append((rel, f"unreadable: {e.strerror}"))
                continue
            if not ok:
                problems.append((rel, "sha256 differs from the manifest (same size)"))
    for rel in sorted(set(guarded_files(root)) - set(files)):  # a forged or shortened list guards nothing
        problems.append((rel, "not in the manifest (a file the finished run did not record)"))
    return ("damaged" if problems else "ok"), problems


def _entry_problem(root: Path, rel, want) -> str | None:
    """Why one manifest entry is not a well-formed entry inside its run, or None."""
    if (
        not isinstance(rel, str)
        or not rel
        or rel.startswith("/")
        or "\\" in rel
        or "\x00" in rel
        or any(part in ("", ".", "..") for part in rel.split("/"))
    ):
        return "a malformed manifest entry (not a plain relative path)"
    size = want.get("size") if isinstance(want, dict) else None
    if isinstance(size, bool) or not isinstance(size, int) or not isinstance(want.get("sha256"), str):
        return "a malformed manifest entry (it needs an integer size and a sha256)"
    try:
        inside = (root / rel).resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError, ValueError):
        inside = False
    return None if inside else "a manifest entry that points outside its run"


def check_run(path: str | os.PathLike) -> list[str]:
    """Problems of the run at `path` as "<file>: <problem>" lines (empty: verified). Reads only."""
    status, problems = run_status(path)
    return [f"{f}: {p}" for f, p in problems] if status != "ok" else []


def run_dirs(runs_root: str | os.PathLike) -> list[Path]:
    """The run directories directly under `runs_root` (those holding config.json or DONE), sorted."""
    root = Path(runs_root)
    if not root.is_dir():
        return []
    return sorted(
        d
        for d in root.iterdir()
        if d.is_dir() and not d.is_symlink() and ((d / "config.json").exists() or os.path.lexists(d / "DONE"))
    )


def symlinked_run_dirs(runs_root: str | os.PathLike) -> list[Path]:
    """The entries directly under `runs_root` that are symbolic links (run_dirs leaves them out), sorted."""
    root = Path(runs_root)
    return sorted(d for d in root.iterdir() if d.is_symlink()) if root.is_dir() and not root.is_symlink() else []


def check_tree(runs_root: str | os.PathLike) -> list[dict]:
    """One dict per finished run under `runs_root` that is not verified: run ("<root name>/<id>"), file,
    problem, status ("damaged" or "unverified"). Unfinished runs are skipped. Reads only."""
    root = Path(runs_root)
    out = []
    for d in run_dirs(root):
        status, problems = run_status(d)
        if status in ("damaged", "unverified"):
            out += [{"run": f"{root.name}/{d.name}", "file": f, "problem": p, "status": status} for f, p in problems]
    return out


# ---------------------------------------------------------------------------------------------- repair


@contextlib.contextmanager
def lock_dir(path: str | os.PathLike):
    """Exclusive flock on `path`/.lock, held for the block. A run directory moved away (quarantined)
    while this process waited is noticed (its lock file is no longer the one at `path`): it then waits
    on the new one."""
    lock = Path(path) / ".lock"
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        Path(path).mkdir(parents=True, exist_ok=True)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def quarantine(path: str | os.PathLike, quarantine_root: str | os.PathLike) -> Path:
    """Move the run directory `path` whole to `quarantine_root`/<run id>-<UTC timestamp>[-n]/. Returns it."""
    src, qroot = Path(path), Path(quarantine_root)
    qroot.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    dest = qroot / f"{src.name}-{stamp}"
    n = 1
    while dest.exists():
        n += 1
        dest = qroot / f"{src.name}-{stamp}-{n}"
    try:
        os.rename(src, dest)
    except OSError:  # another filesystem
        shutil.move(str(src), str(dest))
    return dest


def _comparable(m: dict) -> dict:
    """What of a manifest two computations of one run must agree on: the sha256 of each file outside
    checkpoints and NOT_COMPARED, and each checkpoint's content digest."""
    ckpts = m.get("checkpoints") or {}
    out = {f"{c}/ (checkpoint arrays)": d for c, d in ckpts.items()}
    for rel, meta in (m.get("files") or {}).items():
        if Path(rel).name not in NOT_COMPARED and not any(rel.startswith(c + "/") for c in ckpts):
            out[rel] = meta.get("sha256")
    return out


def changed_files(path: str | os.PathLike, old: dict) -> list[str]:
    """What of the recomputed, finished run at `path` differs from `old` (the manifest of the copy it
    replaced; see `_comparable`), among what both hold. Empty when the recomputation reproduced it."""
    new = _comparable((read_done(path) or {}).get("manifest") or {})
    old = _comparable(old)
    return sorted(k for k in new.keys() & old.keys() if new[k] != old[k])


def dependents(runs_root: str | os.PathLike, rid: str) -> list[Path]:
    """Run directories under `runs_root` whose config names run `rid`, directly or through another
    such run (stages key their inputs by run id), in no particular order."""
    configs = {}
    for d in run_dirs(runs_root):
        try:
            configs[d] = safe_read.read_text(d / "config.json")
        except (OSError, UsageError, UnicodeDecodeError):
            continue
    found, todo = {}, [rid]
    while todo:
        needle = json.dumps(todo.pop())
        for d, text in configs.items():
            if d not in found and d.name != rid and needle in text:
                found[d] = True
                todo.append(d.name)
    return list(found)
