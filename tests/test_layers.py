"""The package's layers: every module imports only from its own layer or the layers below.

Bottom up: base -> maths -> graph -> formats (+ lrnconv.models) -> engine (+ lrnconv.passes)
-> runtime -> measure -> app (+ the top-level ``lrnconv`` API). A module's imports of lrnconv
are read from its source (ast), all of them, also those inside functions: a lazy import of
lrnconv's own code is refused (it is how cycles hide), and the import graph has no cycle.
"""
from __future__ import annotations

import ast
import os
from typing import Dict, Iterator, List, Tuple

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = {"lrnconv": "lrnconv", "lrnconv.passes": "passes", "lrnconv.models": "models"}
LAYERS: List[Tuple[str, ...]] = [
    ("lrnconv.base",),
    ("lrnconv.maths",),
    ("lrnconv.graph",),
    ("lrnconv.formats", "lrnconv.models"),
    ("lrnconv.engine", "lrnconv.passes"),
    ("lrnconv.runtime",),
    ("lrnconv.measure",),
    ("lrnconv.app", "lrnconv"),
]


def layer_of(module: str) -> int:
    """The layer of a module: that of the longest package prefix listed in LAYERS."""
    best, best_length = None, -1
    for index, packages in enumerate(LAYERS):
        for package in packages:
            if (module == package or module.startswith(package + ".")) and len(package) > best_length:
                best, best_length = index, len(package)
    if best is None:
        raise KeyError(module)
    return best


def modules() -> Dict[str, str]:
    """Every module of the package (dotted name -> file path)."""
    found = {}
    for package, folder in SOURCES.items():
        base = os.path.join(ROOT, folder)
        for directory, _, files in os.walk(base):
            for file in files:
                if not file.endswith(".py"):
                    continue
                relative = os.path.relpath(os.path.join(directory, file), base)[:-3].split(os.sep)
                if relative[-1] == "__init__":
                    relative = relative[:-1]
                name = ".".join([package] + relative)
                found[name] = os.path.join(directory, file)
    return found


def imports(module: str, source: str, known) -> Iterator[Tuple[str, int, bool]]:
    """(imported lrnconv module, line, at module level) for every import in ``source``."""
    is_package = known.get(module, "").endswith("__init__.py")
    package = module if is_package else module.rpartition(".")[0]
    tree = ast.parse(source)
    top_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            targets = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in known else prefix for a in node.names]
        else:
            continue
        for target in targets:
            if target == "lrnconv" or target.startswith("lrnconv."):
                yield target, node.lineno, id(node) in top_level


ENTRY_POINT = "lrnconv.app.entry"
"""The console command imports the CLI inside main(), so a Ctrl-C during start-up is handled."""


def violations(module: str, source: str, known) -> List[str]:
    """What breaks the layering in one module's source."""
    problems = []
    for target, line, top in imports(module, source, known):
        if not top and module != ENTRY_POINT:
            problems.append(f"{module}:{line} imports {target} inside a function (a lazy import)")
        if layer_of(target) > layer_of(module):
            problems.append(f"{module}:{line} imports {target}, a layer above it "
                            f"({LAYERS[layer_of(target)][0]} > {LAYERS[layer_of(module)][0]})")
    return problems


def test_every_module_imports_only_from_below():
    known = modules()
    assert len(known) > 40 and "lrnconv.passes.fold" in known and "lrnconv.models.alexnet" in known
    problems = []
    for module, path in sorted(known.items()):
        with open(path) as handle:
            problems += violations(module, handle.read(), known)
    assert problems == []


def test_the_import_graph_has_no_cycle():
    known = modules()
    edges = {}
    for module, path in known.items():
        with open(path) as handle:
            edges[module] = {t for t, _, _ in imports(module, handle.read(), known) if t in known and t != module}
    state: Dict[str, int] = {}

    def visit(module, trail):
        state[module] = 1
        for target in sorted(edges[module]):
            if state.get(target) == 1:
                pytest.fail("import cycle: " + " -> ".join(trail + [module, target]))
            if target not in state:
                visit(target, trail + [module])
        state[module] = 2

    for module in sorted(known):
        if module not in state:
            visit(module, [])


@pytest.mark.parametrize("module, source, expected", [
    ("lrnconv.maths.drift", "from ..app.cli import main\n", "a layer above it"),
    ("lrnconv.graph.sites", "import lrnconv.runtime.sessions\n", "a layer above it"),
    ("lrnconv.passes.fold", "from lrnconv.measure.selection import select\n", "a layer above it"),
    ("lrnconv.runtime.runnable", "def f():\n    from ..engine.plan import rewrite\n", "inside a function"),
    ("lrnconv.base.files", "import lrnconv\n", "a layer above it"),
])
def test_the_layer_check_catches_an_upward_import(module, source, expected):
    (problem,) = violations(module, source, modules())
    assert expected in problem


def test_imports_from_below_are_allowed():
    assert violations("lrnconv.app.cli", "from ..maths.drift import Tolerance\nimport lrnconv.graph.sites\n",
                      modules()) == []
