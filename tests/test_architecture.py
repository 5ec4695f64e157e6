"""The package's shape: imports run downhill through the layers, with no import circle, and no module
grows past LONG_MODULE lines without saying why in its docstring ("Length: ...")."""

from __future__ import annotations

import ast
from pathlib import Path

RAG = Path(__file__).resolve().parents[1] / "rag"
LONG_MODULE = 350
# Lower layers never import higher ones; a package may import itself and anything below it.
LAYERS = [
    {"rag", "rag.errors", "rag.settings", "rag.types"},
    {"rag.ingest", "rag.provision"},
    {"rag.embedding"},
    {"rag.index"},
    {"rag.search"},
    {"rag.answering"},
    {"rag.pipeline"},
    {"rag.evaluation", "rag.web"},
    {"rag.cli"},
]


def _modules() -> dict[str, Path]:
    found = {}
    for path in RAG.rglob("*.py"):
        parts = path.relative_to(RAG.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """Every rag module this one imports, at the top or inside a function (a lazy import is still one)."""
    out = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        out |= {t for t in targets if t == "rag" or t.startswith("rag.")}
    return {t for t in out if t in modules} - {name}


def _layer(module: str) -> int:
    for number, members in enumerate(LAYERS):
        if any(module == m or (m != "rag" and module.startswith(m + ".")) for m in members):
            return number
    raise AssertionError(f"{module} is in no layer: add its package to LAYERS")


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_every_import_runs_downhill():
    modules = _modules()
    uphill = []
    for name, path in modules.items():
        for target in _imports(path, name, modules):
            if _package(target) != _package(name) and _layer(target) > _layer(name):
                uphill.append(f"{name} -> {target}")
    assert uphill == []


def test_there_is_no_import_circle():
    modules = _modules()
    graph = {name: _imports(path, name, modules) for name, path in modules.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(trail[trail.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert cycles == []


def test_long_modules_say_why():
    unexplained = []
    for name, path in _modules().items():
        lines = path.read_text(encoding="utf-8").count("\n")
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        if lines > LONG_MODULE and "Length:" not in doc:
            unexplained.append(f"{name} ({lines} lines)")
    assert unexplained == []


def test_the_layer_table_knows_every_package():
    assert {_layer(name) for name in _modules()}  # raises for a module outside every layer
