"""Progress lines on stderr: one definition for the study, its finish step and the sweep launcher."""

from __future__ import annotations

import sys


def log(msg: str, source: str = "overopt") -> None:
    """Print `[source] msg` on stderr, flushed (stdout stays for results)."""
    print(f"[{source}] {msg}", file=sys.stderr, flush=True)
