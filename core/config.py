"""Frozen dataclass configs: dict round-trips with type checking, and `a.b=value` overrides.

Every stage owns its config type (WorldConfig in gold_rm.world, GoldConfig in gold_rm, ...);
this module only knows how to build, check and override any frozen dataclass tree.
"""

from __future__ import annotations

import ast
import dataclasses
import math
import types
import typing
from typing import Any

from core.errors import UsageError, cut, show
from core.store import to_jsonable


def to_dict(cfg: Any) -> dict:
    """A config (frozen dataclass tree) as plain JSON types."""
    return to_jsonable(cfg)


def id_dict(cfg: Any) -> dict:
    """A config as the plain JSON a stage key hashes: `to_dict` without the fields marked
    `core.store.OMIT_DEFAULT` while they hold their default (see `core.store.to_jsonable`)."""
    return to_jsonable(cfg, for_id=True)


def _check(value: Any, tp: Any, key: str) -> Any:
    """Coerce/check `value` against annotation `tp`; raise UsageError naming `key` on mismatch."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for a in args:
            if a is type(None):
                if value is None:
                    return None
                continue
            try:
                return _check(value, a, key)
            except UsageError:
                pass
        raise UsageError(f"config key '{key}': expected {tp}, got {show(value)}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise UsageError(f"config key '{key}': expected a table, got {show(value)}")
        return from_dict(tp, value, prefix=f"{key}.")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise UsageError(f"config key '{key}': expected a list, got {show(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_check(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise UsageError(f"config key '{key}': expected {len(args)} items, got {len(value)}")
        return tuple(_check(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args or [Any] * len(value))))
    if origin is typing.Literal:
        if value not in args:
            raise UsageError(f"config key '{key}': expected one of {list(args)}, got {show(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"config key '{key}': expected a number, got {show(value)}")
        if isinstance(value, int) and abs(value) > MAX_INT:
            raise UsageError(f"config key '{key}': {show(value)} is too large")
        if not math.isfinite(value):
            raise UsageError(f"config key '{key}': expected a finite number, got {value}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"config key '{key}': expected an integer, got {show(value)}")
        if abs(value) > MAX_INT:
            raise UsageError(f"config key '{key}': {show(value)} is too large (at most {MAX_INT})")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise UsageError(f"config key '{key}': expected true/false, got {show(value)}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise UsageError(f"config key '{key}': expected a string, got {show(value)}")
        return value
    return value


# the largest integer a config holds (numpy's int64: seeds, sizes, counts)
MAX_INT = 2**63 - 1
# the longest `--set` value (a longer one is a mistake; parsing it could exhaust memory)
MAX_VALUE_CHARS = 10_000


def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def from_dict(cls, data: dict, prefix: str = ""):
    """Build dataclass `cls` from a (possibly partial) dict; unknown keys and wrong types raise UsageError."""
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in set(data) - names)
    if unknown:
        raise UsageError(f"unknown config key '{cut(prefix + unknown[0])}' (known: {', '.join(sorted(names))})")
    kwargs = {k: _check(v, hints[k], prefix + k) for k, v in data.items()}
    required = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in kwargs
    ]
    if required:
        where = f"config key '{prefix.rstrip('.')}'" if prefix else cls.__name__
        raise UsageError(f"{where}: missing {', '.join(required)}")
    return cls(**kwargs)


def merge(cfg: Any, data: dict, prefix: str = "") -> Any:
    """Return `cfg` with the (nested, partial) dict `data` applied; unknown keys / wrong types raise UsageError."""
    hints = _hints(type(cfg))
    names = {f.name for f in dataclasses.fields(cfg)}
    changes = {}
    if not isinstance(data, dict):
        raise UsageError(f"config key '{prefix.rstrip('.') or '(top)'}': expected a table, got {show(data)}")
    for k, v in data.items():
        if k not in names:
            raise UsageError(f"unknown config key '{cut(f'{prefix}{k}')}' (known: {', '.join(sorted(names))})")
        cur = getattr(cfg, k)
        if dataclasses.is_dataclass(cur) and isinstance(v, dict):
            changes[k] = merge(cur, v, prefix=f"{prefix}{k}.")
        else:
            changes[k] = _check(v, hints[k], prefix + k)
    return dataclasses.replace(cfg, **changes)


def parse_value(text: str) -> Any:
    """'3' -> 3, '0.1' -> 0.1, 'true' -> True, '[1,2]' -> [1, 2], 'abc' -> 'abc'.

    A text that is no Python literal stays a string (the config's type check names it); one over
    MAX_VALUE_CHARS characters raises UsageError.
    """
    if len(text) > MAX_VALUE_CHARS:
        raise UsageError(f"a --set value of {len(text)} characters (at most {MAX_VALUE_CHARS})")
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def parse_overrides(items: list[str]) -> dict:
    """['ppo.kl_coefs=[0,0.1]', 'seed=3'] -> {'ppo': {'kl_coefs': [0, 0.1]}, 'seed': 3}."""
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"override '{cut(item)}' is not of the form key=value")
        if len(item) > MAX_VALUE_CHARS:
            raise UsageError(f"override '{cut(item)}' is {len(item)} characters long (at most {MAX_VALUE_CHARS})")
        key, _, val = item.partition("=")
        parts = key.strip().split(".")
        if not all(parts):
            raise UsageError(f"override '{cut(item)}': the key '{key}' has an empty part")
        value = parse_value(val)
        node = out
        for i, p in enumerate(parts[:-1]):
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise UsageError(f"override '{key.strip()}' conflicts with '{'.'.join(parts[: i + 1])}' set before")
        if isinstance(node.get(parts[-1]), dict):
            raise UsageError(f"override '{key.strip()}' conflicts with '{key.strip()}.*' set before")
        node[parts[-1]] = value
    return out
