"""The package's shape: no import cycles among labkit modules, no module over 400 lines, no module reaching into
another labkit module's private names. Imports are read with ast, function-level ones included."""
import ast
from pathlib import Path

import pytest

import labkit

PACKAGE_DIR = Path(labkit.__file__).resolve().parent
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def _absolute(module: str, node: ast.ImportFrom) -> str:
    """The absolute module a `from ... import` names (relative imports resolved against `module`)."""
    if not node.level:
        return node.module or ""
    is_package = MODULES[module].name == "__init__.py"
    base = module.split(".")[: len(module.split(".")) - node.level + is_package]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str) -> list[tuple[str, str | None, int]]:
    """(labkit module imported, name imported from it or None, line) for every import anywhere in `module`."""
    found = []
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, None, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, node)
            for alias in node.names:
                child = f"{source}.{alias.name}"
                found.append((child, None, node.lineno) if child in MODULES else (source, alias.name, node.lineno))
    return [(target, name, line) for target, name, line in found if target.split(".")[0] == "labkit"]


def import_graph() -> dict[str, set[str]]:
    """module -> the labkit modules it imports (the nearest existing module for a dotted name)."""
    graph = {}
    for module in MODULES:
        targets = set()
        for target, _, _ in imports_of(module):
            while target not in MODULES and "." in target:
                target = target.rsplit(".", 1)[0]
            if target != module:
                targets.add(target)
        graph[module] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle_and_accepts_a_chain():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_function_level_imports_are_seen():
    graph = import_graph()
    assert "labkit.serve.replicas" in graph["labkit.serve.cli"]  # imported inside cli.run()


def test_no_import_cycle_among_labkit_modules():
    assert cycles(import_graph()) == [], "import cycles (each list imports itself through the others)"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_over_400_lines(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines; split it by idea (DESIGN.md: one idea per module)"


def _same_unit(module: str, target: str) -> bool:
    """An exercise's hidden tests are the other half of its own test module, kept apart only for handouts."""
    return (module.startswith("labkit.hidden_tests.") and target.startswith("labkit.exercises.")
            and module.rsplit(".", 1)[1] == target.rsplit(".", 1)[1])


def private_reaches() -> list[str]:
    """Every place a labkit module imports or uses a _private name of another labkit module."""
    reaching = []
    for module in MODULES:
        aliases = {}
        tree = ast.parse(MODULES[module].read_text())
        for target, name, line in imports_of(module):
            if name is not None and name.startswith("_") and not name.startswith("__") and target != module \
                    and not _same_unit(module, target):
                reaching.append(f"{module}:{line} imports {name} from {target}")
        for node in ast.walk(tree):  # `from labkit.x import y` then `y._private`
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if f"{_absolute(module, node)}.{alias.name}" in MODULES:
                        aliases[alias.asname or alias.name] = f"{_absolute(module, node)}.{alias.name}"
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                reaching.append(f"{module}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    return reaching


def test_no_module_imports_another_modules_private_names():
    assert private_reaches() == []
