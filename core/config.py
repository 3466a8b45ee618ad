"""Frozen dataclass configs: dict round-trips with type checking, and `a.b=value` overrides.

Every stage owns its config type (WorldConfig in gold_rm.world, GoldConfig in gold_rm, ...);
this module only knows how to build, check and override any frozen dataclass tree.
"""

from __future__ import annotations

import ast
import dataclasses
import types
import typing
from typing import Any

from core.errors import UsageError
from core.store import to_jsonable


def to_dict(cfg: Any) -> dict:
    """A config (frozen dataclass tree) as plain JSON types."""
    return to_jsonable(cfg)


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
        raise UsageError(f"config key '{key}': expected {tp}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise UsageError(f"config key '{key}': expected a table, got {value!r}")
        return from_dict(tp, value, prefix=f"{key}.")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise UsageError(f"config key '{key}': expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_check(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise UsageError(f"config key '{key}': expected {len(args)} items, got {len(value)}")
        return tuple(_check(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args or [Any] * len(value))))
    if origin is typing.Literal:
        if value not in args:
            raise UsageError(f"config key '{key}': expected one of {list(args)}, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"config key '{key}': expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"config key '{key}': expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise UsageError(f"config key '{key}': expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise UsageError(f"config key '{key}': expected a string, got {value!r}")
        return value
    return value


def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def from_dict(cls, data: dict, prefix: str = ""):
    """Build dataclass `cls` from a (possibly partial) dict; unknown keys and wrong types raise UsageError."""
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise UsageError(f"unknown config key '{prefix}{unknown[0]}' (known: {', '.join(sorted(names))})")
    kwargs = {k: _check(v, hints[k], prefix + k) for k, v in data.items()}
    return cls(**kwargs)


def merge(cfg: Any, data: dict, prefix: str = "") -> Any:
    """Return `cfg` with the (nested, partial) dict `data` applied; unknown keys / wrong types raise UsageError."""
    hints = _hints(type(cfg))
    names = {f.name for f in dataclasses.fields(cfg)}
    changes = {}
    for k, v in data.items():
        if k not in names:
            raise UsageError(f"unknown config key '{prefix}{k}' (known: {', '.join(sorted(names))})")
        cur = getattr(cfg, k)
        if dataclasses.is_dataclass(cur) and isinstance(v, dict):
            changes[k] = merge(cur, v, prefix=f"{prefix}{k}.")
        else:
            changes[k] = _check(v, hints[k], prefix + k)
    return dataclasses.replace(cfg, **changes)


def parse_value(text: str) -> Any:
    """'3' -> 3, '0.1' -> 0.1, 'true' -> True, '[1,2]' -> [1, 2], 'abc' -> 'abc'."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_overrides(items: list[str]) -> dict:
    """['ppo.kl_coefs=[0,0.1]', 'seed=3'] -> {'ppo': {'kl_coefs': [0, 0.1]}, 'seed': 3}."""
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"override '{item}' is not of the form key=value")
        key, _, val = item.partition("=")
        parts = key.strip().split(".")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = parse_value(val)
    return out
