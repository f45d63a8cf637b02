"""Imports go one way: each layer of the packages may use only the layers before it, and no two modules
import each other, directly or round a loop (function-level imports included: they are how cycles hide)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A group is a sub-package of seismic (or of seismic.monitoring), or serving. A group may import from the
# groups of earlier layers only; groups in one layer are independent of each other.
LAYERS = [
    ["seismic.io", "seismic.features", "seismic.inference"],
    ["seismic.data", "seismic.models", "monitoring.profile", "monitoring.state", "monitoring.drift"],
    ["seismic.tasks", "seismic.export", "monitoring.reports", "serving"],
    ["seismic.registry", "monitoring.alerting", "monitoring.quality"],
    ["seismic.config", "seismic.pipeline", "monitoring.job"],
    ["seismic.validation"],
]
RANK = {group: rank for rank, groups in enumerate(LAYERS) for group in groups}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def group(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "serving":
        return "serving"
    if parts[1:2] == ["monitoring"] and len(parts) > 2:
        return "monitoring." + parts[2]
    return ".".join(parts[:2])


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for pkg in ("seismic", "serving") for p in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in files.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            # a package's own __init__ runs before any of its modules anyway: not an edge to count
            graph[module] |= {t for t in targets if t in files and not module.startswith(t + ".")}
        graph.setdefault(module, set())
    return graph


GRAPH = import_graph()


def test_every_group_has_a_layer():
    packages = {"seismic", "seismic.monitoring"}  # bare __init__ modules, importing nothing
    missing = sorted({group(m) for m in GRAPH if m not in packages} - set(RANK))
    assert not missing, f"add these packages to LAYERS in {Path(__file__).name}: {missing}"


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_only_lower_layers(module):
    source = group(module)
    if source not in RANK:
        return
    upward = sorted(
        f"{target} ({group(target)})"
        for target in GRAPH[module]
        if group(target) != source and RANK.get(group(target), -1) >= RANK[source]
    )
    assert not upward, f"{module} (layer {RANK[source]}) imports a layer at or above its own: {upward}"


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components: each component of more than one module is a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles():
    assert not cycles(GRAPH), f"modules importing each other: {cycles(GRAPH)}"


def test_cycle_finder_sees_loops():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_graph_holds_function_level_imports():
    # publish imports the task loader inside a function body; a cycle hidden that way must still show
    assert "seismic.tasks" in GRAPH["seismic.pipeline.publish"]
