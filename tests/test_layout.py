"""The package's shape: imports point down (no cycle, not even through an import string), config.py and errors.py
stay leaves, and no module grows into several things (a size bound)."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ganaug"
MAX_LINES = 460  # "no module over ~450 lines": one thing per module
# "ganaug.gans:ARCHITECTURES", importlib.import_module("ganaug.gans"): a dependency as real as an import statement.
IMPORT_STRING = re.compile(r"^ganaug\.(\w+)(?::[\w.]+)?$")


def imports_of(path: Path, package: str = "ganaug") -> set[str]:
    """The modules of `package` that the file imports, at module level, inside functions or by import string."""
    found = set()
    tree = ast.parse(path.read_text())
    # `if TYPE_CHECKING:` imports exist for annotations only and never run: a module may name the type its caller
    # hands it (space_checks takes the SearchSpec that space.py builds) without importing upwards.
    annotation_only = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
                       and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING"
                       for node in ast.walk(block)}
    for node in ast.walk(tree):
        if id(node) in annotation_only:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith(f"{package}.")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == package:
                found |= {alias.name for alias in node.names}
            elif node.module.startswith(f"{package}."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = re.match(IMPORT_STRING.pattern.replace("ganaug", package), node.value)
            if match:
                found.add(match.group(1))
    found.discard(path.stem)
    return found


def import_graph(folder: Path, package: str = "ganaug") -> dict[str, set[str]]:
    modules = {path.stem: path for path in folder.glob("*.py")}
    return {name: imports_of(path, package) & set(modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as [a, b, ..., a], or [] when the graph has none (depth-first, three colours)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for neighbour in sorted(graph[node]):
            if state.get(neighbour) == 1:
                return path[path.index(neighbour):] + [neighbour]
            if neighbour not in state and (cycle := visit(neighbour)):
                return cycle
        state[node] = 2
        path.pop()
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def test_the_walker_finds_a_cycle_hidden_in_an_import_string(tmp_path):
    (tmp_path / "a.py").write_text("from pkg.b import thing\n")
    (tmp_path / "b.py").write_text("def thing():\n    from pkg import c\n")
    (tmp_path / "c.py").write_text("REGISTRY = 'pkg.a:NAMES'\n")
    graph = import_graph(tmp_path, package="pkg")
    assert graph == {"a": {"b"}, "b": {"c"}, "c": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    (tmp_path / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import T\n")
    assert find_cycle(import_graph(tmp_path, package="pkg")) == []


def test_ganaug_has_no_import_cycle():
    graph = import_graph(PACKAGE)
    assert len(graph) > 20 and "config" in graph["space"]  # the walker reads the real package
    assert find_cycle(graph) == []


def test_config_and_errors_are_leaves():
    """config.py validates every YAML without torch, and everything imports it: it may import errors.py (which
    imports nothing from ganaug) and no other module of ours."""
    graph = import_graph(PACKAGE)
    assert graph["errors"] == set()
    assert graph["config"] <= {"errors"}


def test_no_module_is_several_things():
    sizes = {path.name: len(path.read_text().splitlines()) for path in PACKAGE.glob("*.py")}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}
