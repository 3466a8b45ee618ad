"""Reading files the project did not necessarily write: regular files only, bounded in size.

A FIFO, a device (an endless `/dev/zero` behind a symlink) or a directory where a JSON file should be is
refused with one line, never blocked on or read without end; a file above the stated limit is refused; JSON
with an integer too long to convert (Python refuses more than 4,300 digits) is reported as invalid JSON
(`json.JSONDecodeError`, what callers already treat as a damaged file), never an internal error.
"""

from __future__ import annotations

import json
import os
import stat

from core import outputs
from core.errors import UsageError

MAX_JSON = 64 << 20
"""The largest JSON document read (configs, markers, manifests, reports): 64 MiB."""
MAX_MARKER = 1 << 20
"""The largest bookkeeping file read (RUNNING, FAILED, store.json): 1 MiB."""
MAX_LOG = 1 << 30
"""The largest log read whole (metrics.jsonl, a trainer's log, a CSV or JSONL table): 1 GiB."""
MAX_TABLE = 4 << 30
"""The largest Parquet table or TensorBoard event file read: 4 GiB."""


def open_regular(path) -> int:
    """A read-only descriptor of `path` (symlinks followed) after checking it is a regular file; opened
    non-blocking, so a FIFO never blocks. UsageError otherwise; the caller closes the descriptor."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"{path}: {outputs.kind(st.st_mode)}, not a regular file; refusing to read it")
        os.set_blocking(fd, True)
        outputs.note_read(st)  # an input of the running command: never written over
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_bytes(path, limit: int = MAX_JSON) -> bytes:
    """The bytes of regular file `path`, at most `limit` of them (UsageError naming the limit beyond)."""
    fd = open_regular(path)
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise UsageError(f"{path}: {size:,} bytes, more than the {limit:,} bytes this file may have")
        chunks, total = [], 0
        while chunk := os.read(fd, min(1 << 20, limit + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:  # grew while read
                raise UsageError(f"{path}: more than the {limit:,} bytes this file may have")
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_text(path, limit: int = MAX_JSON) -> str:
    """`read_bytes` decoded as UTF-8 (UnicodeDecodeError as usual)."""
    return read_bytes(path, limit).decode()


class HugeInteger(json.JSONDecodeError):
    """JSON holding an integer too long to convert: a `json.JSONDecodeError` (what every caller treats as a
    damaged file), told apart where a damaged file would otherwise be skipped (a side file of a run's seed)."""


def loads(text: str):
    """json.loads, any ValueError (an integer of any length included: `HugeInteger`) raised as
    json.JSONDecodeError."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise
    except ValueError as e:
        kind = HugeInteger if "integer string conversion" in str(e) else json.JSONDecodeError
        raise kind(f"invalid JSON value ({why(e)})", text[:0], 0) from None


def why(e: ValueError) -> str:
    """A ValueError of a parser in words: Python's refusal of an integer too long to convert says how to lift
    the limit in Python; a user is told what the input holds instead."""
    text = " ".join(str(e).split())
    if "integer string conversion" in text:
        digits = next((w for w in text.replace(";", " ").split() if w.isdigit() and w != "4300"), None)
        return f"an integer of {digits or 'more than 4300'} digits; no log, table or config holds one"
    return text[:120]


def read_json(path, limit: int = MAX_JSON):
    """The JSON document in regular file `path` (bounded; see `loads`)."""
    return loads(read_text(path, limit))


def open_file(path, limit: int = MAX_LOG, text: bool = False):
    """A file object of regular file `path` (as `open_regular`), refused above `limit` bytes (UsageError
    naming the limit): for readers that parse from a file (CSV, Parquet, event files). Text is UTF-8,
    with undecodable bytes replaced. The caller closes it (`with`)."""
    fd = open_regular(path)
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise UsageError(f"{path}: {size:,} bytes, more than the {limit:,} bytes this file may have")
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "r", encoding="utf-8", errors="replace", newline="") if text else os.fdopen(fd, "rb")


def read_parquet(path, limit: int = MAX_TABLE):
    """The Parquet table in regular file `path` as a DataFrame (bounded as `open_file`); pyarrow's errors
    as they are (callers report the file as unreadable)."""
    import pandas as pd  # only the readers of tables need pandas

    with open_file(path, limit) as f:
        return pd.read_parquet(f)


def is_regular(path) -> bool:
    """Whether `path` (a symbolic link followed) is a regular file; never opens it (a FIFO never blocks)."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False
