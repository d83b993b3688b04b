"""Dependencies point one way: errors/config < runtime < data < model < train < export < bench < cli.

The imports of every module under sranet/ are read with ``ast`` (nothing is executed), module-level and
function-level alike, so a lazy import that points up fails as surely as a top-level one. A module may import from
its own layer or layers to its left. Import cycles between modules fail too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sranet"
LAYERS = {"errors": 0, "config": 0, "runtime": 1, "data": 2, "model": 3, "train": 4, "export": 5, "bench": 6, "cli": 7}
# Cycles that another change removes; each must still exist (so the entry goes once the cycle is gone).
KNOWN_CYCLES: list[set[str]] = []


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> int:
    parts = module.split(".")
    return 0 if len(parts) == 1 else LAYERS[parts[1]]


def imports(module: str, path: Path | None = None) -> list[tuple[int, str]]:
    """(line, imported sranet module) for every import statement in ``module``, relative ones resolved."""
    path = path or MODULES[module]
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import name` imports pkg, and pkg.name too when that is a module
            names = [base] + [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES]
        else:
            continue
        found += [(node.lineno, name) for name in names if name == "sranet" or name.startswith("sranet.")]
    return found


def test_every_module_has_a_layer():
    unplaced = sorted(m for m in MODULES if m != "sranet" and m.split(".")[1] not in LAYERS)
    assert not unplaced, f"modules outside the layer list {list(LAYERS)}: {unplaced}; add them to a layer"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_import_points_up(module):
    upward = [f"{MODULES[module].relative_to(PACKAGE.parent)}:{line} imports {name} (layer "
              f"{layer(name)} > {layer(module)})" for line, name in imports(module) if layer(name) > layer(module)]
    assert not upward, "\n".join(upward)


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative: the components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            child = next(edges, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(component)
    return out


def test_no_import_cycles():
    graph = {m: {name for _, name in imports(m) if name in MODULES and name != m} for m in MODULES}
    # a package's __init__ importing its own submodules is not a cycle of logic
    for m in graph:
        graph[m] = {n for n in graph[m] if not (MODULES[n].name == "__init__.py" and m.startswith(n + "."))}
    cycles = strongly_connected(graph)
    unexpected = [sorted(c) for c in cycles if c not in KNOWN_CYCLES]
    assert not unexpected, f"import cycles: {unexpected}"
    gone = [sorted(c) for c in KNOWN_CYCLES if c not in cycles]
    assert not gone, f"these cycles are gone; remove them from KNOWN_CYCLES: {gone}"


def test_the_checks_catch_what_they_should(tmp_path):
    """The reader sees lazy, relative and plain imports; the cycle finder finds a cycle of three."""
    fake = tmp_path / "fake.py"
    fake.write_text("import numpy\nimport sranet.errors\n\ndef f():\n    from sranet.cli.main import app\n"
                    "    from .volume import Volume\n    from . import io\n")
    found = [name for _, name in imports("sranet.runtime.fake", fake)]
    assert found == ["sranet.errors", "sranet.cli.main", "sranet.runtime.volume", "sranet.runtime",
                     "sranet.runtime.io"]
    assert [n for n in found if layer(n) > layer("sranet.runtime.fake")] == ["sranet.cli.main"]
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
