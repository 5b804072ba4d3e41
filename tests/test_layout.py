"""The package's shape: sub-packages in layers whose imports point down, no import cycle (not through an import
string, not through a `TYPE_CHECKING` block), each package's public names in its `__all__` and nothing reaching
into another package's private names, config.py and errors.py leaves, and no module grown into several things."""

import ast
import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ganaug"
MAX_LINES = 460  # "no module over ~450 lines" (besides its key declarations, `declarations`): one thing per module
# Top to bottom: a module may import its own package and the packages of the layers below, never above, and never
# the other package of its own layer (the generators and the classifier side know nothing of each other).
LAYERS = (
    ("cli", "__main__", "tune", "evaluate", "generate", "pipeline"),  # the commands and their `python -m` names
    ("search",),
    ("space",),
    ("results",),
    ("trial",),
    ("gan", "classifier"),
    ("augment",),
    ("data",),
    ("cluster", "config", "options", "metrics", "files", "errors", "__init__"),
)
SUBPACKAGES = ("space", "data", "augment", "gan", "classifier", "trial", "search", "results")
# "ganaug.gan.networks:ARCHITECTURES", importlib.import_module("ganaug.gan"): as real a dependency as an import.
IMPORT_STRING = re.compile(r"^(ganaug(?:\.\w+)*)(?::[\w.]+)?$")


def module_name(path: Path, root: Path = PACKAGE, package: str = "ganaug") -> str:
    """ganaug/gan/trainer.py -> "ganaug.gan.trainer"; ganaug/gan/__init__.py -> "ganaug.gan"."""
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join((package, *(parts[:-1] if parts[-1] == "__init__" else parts)))


def imports_of(path: Path, package: str = "ganaug", root: Path = PACKAGE) -> list[tuple[str, list[str], bool]]:
    """Every import of `package`'s modules in the file: (module, names imported from it, inside a function), at
    module level, in functions, in `TYPE_CHECKING` blocks or as import strings."""
    found = []
    tree = ast.parse(path.read_text())
    in_function = {id(node) for block in ast.walk(tree) if isinstance(block, (ast.FunctionDef, ast.AsyncFunctionDef))
                   for node in ast.walk(block)}
    here = module_name(path, root, package)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], id(node) in in_function) for alias in node.names
                      if alias.name.split(".")[0] == package]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and \
                node.module.split(".")[0] == package:
            found.append((node.module, [alias.name for alias in node.names], id(node) in in_function))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = re.match(IMPORT_STRING.pattern.replace("ganaug", package), node.value)
            if match and match.group(1) != package:
                found.append((match.group(1), [], True))
    return [(module, names, lazy) for module, names, lazy in found if module != here]


def modules(root: Path = PACKAGE, package: str = "ganaug") -> dict[str, Path]:
    return {module_name(path, root, package): path for path in root.rglob("*.py")}


def import_graph(root: Path = PACKAGE, package: str = "ganaug") -> dict[str, set[str]]:
    """Module -> the modules it imports. `from pkg.sub import name` where name is a module counts as that module;
    importing a submodule first runs its package's __init__, which counts too."""
    known = modules(root, package)
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        targets = set()
        for module, names, _ in imports_of(path, package, root):
            targets |= {f"{module}.{n}" for n in names if f"{module}.{n}" in known} or {module}
        # a submodule's import runs every package __init__ above it (not its own package's, which imports it)
        for target in list(targets):
            parts = target.split(".")
            targets |= {".".join(parts[:k]) for k in range(2, len(parts)) if not name.startswith(".".join(parts[:k]))}
        graph[name] = {target for target in targets if target in known and target != name}
    return graph


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


def layer_of(module: str) -> tuple[int, str]:
    """(layer index, top-level name) of a module of ganaug."""
    top = module.split(".")[1] if "." in module else "__init__"
    return next(index for index, names in enumerate(LAYERS) if top in names), top


def test_the_walker_finds_a_cycle_hidden_in_an_import_string_or_a_type_checking_block(tmp_path):
    (tmp_path / "a.py").write_text("from pkg.b import thing\n")
    (tmp_path / "b.py").write_text("def thing():\n    from pkg import c\n")
    (tmp_path / "c.py").write_text("REGISTRY = 'pkg.a:NAMES'\n")
    graph = import_graph(tmp_path, package="pkg")
    assert graph == {"pkg.a": {"pkg.b"}, "pkg.b": {"pkg.c"}, "pkg.c": {"pkg.a"}}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]
    (tmp_path / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import T\n")
    assert find_cycle(import_graph(tmp_path, package="pkg")) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]


def test_ganaug_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 40 and "ganaug.config" in graph["ganaug.space.spec"]  # the walker reads the real package
    assert find_cycle(graph) == []


def test_packages_import_only_the_layers_below_them():
    wrong = []
    for name, path in modules().items():
        layer, top = layer_of(name)
        for module, _, _ in imports_of(path):
            target_layer, target = layer_of(module)
            # the commands import what they run; the leaves may import each other (test_config_and_errors_are_leaves)
            below = target_layer > layer or (target_layer == layer == len(LAYERS) - 1)
            if target != top and layer > 0 and not below:
                wrong.append(f"{name} imports {module}")
    assert wrong == []


def test_the_layers_name_every_top_level_module_and_package():
    tops = {path.stem for path in PACKAGE.glob("*.py")} | {path.parent.name for path in PACKAGE.glob("*/__init__.py")}
    assert tops == {name for layer in LAYERS for name in layer}
    assert set(SUBPACKAGES) == {path.parent.name for path in PACKAGE.glob("*/__init__.py")}


def test_config_and_errors_are_leaves():
    """config.py validates every YAML without torch, and everything imports it: it may import errors.py and
    options.py (how a key is declared; it imports errors.py, which imports nothing from ganaug), and no other
    module of ours."""
    graph = import_graph()
    assert graph["ganaug.errors"] == set()
    assert graph["ganaug.config"] <= {"ganaug.errors", "ganaug.options"}
    assert graph["ganaug.files"] == graph["ganaug.cluster"] == set() and graph["ganaug.options"] == {"ganaug.errors"}


def test_each_package_names_its_public_api_and_others_use_only_that():
    """A package's __init__ lists what other packages may use (__all__); a module of another package imports those
    names from the package itself, never from its modules, and nothing anywhere imports another module's private
    (_underscore) names."""
    exported = {}
    for package in SUBPACKAGES:
        module = importlib.import_module(f"ganaug.{package}")
        assert all(hasattr(module, name) for name in module.__all__), package
        exported[package] = set(module.__all__)
    wrong = []
    for name, path in modules().items():
        _, top = layer_of(name)
        for module, names, _ in imports_of(path):
            _, target = layer_of(module)
            private = [n for n in names if n.startswith("_") and not n.endswith("__")]
            if private:
                wrong.append(f"{name} imports private {private} from {module}")
            if target in SUBPACKAGES and target != top and layer_of(name)[0] > 0:  # commands: the modules they run
                if module != f"ganaug.{target}":
                    wrong.append(f"{name} imports {module}: import from ganaug.{target}")
                elif hidden := sorted(set(names) - exported[target]):
                    wrong.append(f"{name} imports {hidden}, not in ganaug.{target}.__all__")
    assert wrong == []


def test_function_level_imports_of_ganaug_say_why():
    """A module imports ganaug's modules at its top, except where a lazy import keeps a command's bad-input answer
    fast (torch or Ray not loaded before the input is checked): such an import carries a comment saying so."""
    unexplained = []
    for name, path in modules().items():
        lines = path.read_text().splitlines()
        tree = ast.parse(path.read_text())
        for block in ast.walk(tree):
            if not isinstance(block, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(block):
                if isinstance(node, (ast.Import, ast.ImportFrom)) and \
                        (getattr(node, "module", None) or node.names[0].name).startswith("ganaug"):
                    line, above = lines[node.end_lineno - 1], lines[node.lineno - 2]
                    if "#" not in line and not above.strip().startswith("#"):
                        unexplained.append(f"{name}:{node.lineno}")
    assert unexplained == []


def declarations(path: Path) -> int:
    """The lines of a module's dataclass field declarations that are `option(...)` keys (config.TrialConfig's, one
    per key and its documentation): a catalogue that grows with the keys, not code that does several things."""
    lines = 0
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ClassDef):
            lines += sum(item.end_lineno - item.lineno + 1 for item in node.body if isinstance(item, ast.AnnAssign)
                         and isinstance(item.value, ast.Call) and getattr(item.value.func, "id", "") == "option")
    return lines


def test_no_module_is_several_things():
    sizes = {str(path.relative_to(PACKAGE)): len(path.read_text().splitlines()) - declarations(path)
             for path in PACKAGE.rglob("*.py")}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


DOTTED_NAME = re.compile(r"\bganaug(?:\.[A-Za-z_]\w*)+")
FILE_PATH = re.compile(r"\bganaug/[\w/]+\.py\b")


def resolves(dotted: str) -> bool:
    """Whether `dotted` (ganaug.gan.networks, ganaug.classifier.check_classifier, ...) names a module or an
    attribute of one."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attribute in parts[split:]:
            if not hasattr(target, attribute):
                return False
            target = getattr(target, attribute)
        return True
    return False


def test_every_ganaug_name_in_a_docstring_resolves_and_every_path_exists():
    """A docstring that points a reader at ganaug.X names something that exists (modules get renamed: a stale name
    sends a newcomer looking for code that is gone); a docstring or comment's ganaug/....py path names a file."""
    stale = []
    for name, path in modules().items():
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                docstring = ast.get_docstring(node) or ""
                stale += [f"{name}: {found}" for found in DOTTED_NAME.findall(docstring)
                          if not resolves(found.rstrip("."))]
        stale += [f"{name}: {found}" for found in FILE_PATH.findall(text) if not (ROOT / found).is_file()]
    assert stale == []


def test_no_module_but_the_declarations_lists_keys():
    """Which keys play a role (decide the generator, may change on resume, are never ablated, describe a policy) is
    declared on each TrialConfig field; a literal list of five or more key names elsewhere is such a role kept by
    hand, and drifts from the fields."""
    from ganaug.config import TrialConfig

    keys, lists = set(TrialConfig.keys()), []
    for name, path in modules().items():
        if name in ("ganaug.config", "ganaug.options"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            items = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else \
                [key for key in node.keys if key is not None] if isinstance(node, ast.Dict) else []
            named = [item.value for item in items if isinstance(item, ast.Constant) and item.value in keys]
            if len(named) >= 5:
                lists.append(f"{name}:{node.lineno} {named}")
    assert lists == []


def test_every_choice_key_dispatches_through_a_registry():
    """Each choice key's values are the names of one registry dict (config.registry checks them at import), so a
    new choice added to config.py cannot pass validation and silently run another one through an `else`."""
    from ganaug.config import CHOICES, REGISTRIES

    for name in modules():
        importlib.import_module(name)
    assert set(CHOICES) - REGISTRIES == set()
