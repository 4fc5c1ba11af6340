"""No import circle among the modules of `speedy`: every import statement counts, lazy ones too."""

import ast
from collections import deque
from pathlib import Path

import speedy

ROOT = Path(speedy.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _target(name: str, modules: set[str]) -> str | None:
    """The longest prefix of `name` that is a module of the package."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The dotted names an import statement in `module` refers to, relative ones resolved."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = module if is_package else module.rpartition(".")[0]
        package = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
        base = f"{package}.{base}".rstrip(".")
    return [f"{base}.{alias.name}" for alias in node.names]


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules it imports anywhere in its file, parent packages left out."""
    files = {_module_name(path): path for path in ROOT.rglob("*.py")}
    modules = set(files)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        edges = graph.setdefault(module, set())
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for name in _imported(node, module, is_package):
                    target = _target(name, modules)
                    if target and target != module and not module.startswith(f"{target}."):
                        edges.add(target)
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components, iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            successor = next(successors, None)
            if successor is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = {stack.pop()}
                    while node not in component:
                        component.add(stack.pop())
                    on_stack -= component
                    components.append(component)
            elif successor not in index:
                index[successor] = low[successor] = len(index)
                stack.append(successor)
                on_stack.add(successor)
                work.append((successor, iter(sorted(graph[successor]))))
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
    return components


def _shortest_circle(graph: dict[str, set[str]], start: str, within: set[str]) -> list[str]:
    """The shortest path from `start` back to itself through the modules `within`."""
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for successor in sorted(graph[node] & within):
            if successor == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [*reversed(path), start]
            if successor not in came_from:
                came_from[successor] = node
                queue.append(successor)
    raise AssertionError(f"{start} is on no circle")


def circles(graph: dict[str, set[str]]) -> list[str]:
    """Per tangled component, circles through every one of its modules, as `a -> b -> a`."""
    found = []
    for component in strongly_connected(graph):
        covered: set[str] = set() if len(component) > 1 else component
        for module in sorted(component):
            if module not in covered:
                circle = _shortest_circle(graph, module, component)
                covered.update(circle)
                found.append(" -> ".join(circle))
    return sorted(found)


def test_circles_are_found() -> None:
    graph = {"a": {"b"}, "b": {"c", "d"}, "c": {"a"}, "d": {"b"}, "e": {"a"}}
    assert circles(graph) == ["a -> b -> c -> a", "d -> b -> d"]


def test_relative_imports_resolve() -> None:
    (node,) = ast.parse("from ..tasks import base").body
    assert isinstance(node, ast.ImportFrom)
    assert _imported(node, "speedy.bench.runner", False) == ["speedy.tasks.base"]
    assert _imported(node, "speedy.bench", True) == ["speedy.tasks.base"]


def test_no_import_circle_in_speedy() -> None:
    found = circles(import_graph())
    assert not found, "import circles:\n" + "\n".join(found)
