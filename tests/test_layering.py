"""The library's layers: no import cycle between fkdlib's parts, and nothing below the papers
imports them.

Every import counts, also those deferred into a function body (a deferred import still ties
two parts together; it only hides the cycle from Python's import machinery). The parts are the
top-level modules and packages of ``fkdlib`` (``zoo``, ``evaluation``, ``report`` ...).
"""

import ast
from pathlib import Path

import fkdlib

PACKAGE = Path(fkdlib.__file__).resolve().parent
# The only parts that may use the per-paper code: the papers themselves and the command line.
ABOVE_EXPERIMENTS = {"experiments", "cli", "reproduce"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of the fkdlib modules a file imports anywhere in its body."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.add(name)
            # ``from . import x`` imports the submodule x
            found.update(f"{name}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "fkdlib" or name.startswith("fkdlib.")}


def _part(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _part_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = _part(_module_name(path))
        if source is None:
            continue
        targets = {_part(name) for name in _imports(path)}
        graph.setdefault(source, set()).update(t for t in targets if t and t != source)
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_cycles():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_relative_imports_resolve_to_absolute_names(tmp_path, monkeypatch):
    package = tmp_path / "fkdlib"
    (package / "zoo").mkdir(parents=True)
    module = package / "zoo" / "cache.py"
    module.write_text("from ..data import build_dataset\nfrom . import methods\n"
                      "def f():\n    from fkdlib.distill import base\n")
    monkeypatch.setattr(f"{__name__}.PACKAGE", package)
    assert _imports(module) == {"fkdlib.data", "fkdlib.data.build_dataset", "fkdlib.zoo",
                                "fkdlib.zoo.methods", "fkdlib.distill",
                                "fkdlib.distill.base"}


def test_no_import_cycle_between_the_parts_of_fkdlib():
    cycle = _find_cycle(_part_graph())
    assert cycle is None, f"import cycle between parts of fkdlib: {' -> '.join(cycle)}"


def test_nothing_below_the_papers_imports_them():
    offenders = sorted(part for part, targets in _part_graph().items()
                       if "experiments" in targets and part not in ABOVE_EXPERIMENTS)
    assert not offenders, f"{offenders} import fkdlib.experiments, which sits above them"
