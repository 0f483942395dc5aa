"""The package's import layers: no import circle across packages, and domain code never reaches up.

The graph is read from the source (``ast``), with every import Python runs: module level and inside
functions (lazy imports still tie modules together), plus the parent package each import executes
first (importing ``longcot.data.toy`` runs ``longcot/data/__init__.py``). Imports under
``if TYPE_CHECKING:`` never run and are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Orchestration and composition: configs -> stage -> components, never the other way.
UPPER = ("longcot.config.schema", "longcot.config.validate", "longcot.stages", "longcot.study", "longcot.cli")
DOMAIN = ("longcot.models", "longcot.generation", "longcot.data", "longcot.rewards", "longcot.rl", "longcot.sft",
          "longcot.distill", "longcot.grading", "longcot.training", "longcot.analysis")


def _modules() -> dict[str, Path]:
    mods = {}
    for path in (ROOT / "longcot").rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("")
        mods[".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)] = path
    return mods


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(inner) for stmt in node.body for inner in ast.walk(stmt))
    return skip


def import_graph() -> dict[str, set[str]]:
    """module -> the longcot modules its execution imports (runtime imports and parent packages)."""
    mods = _modules()

    def owner(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        tree = ast.parse(path.read_text())
        skip = _type_checking_nodes(tree)
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        targets = []
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                targets += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                targets += [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
        parts = mod.split(".")
        targets += [".".join(parts[:i]) for i in range(1, len(parts))]
        graph[mod] = {t for t in map(owner, targets) if t and t != mod}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def _package(mod: str) -> str:
    return ".".join(mod.split(".")[:2])


def test_the_graph_sees_lazy_imports_and_parent_packages(graph):
    # a function-level import (distill.tokens.resolve_model) and a parent package run on import
    assert "longcot.config.loading" in graph["longcot.distill.tokens"]
    assert "longcot.data" in graph["longcot.data.toy"]
    # and leaves TYPE_CHECKING-only imports out (generation/__init__ names the config classes for typing only)
    assert "longcot.generation.config" not in graph["longcot.generation"]


def test_cycles_finds_a_planted_circle():
    planted = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(planted) == [["a", "b", "c"]]


def test_no_import_circle_spans_two_packages(graph):
    across = [comp for comp in cycles(graph) if len({_package(m) for m in comp}) > 1]
    assert across == [], f"import circles across packages: {across}"


def test_config_schema_sits_in_no_circle(graph):
    assert not [comp for comp in cycles(graph) if "longcot.config.schema" in comp]


def test_domain_packages_never_import_the_orchestration_layers(graph):
    upward = sorted(f"{m} -> {t}" for m, targets in graph.items() if m.startswith(DOMAIN)
                    for t in targets if t.startswith(UPPER))
    assert upward == []
