"""The layering rule of docs/ARCHITECTURE.md, checked on the source tree with an `ast` walk.

Every import counts: at module level, inside functions, and under `TYPE_CHECKING`. A package may
import only packages of lower layers (never one of its own layer, never a higher one), and the
modules inside one package import each other without a cycle. Modules stay under MAX_LINES lines.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# bottom to top; packages in one tuple share a layer and do not import each other
LAYERS = [
    ("core",),
    ("lm",),
    ("gold_rm", "proxy_rm"),
    ("bon", "rl", "probes", "direct"),
    ("scaling",),
    ("criteria", "ingest"),
    ("figures",),
    ("study",),
    ("sweeps",),
    ("overopt", "benchmarks"),
]
MAX_LINES = 449


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(root: Path, path: Path, packages: set[str]) -> set[str]:
    """Project modules (or packages) that `path` imports, resolved to dotted names."""
    mod = _module_name(root, path)
    is_pkg = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = mod.split(".")
                base = base[: len(base) - node.level + (1 if is_pkg else 0)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            # `from pkg import mod` imports the module pkg.mod when it exists
            targets = [f"{stem}.{a.name}" if _exists(root, f"{stem}.{a.name}") else stem for a in node.names]
        else:
            continue
        out.update(t for t in targets if t.split(".")[0] in packages)
    out.discard(mod)
    return out


def _exists(root: Path, dotted: str) -> bool:
    p = root.joinpath(*dotted.split("."))
    return p.with_suffix(".py").exists() or (p / "__init__.py").exists()


def _owner(dotted: str, modules: set[str]) -> str:
    """The module a dotted import name refers to (an attribute import resolves to its module)."""
    while dotted and dotted not in modules:
        dotted = dotted.rpartition(".")[0]
    return dotted


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of a directed graph as a list of nodes (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m) :] + [m]
            if m not in state and (c := visit(m)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


def violations(root: Path, layers=LAYERS, max_lines: int = MAX_LINES) -> list[str]:
    """Every breach of the rule in the tree at `root` (empty: the tree is layered)."""
    level = {pkg: i for i, group in enumerate(layers) for pkg in group}
    files = {p: _module_name(root, p) for pkg in level for p in sorted((root / pkg).rglob("*.py"))}
    modules = set(files.values())
    graph: dict[str, set[str]] = {}
    out = []
    for path, mod in files.items():
        n_lines = len(path.read_text().splitlines())
        if n_lines > max_lines:
            out.append(f"{path.relative_to(root)} has {n_lines} lines (at most {max_lines})")
        pkg = mod.split(".")[0]
        graph[mod] = set()
        for target in imports_of(root, path, set(level)):
            tpkg = target.split(".")[0]
            if tpkg != pkg:
                if level[tpkg] >= level[pkg]:
                    out.append(f"{mod} imports {target}: {tpkg} is not below {pkg}")
                continue
            owner = _owner(target, modules)
            # a package's __init__ is imported with any of its modules: only module -> module edges count
            if owner and owner != mod and not mod.startswith(owner + "."):
                graph[mod].add(owner)
    cycle = find_cycle(graph)
    if cycle:
        out.append("import cycle: " + " -> ".join(cycle))
    return out


def test_tree_is_layered():
    assert violations(ROOT) == []


def test_every_package_is_in_a_layer():
    listed = {pkg for group in LAYERS for pkg in group}
    found = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert found <= listed, f"packages missing from LAYERS: {sorted(found - listed)}"


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    return tmp_path


LOW_HIGH = [("low",), ("high",)]


@pytest.mark.parametrize(
    "code",
    [
        "from high import b\n",
        "def f():\n    import high.b\n",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from high.b import X\n",
    ],
)
def test_upward_import_is_caught(tmp_path, code):
    root = _tree(tmp_path, {"low/__init__.py": "", "low/a.py": code, "high/__init__.py": "", "high/b.py": "X = 1\n"})
    assert any("low.a imports high" in v for v in violations(root, LOW_HIGH))


def test_same_layer_import_is_caught(tmp_path):
    root = _tree(tmp_path, {"p/__init__.py": "", "p/a.py": "import q.b\n", "q/__init__.py": "", "q/b.py": ""})
    assert violations(root, [("p", "q")]) == ["p.a imports q.b: q is not below p"]


def test_cycle_inside_a_package_is_caught(tmp_path):
    root = _tree(
        tmp_path,
        {
            "low/__init__.py": "",
            "low/a.py": "from low.b import g\n",
            "low/b.py": "def g():\n    from . import a\n",
        },
    )
    assert violations(root, LOW_HIGH) == ["import cycle: low.a -> low.b -> low.a"]


def test_downward_imports_and_long_modules(tmp_path):
    root = _tree(
        tmp_path,
        {
            "low/__init__.py": "from low.a import f\n",
            "low/a.py": "def f():\n    return 1\n",
            "high/__init__.py": "",
            "high/b.py": "from low import a\nfrom low.a import f\n" + "x = 1\n" * 10,
        },
    )
    assert violations(root, LOW_HIGH) == []
    assert violations(root, LOW_HIGH, max_lines=5) == ["high/b.py has 12 lines (at most 5)"]
