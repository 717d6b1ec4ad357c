"""The house rules, measured on the code: no import circle among the project's modules (imports
inside functions count; the one exemption is the registry packages' plugin pattern,
``REGISTRY_PACKAGES``), no module over 400 lines, no function over 60 lines outside the math (the
regularizers of Eq. 7-16, kept whole so each reads beside its equations)."""

from __future__ import annotations

import ast
from pathlib import Path

from test_import_boundary import ROOT, _module_of, _targets

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
MATH = {"vat_study/science/regularizers.py"}


def _modules() -> dict[str, Path]:
    files = [p for pattern in ("vat_study/**/*.py", "analysis/**/*.py") for p in ROOT.glob(pattern)
             if "migrations" not in p.parts]
    return {_module_of(p): p for p in sorted(files)}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    return out


REGISTRY_PACKAGES = ("vat_study.science.datasets", "vat_study.science.methods", "vat_study.science.probes")
"""Packages whose ``__init__`` defines a registry and then imports the files of its built-in
entries, each of which imports ``register`` from the package: the plugin pattern, a circle by
construction that is safe (the registry exists before any entry is imported). The one exemption."""


def _edges(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the project modules it imports (inside functions too). ``from . import sibling``
    imports the sibling, not the package's own names; an entry of a registry package importing
    ``register`` from it is the exemption above."""
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for m, path in modules.items():
        for target, _, names in _targets(path.read_text(), m, path.name == "__init__.py"):
            submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
            whole = [] if names and len(submodules) == len(names) else [target]
            for t in (*whole, *submodules):
                if t in modules and t != m and not (t in REGISTRY_PACKAGES and m.startswith(t + ".")):
                    edges[m].add(t)
    return edges


def test_the_circle_finder_finds_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle():
    assert circles(_edges(_modules())) == []


def test_the_exemption_is_only_the_registry_pattern():
    """Without it, the circles are exactly the registry packages with their entries."""
    modules = _modules()
    edges = _edges(modules)
    for package in REGISTRY_PACKAGES:
        for m in modules:
            if m.startswith(package + "."):
                for target, _, names in _targets(modules[m].read_text(), m, modules[m].name == "__init__.py"):
                    if target == package and any(f"{target}.{n}" not in modules for n in names):
                        edges[m].add(package)
    found = circles(edges)
    assert sorted(c[0] for c in found) == sorted(REGISTRY_PACKAGES)
    assert all(all(x == c[0] or x.startswith(c[0] + ".") for x in c) for c in found)


def test_no_module_over_400_lines():
    long = {m: n for m, p in _modules().items() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_no_function_over_60_lines_outside_the_math():
    long = []
    for m, path in _modules().items():
        if str(path.relative_to(ROOT)) in MATH:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{m}.{node.name}: {n} lines")
    assert long == []
