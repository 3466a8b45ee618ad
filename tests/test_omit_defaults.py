"""The defaults of the config fields left out of ids while at their default (`core.store.OMIT_DEFAULT`) are pinned.

Such a field keeps every existing run id when it is added (off by default). Changing its default later would
silently reuse the runs stored under the old default (their ids are the same), so a change must come with a
new field (or a store-version bump), never in place: this test fails on any change to those defaults and
names the field. `tests/omit_defaults.json` holds the pinned defaults (repr of the default value; a nested
config's repr covers its own defaults). A new OMIT_DEFAULT field is added to the file with its first default.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import pkgutil
from pathlib import Path

PINNED = Path(__file__).with_name("omit_defaults.json")
PACKAGES = ("core", "lm", "gold_rm", "proxy_rm", "bon", "rl", "direct", "probes", "scaling", "ingest")
PACKAGES += ("criteria", "figures", "study", "sweeps")


def omit_default_fields(packages=PACKAGES) -> dict[str, str]:
    """{module.Class.field: repr(default)} of every OMIT_DEFAULT dataclass field defined in the packages."""
    out = {}
    for pkg in packages:
        root = importlib.import_module(pkg)
        for name in [pkg] + [m.name for m in pkgutil.walk_packages(root.__path__, pkg + ".")]:
            module = importlib.import_module(name)
            for obj in vars(module).values():
                if not (isinstance(obj, type) and dataclasses.is_dataclass(obj) and obj.__module__ == name):
                    continue
                for f in dataclasses.fields(obj):
                    if f.metadata.get("id") == "omit_default":
                        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
                        out[f"{name}.{obj.__qualname__}.{f.name}"] = repr(default)
    return out


def test_the_collector_finds_known_fields():
    found = omit_default_fields(("gold_rm",))
    assert found["gold_rm.world.WorldConfig.global_exploits"] == "True"
    assert found["gold_rm.gold.GoldConfig.kind"] == "'formula'"


def test_omit_default_fields_keep_their_defaults():
    pinned = json.loads(PINNED.read_text())
    found = omit_default_fields()
    changed = {k: (pinned[k], v) for k, v in found.items() if k in pinned and pinned[k] != v}
    assert not changed, (
        "the default of a field left out of ids at its default changed (stored runs under the old default "
        f"would be reused as if they were the new one): {changed}; add a new field instead"
    )
    unpinned = sorted(set(found) - set(pinned))
    assert not unpinned, f"new OMIT_DEFAULT fields: pin their defaults in {PINNED.name}: {unpinned}"
    gone = sorted(set(pinned) - set(found))
    assert not gone, f"pinned fields no longer found (renamed or removed?): {gone}"
