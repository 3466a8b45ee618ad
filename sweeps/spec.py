"""Sweep specs: a TOML file that names a preset, base overrides and axes, expanded to study configs.

    preset = "tiny"                 # a named preset (study.presets)
    name = "smoke"                  # optional; description too
    [base]                          # overrides applied to the preset (nested tables)
    labels = { n_comparisons = 4000 }
    [axes]                          # each axis: a dotted config key and a list of values (a product)
    "ladder.sizes" = [[{ name = "rm-s", n_layer = 1, d_model = 16, n_head = 2 }], ...]
    "labels.flip_frac" = [0.0, 0.25]
    [[zip]]                         # axes varied together (equal lengths): one factor of the product
    "policy.n_layer" = [1, 2]
    "policy.d_model" = [32, 64]
    [[exclude]]                     # drop the points whose axis values match every key given
    name = "no noise for the largest"
    "labels.flip_frac" = 0.25

A point is a resolved `StudyConfig`; its id is `core.store.run_id` of that config, so the same
point gets the same id in every expansion. Sweep points default to `figures = false` (the sweep
draws the figures once, from all points). Every bad key or value is a `UsageError` that names the
key and the line of the file where it appears.
"""

from __future__ import annotations

import itertools
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.config import merge
from core.errors import UsageError, cut
from core.store import run_id, safe_name

TOP_KEYS = ("preset", "name", "description", "base", "axes", "zip", "exclude")


@dataclass(frozen=True)
class Point:
    """One point of a sweep: its id, its axis values ({dotted key: value}) and its resolved config."""

    id: str
    values: dict
    config: Any  # study.config.StudyConfig


@dataclass(frozen=True)
class Spec:
    """A parsed spec file: what `load_spec` read, before expansion."""

    path: Path
    text: str
    preset: str
    name: str
    description: str = ""
    base: dict = field(default_factory=dict)
    factors: tuple = ()
    """the product's factors: each a dict {dotted key: list of values}, all lists of one length."""
    excludes: tuple = ()
    """(name, {dotted key: value}) pairs."""

    @property
    def axes(self) -> list[str]:
        return [k for f in self.factors for k in f]


# a spec file larger than this is a mistake (the largest shipped spec is a few kB)
MAX_SPEC_BYTES = 1_000_000
# values nested deeper than this (lists of tables of lists ...) are a mistake; a config is 4 deep
MAX_DEPTH = 32


def is_safe_name(name) -> bool:
    """Whether `name` passes core.store.safe_name: it can be a path component and a Slurm job name."""
    try:
        safe_name(name, "sweep")
    except UsageError:
        return False
    return True


def default_name(path: Path) -> str:
    """A spec's name when it sets none: its file's stem with every unsafe character replaced by '_'."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", path.stem).lstrip(".").replace("..", "_")[:100]
    return name or "sweep"


def _depth(value, limit: int = MAX_DEPTH + 1) -> int:
    """How deeply lists and tables nest in `value` (stops counting past `limit`)."""
    if limit <= 0 or not isinstance(value, (list, dict)):
        return 0
    items = value.values() if isinstance(value, dict) else value
    return 1 + max((_depth(v, limit - 1) for v in items), default=0)


def line_of(text: str, key: str) -> int | None:
    """The 1-based line of `text` where config key `key` (dotted, may carry [i] indices) is set.

    Tries the longest dotted prefix first: a quoted axis key ("a.b"), a bare dotted key (a.b =), then
    the last part as a bare key under a table header that names its parents; falls back to any
    mention of the last part. Returns None when the key does not appear.
    """
    parts = re.sub(r"\[\d+\]", "", key).split(".")
    lines = text.splitlines()
    for n in range(len(parts), 0, -1):
        dotted, leaf, parents = ".".join(parts[:n]), parts[n - 1], parts[: n - 1]
        full = re.compile(rf"""^\s*(["']{re.escape(dotted)}["']|{re.escape(dotted)})\s*=""")
        for i, line in enumerate(lines):
            if full.search(line) or (n > 1 and re.search(rf"""["']{re.escape(dotted)}["']""", line)):
                return i + 1
        bare = re.compile(rf"""^\s*["']?{re.escape(leaf)}["']?\s*=|[{{,]\s*{re.escape(leaf)}\s*=""")
        header = None
        for i, line in enumerate(lines):
            h = re.match(r"^\s*\[+([^\]]+)\]+", line)
            if h:
                header = h.group(1).strip()
                continue
            under = header is None or all(p in header.split(".") for p in parents) or header in ("base", "axes")
            if bare.search(line) and under:
                return i + 1
    leaf = parts[-1]
    for i, line in enumerate(lines):
        if re.search(rf"\b{re.escape(leaf)}\b", line):
            return i + 1
    return None


def _line_naming(text: str, name: str) -> int | None:
    """The line that sets `name = "<name>"` (an exclusion's name)."""
    for i, line in enumerate(text.splitlines()):
        if re.search(rf"""^\s*name\s*=\s*["']{re.escape(name)}["']""", line):
            return i + 1
    return None


def _where(spec_path: Path, text: str, key: str) -> str:
    line = line_of(text, key)
    return f"{spec_path}:{line}" if line else str(spec_path)


def _key_in(message: str) -> str | None:
    """The config key a UsageError message names ('... key 'a.b' ...', or a dotted word)."""
    m = re.search(r"key '([^']+)'", message)
    if m:
        return m.group(1)
    m = re.search(r"\b([a-z_]+(?:\.[a-z_]+)+)\b", message)
    return m.group(1) if m else None


def _fail(path: Path, text: str, key: str | None, message: str) -> UsageError:
    where = _where(path, text, key) if key else str(path)
    return UsageError(f"{where}: {message}")


def nested(values: dict) -> dict:
    """{'a.b': 1, 'a.c': 2} -> {'a': {'b': 1, 'c': 2}}."""
    out: dict = {}
    for key, v in values.items():
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v
    return out


def load_spec(path: str | Path) -> Spec:
    """Read and check the shape of a spec file (keys, lists, zip lengths); values are checked by `expand`.

    Arguments: path of the TOML file. Returns: Spec. Raises UsageError (file:line: message).
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no such spec file: {path}")
    if path.stat().st_size > MAX_SPEC_BYTES:
        raise UsageError(f"{path}: {path.stat().st_size} bytes; a spec is at most {MAX_SPEC_BYTES} bytes")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise UsageError(f"{path}: cannot read: {e.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path}: not valid TOML: {cut(e, 200)}") from None
    except RecursionError:
        raise UsageError(f"{path}: not valid TOML: nested too deeply") from None
    except ValueError as e:  # e.g. an integer of more digits than Python converts
        raise UsageError(f"{path}: not valid TOML: {cut(e, 200)}") from None
    if _depth(data) > MAX_DEPTH:
        raise UsageError(f"{path}: values nested more than {MAX_DEPTH} deep")
    for k in data:
        if k not in TOP_KEYS:
            raise _fail(path, text, k, f"unknown key '{k}' (known: {', '.join(TOP_KEYS)})")
    preset = data.get("preset")
    if not isinstance(preset, str):
        raise _fail(path, text, "preset" if "preset" in data else None, "'preset' must be a string naming a preset")
    for k in ("name", "description"):
        if k in data and not isinstance(data[k], str):
            raise _fail(path, text, k, f"'{k}' must be a string")
    if "name" in data:
        try:
            safe_name(data["name"], "sweep")
        except UsageError as e:
            raise _fail(path, text, "name", str(e)) from None
    base = data.get("base", {})
    if not isinstance(base, dict):
        raise _fail(path, text, "base", "'base' must be a table")
    axes = data.get("axes", {})
    if not isinstance(axes, dict):
        raise _fail(path, text, "axes", "'axes' must be a table of dotted key = [values]")
    zips = data.get("zip", [])
    if not isinstance(zips, list) or not all(isinstance(z, dict) for z in zips):
        raise _fail(path, text, "zip", "'zip' must be an array of tables ([[zip]])")
    factors, seen = [], set()
    for group in [{k: v} for k, v in axes.items()] + zips:
        lengths = set()
        for key, values in group.items():
            if isinstance(values, dict):
                raise _fail(path, text, key, f"axis '{key}' must be a list of values; quote dotted keys (\"a.b\")")
            if not isinstance(values, list) or not values:
                raise _fail(path, text, key, f"axis '{key}' must be a non-empty list of values")
            if key in seen:
                raise _fail(path, text, key, f"axis '{key}' is given twice")
            seen.add(key)
            lengths.add(len(values))
        if len(lengths) > 1:
            first = next(iter(group))
            raise _fail(path, text, first, f"zipped axes {list(group)} have different lengths {sorted(lengths)}")
        if group:
            factors.append(group)
    excludes = []
    ex = data.get("exclude", [])
    if not isinstance(ex, list) or not all(isinstance(e, dict) for e in ex):
        raise _fail(path, text, "exclude", "'exclude' must be an array of tables ([[exclude]])")
    for e in ex:
        e = dict(e)
        name = e.pop("name", None)
        if not isinstance(name, str):
            raise _fail(path, text, "exclude", 'every [[exclude]] needs a name = "..."')
        for key in e:
            if key not in seen:
                raise _fail(path, text, key, f"exclusion '{name}' names '{key}', which is not an axis")
        if not e:
            raise _fail(path, text, "exclude", f"exclusion '{name}' names no axis value")
        excludes.append((name, e))
    return Spec(
        path=path,
        text=text,
        preset=preset,
        name=data.get("name", default_name(path)),
        description=data.get("description", ""),
        base=base,
        factors=tuple(factors),
        excludes=tuple(excludes),
    )


def _same(a, b) -> bool:
    """Equality of TOML values where 1 == 1.0 but True != 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def base_config(spec: Spec):
    """The preset with the sweep default (figures = false) and the spec's [base] applied."""
    from study import presets  # the study's stack (JAX): not for reading or checking a spec's text
    from study.stages import check_keys

    if spec.preset not in presets.PRESETS:
        raise _fail(
            spec.path,
            spec.text,
            "preset",
            f"unknown preset '{spec.preset}' (choose from: {', '.join(presets.PRESETS)})",
        )
    cfg = merge(presets.PRESETS[spec.preset](), {"figures": False})
    try:
        cfg = merge(cfg, spec.base)
        check_keys(spec.base)  # a key no stage, selector or the finish step reads
        return cfg
    except UsageError as e:
        raise _fail(spec.path, spec.text, _key_in(str(e)), f"[base]: {e}") from None


MAX_POINTS = 100_000
"""The most points a spec may expand to, counted before expansion (`count_points`)."""


def count_points(spec: Spec) -> int:
    """The number of points of the spec's product before exclusions, from the factors' lengths alone
    (nothing is expanded, so a 10^12-point grid is counted at once)."""
    n = 1
    for factor in spec.factors:
        n *= len(next(iter(factor.values()))) if factor else 1
    return n


def expand(spec: Spec) -> list[Point]:
    """Every point of the spec (product of its factors, exclusions dropped), resolved and validated.

    Returns: points in a stable order (the spec's order of axes and values). Raises UsageError naming
    the key and its line for an unknown key, a wrong type, an invalid config, or two points that
    resolve to the same config.
    """
    from study.config import validate  # the study's stack (JAX), as above
    from study.stages import check_keys

    size = count_points(spec)
    if size > MAX_POINTS:
        raise UsageError(
            f"{spec.path}: the grid has {size:,} points before exclusions (the product of its axes), more than "
            f"the {MAX_POINTS:,} a sweep may have; split it into several specs"
        )
    base = base_config(spec)
    combos = [{}]
    for factor in spec.factors:
        keys = list(factor)
        rows = [dict(zip(keys, vals)) for vals in zip(*factor.values())]
        combos = [{**c, **r} for c, r in itertools.product(combos, rows)]
    used = {name: 0 for name, _ in spec.excludes}
    points, ids = [], {}
    for values in combos:
        hit = [name for name, match in spec.excludes if all(_same(values[k], v) for k, v in match.items())]
        for name in hit:
            used[name] += 1
        if hit:
            continue
        try:
            cfg = merge(base, nested(values))
            check_keys(nested(values))
        except UsageError as e:
            key = _key_in(str(e))
            axis = next(
                (k for k in values if key and (key == k or key.startswith(k + ".") or key.startswith(k + "["))), key
            )
            raise _fail(spec.path, spec.text, axis, f"[axes]: {e}") from None
        try:
            validate(cfg)
        except UsageError as e:
            key = _key_in(str(e))
            axis = next((k for k in values if key and key.startswith(k.split(".")[0])), key)
            raise _fail(spec.path, spec.text, axis, f"point {values}: {e}") from None
        pid = run_id(cfg)
        if pid in ids:
            raise _fail(
                spec.path,
                spec.text,
                next(iter(values), None),
                f"points {ids[pid]} and {values} resolve to the same config",
            )
        ids[pid] = values
        points.append(Point(id=pid, values=values, config=cfg))
    for name, n in used.items():
        if n == 0:
            line = _line_naming(spec.text, name)
            raise UsageError(f"{spec.path}{f':{line}' if line else ''}: exclusion '{name}' matches no point")
    if not points:
        raise UsageError(f"{spec.path}: every point is excluded; nothing to run")
    return points
