"""The declared stage graph: what a stage is, how its key is derived, and the plan of one study.

A stage declares three things (`Stage`):
  reads     the config fields it reads (dotted paths; a path covers its whole subtree),
  consumes  the stages whose outputs it reads (by role: "policy", "labels", "proxy", "pool", ...),
  writes    the files it leaves in its run directory.
Its *key* is derived from exactly those: the values of the fields it reads (in the replicate's config,
`study.config.replicate_config`) and the ids of the stage instances it consumes, with the store version.
The id of a run is the hash of its key (`core.store.run_id`), so a changed field redoes exactly the
stages that read it and everything downstream of them.

Fields that only choose *which* stages run (`SELECTORS`: which proxies get PPO, which data sizes are
swept, ...) are in no key, so narrowing them reuses the runs that are kept. Fields the finish step
reads (`FINISH`) are in no key either. A field that nothing reads is refused (`check_keys`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.config import id_dict
from core.store import run_id, to_jsonable

STORE_VERSION = 2
"""Version of the stage keys. 1: the hand-built keys before the declared graph (study.json without
"store"); 2: the declared graph. A directory of another version is refused (`study.stages.store`)."""


@dataclass(frozen=True)
class Stage:
    """One kind of stage. `expand(cfg)` lists its instances as `Slot`s; `compute(ctx, run, inst)` fills a
    run directory; `load(ctx, run, inst)` reads its outputs back. `per` names the axis it is repeated over."""

    name: str
    reads: tuple[str, ...]
    consumes: tuple[str, ...]
    writes: tuple[str, ...]
    expand: Callable[[Any], list]
    compute: Callable
    load: Callable
    exclude: tuple[str, ...] = ()
    """fields under `reads` that the stage does not read (e.g. rl.ppo.kl_coef: the grid sets it)."""
    doc: str = ""


@dataclass(frozen=True)
class Slot:
    """One instance of a stage before its id is known.

    label: a stable identity within a plan, for the walk and for comparing two plans (a proxy's by its
    index in the ladder, "proxy[1]", so renaming a size changes that instance, not the plan's shape).
    prefix: the run directory's prefix (e.g. "proxy-rm-s").
    reads: key name -> config path (the paths actually read, list indices filled in).
    inputs: role -> label of the consumed instance.
    params: instance values that are not config fields (e.g. a data size taken from a list the stage
    iterates over); they are in the key.
    """

    label: str
    prefix: str
    reads: dict
    inputs: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Instance:
    stage: Stage
    label: str
    prefix: str
    reads: dict
    inputs: dict  # role -> Instance
    params: dict
    key: dict
    id: str


_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:\[(\d+)\])?")


def value_at(cfg, path: str):
    """The value of dotted config path `path`; a part may index a tuple: "ladder.sizes[1].d_model"."""
    for part in path.split("."):
        m = _PART.fullmatch(part)
        if m is None:
            raise KeyError(path)
        cfg = getattr(cfg, m.group(1))
        if m.group(2) is not None:
            cfg = cfg[int(m.group(2))]
    return cfg


def covers(declared: str, path: str) -> bool:
    """Whether reading `declared` reads `path` (the same field, or `path` inside its subtree)."""
    return path == declared or path.startswith(declared + ".") or path.startswith(declared + "[")


def _value(cfg, path: str, exclude: tuple[str, ...]):
    v = value_at(cfg, path)
    plain = id_dict(v) if dataclasses.is_dataclass(v) else to_jsonable(v, for_id=True)
    for ex in exclude:  # drop excluded leaves below `path` (only dataclass subtrees hold any)
        if covers(path, ex) and ex != path:
            node = plain
            parts = ex[len(path) + 1 :].split(".")
            for p in parts[:-1]:
                node = node[p]
            node.pop(parts[-1], None)
    return plain


def instantiate(stage: Stage, slot: Slot, cfg, made: dict) -> Instance:
    """The instance of `slot` with its key and id: the values of its reads in `cfg` (the replicate's config),
    its params and the ids of its inputs (`made`: label -> Instance, every upstream already made)."""
    inputs = {role: made[label] for role, label in slot.inputs.items()}
    key = {
        "stage": stage.name,
        "store": STORE_VERSION,
        "reads": {name: _value(cfg, path, stage.exclude) for name, path in sorted(slot.reads.items())},
        "params": slot.params,
        "inputs": {role: inst.id for role, inst in sorted(inputs.items())},
        "writes": list(stage.writes),
    }
    return Instance(
        stage, slot.label, slot.prefix, dict(slot.reads), inputs, dict(slot.params), key, run_id(key, slot.prefix)
    )


def downstream(plan: list[Instance], labels: set[str]) -> set[str]:
    """`labels` and every instance that consumes one of them, directly or not (the plan is topological)."""
    out = set(labels)
    for inst in plan:
        if any(i.label in out for i in inst.inputs.values()):
            out.add(inst.label)
    return out


def readers(plan: list[Instance], path: str) -> set[str]:
    """Labels of the instances that read config field `path` (a declared read covers it, not excluded)."""
    out = set()
    for inst in plan:
        if any(covers(p, path) for p in inst.reads.values()) and not any(covers(ex, path) for ex in inst.stage.exclude):
            out.add(inst.label)
        elif path in inst.params:  # a field keyed as a param (compute_dtype, when not float32: stages.plan)
            out.add(inst.label)
    return out


class UndeclaredRead(AssertionError):
    """A stage read a config field that is not among its declared reads (a bug of the stage's declaration)."""


class DeclaredView:
    """The config as one stage instance may see it: a field that a declared read covers is returned as it is;
    a dataclass with a declared read below it is returned as a view of its own; any other field raises
    `UndeclaredRead`, so a stage cannot depend on what its key leaves out (the text study computes every
    instance under one: `study.text_study.TextStudy.run_stage`)."""

    def __init__(self, cfg, paths, stage: str, prefix: str = ""):
        self._cfg, self._paths, self._stage, self._prefix = cfg, tuple(paths), stage, prefix

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        path, value = self._prefix + name, getattr(self._cfg, name)
        if any(covers(p, path) for p in self._paths):
            return value
        if any(covers(path, p) for p in self._paths):  # a declared read lies below this field
            return (
                DeclaredView(value, self._paths, self._stage, path + ".") if dataclasses.is_dataclass(value) else value
            )
        raise UndeclaredRead(f"stage {self._stage} reads config field {path!r}, which it does not declare")
