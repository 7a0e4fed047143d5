"""The package layout stays as docs/ARCHITECTURE.md describes it, read from the source with ``ast``.

- No import cycles: two modules importing each other (even lazily, inside a function) means one of
  them holds what both need; it belongs in a third module.
- Dagster stays in the wiring: only ``ta_platform/defs/``, ``ta_platform/definitions.py`` and
  ``ta_platform/cli/`` import it, so the science runs (and is tested) without an orchestrator.
- A domain folder of ``defs/`` never imports another domain's folder: what several domains share
  goes through ``defs/shared.py`` (or the shared ``defs/resources.py`` and ``defs/compute.py``).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "ta_platform"
DAGSTER_ALLOWED = ("ta_platform.defs", "ta_platform.definitions", "ta_platform.cli")


def _modules(root: Path = ROOT) -> dict[str, Path]:
    modules = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _imported_names(module: str, path: Path) -> set[str]:
    """Every absolute dotted name this module imports, anywhere in its body (relative imports resolved)."""
    names = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # falls back to base if not a module
    return names


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the project modules it imports (``from a import b`` counts b when b is a module)."""
    modules = _modules(root)
    graph = {}
    for module, path in modules.items():
        targets = set()
        for name in _imported_names(module, path):
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def _domain(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 3 and parts[:2] == ["ta_platform", "defs"] else None


def test_the_graph_reader_sees_a_planted_cycle(tmp_path):
    package = tmp_path / PACKAGE
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "a.py").write_text("from . import b\n")
    (package / "sub" / "b.py").write_text("def f():\n    from ta_platform.sub.a import x\n")
    (package / "c.py").write_text("import ta_platform.sub.a\n")
    graph = import_graph(tmp_path)
    assert graph["ta_platform.sub.a"] == {"ta_platform.sub.b"}
    assert find_cycles(graph) == [["ta_platform.sub.a", "ta_platform.sub.b"]]


def test_no_module_imports_itself_back_through_others():
    graph = import_graph()
    assert len(graph) > 100 and graph["ta_platform.definitions"]  # the scan read the real package
    assert find_cycles(graph) == []


def test_only_the_wiring_imports_dagster():
    offenders = []
    for module, path in _modules().items():
        if module.startswith(DAGSTER_ALLOWED):
            continue
        if any(name == "dagster" or name.startswith(("dagster.", "dagster_")) for name in _imported_names(module, path)):
            offenders.append(module)
    assert offenders == [], "science and storage modules must not import Dagster"


def test_defs_domains_share_only_through_the_shared_modules():
    crossing = sorted(
        f"{module} -> {target}"
        for module, targets in import_graph().items()
        for target in targets
        if _domain(module) and _domain(target) and _domain(module) != _domain(target)
    )
    assert crossing == [], "route what several domains need through ta_platform/defs/shared.py"


def test_storage_lives_in_the_store_package_not_in_a_study():
    modules = _modules()
    assert {"ta_platform.store.metadata_store", "ta_platform.store.tables", "ta_platform.store.artifacts"} <= set(modules)
    assert "ta_platform.anchors.metadata_store" not in modules and "ta_platform.anchors.artifacts" not in modules
