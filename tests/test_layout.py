"""The house stays tidy: no import cycles among gsenet/ and search/ modules (read with ast, so
imports inside functions count too: a lazy import back is still a cycle)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gsenet", "search")


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of PACKAGES (a package is its __init__)."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported_modules(path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of `modules` that the file imports anywhere (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in modules}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:  # `from gsenet import tracking` imports the module gsenet.tracking
                submodule = f"{node.module}.{alias.name}"
                if submodule in modules:
                    found.add(submodule)
                elif node.module in modules:
                    found.add(node.module)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imported_modules(path, modules) - {name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as [a, b, ..., a], or [] when the graph has none (depth-first search)."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" once fully explored
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = "done"
        path.pop()
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def test_the_cycle_finder_finds_a_lazy_import_back(tmp_path):
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from gsenet import tracking\n    import gsenet.model\n")
    modules = {"gsenet": source, "gsenet.tracking": source, "gsenet.model": source}
    assert imported_modules(source, modules) == {"gsenet.tracking", "gsenet.model"}


def test_no_module_imports_a_module_that_imports_it_back():
    graph = import_graph()
    assert {"gsenet.train", "gsenet.tracking", "search.sweep"} <= graph.keys()  # the walk found the house
    cycle = find_cycle(graph)
    assert not cycle, "import cycle: " + " -> ".join(cycle)


MAX_FUNCTION_LINES = 60  # about one screen
# Functions allowed to be longer, each with the reason splitting it would hide more than it shows.
LONG_FUNCTIONS = {
    # One synthesis recipe read top to bottom (control tracks -> pitch -> harmonics -> noise), in
    # sections; its random draws must stay in this order (same seed = same speech, datasets and
    # the figures recorded from them), and the sections share a dozen arrays.
    "gsenet.speech.procedural_speech": 80,
    # One room, in the order the scheme is stated; the same draw-order constraint, and about a
    # third of each is the meta.json literal laid out one key a line.
    "gsenet.simulate.simulate_paper": 80,
    "gsenet.simulate.simulate_array": 80,
}


def function_lengths() -> dict[str, int]:
    """ "module.function" (or "module.Class.method") -> lines, for every function in PACKAGES."""
    lengths = {}
    for module, path in module_files().items():
        tree = ast.parse(path.read_text(), filename=str(path))
        scopes = [(module, node) for node in tree.body]
        while scopes:
            prefix, node = scopes.pop()
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}.{node.name}"
                if not isinstance(node, ast.ClassDef):
                    lengths[name] = node.end_lineno - node.lineno + 1
                scopes += [(name, child) for child in node.body]
    return lengths


def test_functions_fit_on_a_screen():
    lengths = function_lengths()
    assert "gsenet.train.train_loop_per_worker" in lengths  # the walk found the house
    too_long = {name: n for name, n in lengths.items() if n > LONG_FUNCTIONS.get(name, MAX_FUNCTION_LINES)}
    assert not too_long, (
        f"functions over {MAX_FUNCTION_LINES} lines (split them, or allow-list with a reason): {too_long}"
    )
    stale = sorted(name for name in LONG_FUNCTIONS if lengths.get(name, 0) <= MAX_FUNCTION_LINES)
    assert not stale, f"allow-listed but short now (or gone): remove {stale} from LONG_FUNCTIONS"


def test_every_project_name_imported_anywhere_exists():
    """A `from gsenet.x import y` inside a function only fails when that function runs (a rename
    broke a gs:// test that way on CI): resolve every such import of the project's own names here."""
    import importlib

    missing = []
    for folder in (*PACKAGES, "tests", "benchmarks", "cluster"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if not (isinstance(node, ast.ImportFrom) and node.module and node.level == 0):
                    continue
                if node.module.split(".")[0] not in PACKAGES:
                    continue
                module = importlib.import_module(node.module)
                for alias in node.names:
                    if not hasattr(module, alias.name) and not _is_submodule(f"{node.module}.{alias.name}"):
                        missing.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.module}.{alias.name}")
    assert not missing, "imports of names that do not exist:\n" + "\n".join(missing)


def _is_submodule(dotted: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(dotted) is not None
    except ModuleNotFoundError:
        return False
