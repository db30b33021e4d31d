"""The package's import graph: no cycles, and nothing under the pipeline imports the command line.

Why: a DAG task must never raise a command-line exception or pull argparse wiring in, and a cycle
makes import order decide behaviour. Domain errors live in ``hqms.errors``; ``hqms.cli`` only wires.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "plugins" / "hqms"
#: Not pipeline: the main job (``hqms demo``) drives the command line the way a user types it.
DRIVERS = {"hqms.demo"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module_level_only: bool) -> set[str]:
    """hqms.* modules imported by one file (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("hqms"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if not base.startswith("hqms"):
                continue
            for alias in node.names:  # `from hqms import cli` imports a module
                found.add(f"{base}.{alias.name}" if (PKG.parent / (base + "." + alias.name).replace(".", "/")).with_suffix(".py").exists()
                          or (PKG.parent / (base + "." + alias.name).replace(".", "/")).is_dir() else base)
    found.discard(me)
    return found


def _graph(module_level_only: bool) -> dict[str, set[str]]:
    return {_module_name(p): _imports(p, module_level_only) for p in PKG.rglob("*.py")}


def test_no_pipeline_module_imports_the_cli() -> None:
    offenders = sorted(m for m, deps in _graph(module_level_only=False).items()
                       if "hqms.cli" in deps and m != "hqms.cli" and m not in DRIVERS)
    assert offenders == [], f"import hqms.errors for domain errors instead: {offenders}"


def test_import_graph_has_no_cycles() -> None:
    graph = _graph(module_level_only=True)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if dep not in graph:
                continue
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep):] + [dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_the_graph_sees_imports() -> None:
    """The checks above would pass on an empty graph: prove the parser finds real edges."""
    graph = _graph(module_level_only=False)
    assert "hqms.config" in graph["hqms.ingest.process"]
    assert len(graph) > 40
