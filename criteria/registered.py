"""The pre-registered constants of the pooled verdict (`criteria/registered.toml`): the version in force,
its levels, margins and competence floor, the held-out replicates seen under each version, and the file's
sha256 (recorded in verdict.json)."""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path

PATH = Path(__file__).with_name("registered.toml")


@dataclass(frozen=True)
class Registered:
    version: str
    sha256: str
    p_max: float
    slope_ci: float
    margins: dict
    floor: float
    seen: list  # this version's held_out_seen entries
    history: list  # [{version, date, note, held_out_seen}] every version, oldest first


def load(path: Path = PATH) -> Registered:
    """The version named `current` in the file (ValueError when it is missing: a broken registration is a
    programming error, never user input)."""
    raw = Path(path).read_bytes()
    data = tomllib.loads(raw.decode())
    versions = {v["version"]: v for v in data["versions"]}
    cur = versions.get(data["current"])
    if cur is None:
        raise ValueError(f"{path}: current version {data['current']!r} is not among {sorted(versions)}")
    history = [{k: v.get(k) for k in ("version", "date", "note", "held_out_seen")} for v in data["versions"]]
    return Registered(
        version=str(cur["version"]),
        sha256=hashlib.sha256(raw).hexdigest(),
        p_max=float(cur["levels"]["p_max"]),
        slope_ci=float(cur["levels"]["slope_ci"]),
        margins={k: float(v) for k, v in cur["margins"].items()},
        floor=float(cur["floor"]["val_acc"]),
        seen=list(cur.get("held_out_seen", [])),
        history=history,
    )
