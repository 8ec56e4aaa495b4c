"""The shared kernel sits below the stages, and the stages it serves import each other in
one direction: no import cycle through gateway.fs, gateway.invoice, gateway.xml, intake,
mapping, validation or reports, lazy imports inside functions included.

Read from the source (every ``import`` statement, not only those run at import time), so
that a cycle hidden in a function is found too. Imports under ``TYPE_CHECKING`` are left
out: they never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

GATEWAY = Path(__file__).resolve().parent.parent / "gateway"
#: The kernel: imported by the stages, importing none of them.
KERNEL = ("gateway.fs", "gateway.invoice", "gateway.xml.safe", "gateway.xml.saxon", "gateway.xml.syntax")
#: What the kernel may import of the gateway.
BELOW_KERNEL = ("gateway.domain", "gateway.errors", "gateway.xml")
GUARDED = (*KERNEL, "gateway.intake", "gateway.mapping", "gateway.validation", "gateway.reports")


def _modules() -> dict[str, Path]:
    found = {}
    for path in GATEWAY.rglob("*.py"):
        parts = path.relative_to(GATEWAY.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imported(module: str, path: Path, modules: dict[str, Path]) -> Iterator[str]:
    """The gateway modules ``module`` imports anywhere in its code."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def visit(node: ast.AST) -> Iterator[str]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                yield from (alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.rsplit(".", child.level - 1)[0] if child.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                yield base
                yield from (f"{base}.{alias.name}" for alias in child.names)
            yield from visit(child)

    for name in visit(ast.parse(path.read_text(encoding="utf-8"))):
        while name and name not in modules:
            name = name.rpartition(".")[0]
        # A submodule importing its own package is how Python runs it anyway: not an edge.
        if name.startswith("gateway") and name != module and not module.startswith(name + "."):
            yield name


def _group(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:3] if parts[1:2] == ["xml"] and len(parts) > 2 else parts[:2])


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        for target in _imported(module, path, modules):
            if _group(target) != _group(module):
                graph.setdefault(_group(module), set()).add(_group(target))
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def strong(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                strong(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in list(graph):
        if node not in index:
            strong(node)
    return found


def _guarded(module: str) -> bool:
    return any(module == name or module.startswith(name + ".") for name in GUARDED)


def test_no_import_cycle_goes_through_the_kernel_or_the_stages_it_serves() -> None:
    cycles = [sorted(cycle) for cycle in _cycles(_graph()) if cycle & set(GUARDED)]
    assert cycles == []


def test_no_module_of_them_is_in_a_cycle_either() -> None:
    """Within a package too: the reports registry imports its parsers, which do not import it."""
    modules = _modules()
    graph = {module: set(_imported(module, path, modules)) for module, path in modules.items()}
    cycles = [sorted(cycle) for cycle in _cycles(graph) if any(_guarded(module) for module in cycle)]
    assert cycles == []


def test_the_kernel_imports_no_stage() -> None:
    graph = _graph()
    for kernel in KERNEL:
        assert graph.get(kernel, set()) <= {*KERNEL, *BELOW_KERNEL}, kernel


def test_mapping_and_validation_take_the_invoice_model_not_intake() -> None:
    graph = _graph()
    assert "gateway.intake" not in graph.get("gateway.mapping", set())
    assert "gateway.intake" not in graph.get("gateway.validation", set())
    assert "gateway.mapping" not in graph.get("gateway.validation", set())
    assert "gateway.mapping" not in graph.get("gateway.intake", set())


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
