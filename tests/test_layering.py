"""The package's layout holds: stages are peers (none imports another), and no two modules
import each other, directly or round a longer circle. Read from the source with `ast`, so
imports inside functions count too."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
STAGES = {"synth", "capture", "train", "evaluate", "export", "bench", "report", "audit"}
ABOVE_STAGES = {"cli", "commands", "pipeline", "distiller"}
PUBLIC_FACE = "distil"
"""The package root, which re-exports distil.distiller.Distiller (lazily) as distil.Distiller."""


def _modules() -> dict[str, Path]:
    found = {}
    for path in (SRC / "distil").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The distil modules a file imports (`from a import b` counts a.b when that is a module)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in names if name in modules}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) - {name} for name, path in modules.items()}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_no_stage_imports_another_stage():
    crossings = [
        f"{module} imports {target}"
        for module, targets in _graph().items()
        for target in targets
        if _part(module) in STAGES and _part(target) in STAGES and _part(target) != _part(module)
    ]
    assert not crossings, crossings


def test_nothing_below_the_stages_imports_a_stage_or_the_pipeline():
    upward = [
        f"{module} imports {target}"
        for module, targets in _graph().items()
        for target in targets
        if _part(module) not in STAGES | ABOVE_STAGES
        and module != PUBLIC_FACE
        and _part(target) in STAGES | ABOVE_STAGES
    ]
    assert not upward, upward


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in graph:
        if node not in index:
            visit(node)
    return groups


def _without_package_exports(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """A package's __init__ re-exporting its own submodules is not a circle of design."""
    return {
        module: {t for t in targets if not t.startswith(module + ".")} for module, targets in graph.items()
    }


def test_no_import_circles():
    assert _circles(_without_package_exports(_graph())) == []


def test_the_circle_finder_finds_a_circle():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
