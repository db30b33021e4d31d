"""The package's import graph: no cycles, nothing under the pipeline imports the command line,
and nothing in production (package or DAGs) imports the synthetic-data generator.

Why: a DAG task must never raise a command-line exception or pull argparse wiring in, and a cycle
makes import order decide behaviour. Domain errors live in ``hqms.errors``; ``hqms.cli`` only wires.
The generator is tooling for the demo, the tests and the benches: the production image leaves it
out (``.dockerignore``), so the pipeline must work without it.
"""
from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "plugins" / "hqms"
#: Not pipeline: the main job (``hqms demo``) drives the command line the way a user types it.
DRIVERS = {"hqms.demo"}
#: The synthetic-data tooling: the generator and the main job that runs it.
TOOLING = ("hqms.generate", "hqms.demo")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module_level_only: bool, me: str | None = None) -> set[str]:
    """hqms.* modules imported by one file (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = me or _module_name(path)
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


def _in(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_nothing_in_production_imports_the_generator() -> None:
    production = {m: deps for m, deps in _graph(module_level_only=False).items() if not _in(m, TOOLING)}
    production.update({f"dags.{p.stem}": _imports(p, False, f"dags.{p.stem}") for p in (ROOT / "dags").glob("*.py")})
    assert "dags.hqms_ingest" in production
    offenders = sorted(m for m, deps in production.items() if any(_in(d, ("hqms.generate",)) for d in deps))
    assert offenders == [], f"the generator is demo/test tooling, not pipeline: {offenders}"


def test_the_cli_works_without_the_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in the production image: ``generate`` and ``demo`` are absent, everything else is there."""
    from hqms import cli

    def commands() -> set[str]:
        [sub] = [a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
        return set(sub.choices)

    assert {"generate", "demo"} <= commands()
    monkeypatch.setitem(sys.modules, "hqms.generate", None)  # what an uninstalled package looks like
    without = commands()
    assert not {"generate", "demo"} & without
    assert {"submit", "run", "serve", "doctor", "s3", "up"} <= without
    assert "plugins/hqms/generate" in (ROOT / ".dockerignore").read_text(encoding="utf-8").split()


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
    assert "hqms.generate.run" in graph["hqms.generate.cli"]  # function-level imports are seen too
    assert len(graph) > 40
