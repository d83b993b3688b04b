"""The synthetic phantom modules import one way: no cycle, and no private name taken from another module."""

import ast
from pathlib import Path

import sranet

DATA = Path(sranet.__file__).parent / "data"


def _imports(path: Path) -> list[tuple[str, str]]:
    """(module, name) for every ``from sranet.data.X import name`` in the file, at any depth."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sranet.data."):
            out += [(node.module.rsplit(".", 1)[1], a.name) for a in node.names]
    return out


def test_synthetic_modules_form_no_cycle_and_share_no_private_names():
    modules = {p.stem: _imports(p) for p in DATA.glob("synthetic*.py")}
    assert {"synthetic", "synthetic_geometry", "synthetic_hip", "synthetic_lesions"} <= set(modules)
    private = [(m, name) for m, imps in modules.items() for _, name in imps if name.startswith("_")]
    assert not private
    graph = {m: {dep for dep, _ in imps if dep in modules and dep != m} for m, imps in modules.items()}
    done: set[str] = set()

    def visit(m: str, stack: tuple[str, ...]) -> None:
        assert m not in stack, f"import cycle: {' -> '.join((*stack, m))}"
        if m not in done:
            for dep in graph[m]:
                visit(dep, (*stack, m))
            done.add(m)

    for m in graph:
        visit(m, ())
