"""The package map: imports only run downward, every error is a MaskclsError, and nothing patches sys.path."""
import ast
import subprocess
from pathlib import Path

import pytest

from src.errors import MaskclsError
from tests.helpers import ROOT

# lowest first; a module may import from its own level or below
LEVELS = [{"errors", "files", "labels", "seeds", "metrics", "predictions", "decision", "people"}, {"config"}, {"run"}, {"data"}, {"model"}, {"engine"},
          {"predict"}, {"sweep"}, {"insight"}]


def level_of(package: str) -> int:
    return next(i for i, names in enumerate(LEVELS) if package in names)


def imports_of(path: Path) -> set[str]:
    """The src.<package> names a module imports, at any depth of the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "src":
            parts = node.module.split(".")
            found |= {parts[1]} if len(parts) > 1 else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("src.")}
    return found


MODULES = sorted(p for p in (ROOT / "src").rglob("*.py") if p.name != "__init__.py")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT / "src")))
def test_imports_run_downward(path):
    rel = path.relative_to(ROOT / "src")
    own = level_of(rel.parts[0].removesuffix(".py"))
    upward = {name for name in imports_of(path) if level_of(name) > own}
    assert not upward, f"{rel} imports {upward} from above its level"


def test_the_named_arrows_never_exist():
    by_package = {}
    for path in MODULES:
        by_package.setdefault(path.relative_to(ROOT / "src").parts[0], set()).update(imports_of(path))
    assert "insight" not in by_package["engine"] and "engine" not in by_package["data"]
    assert "run" not in imports_of(ROOT / "src" / "config" / "schema.py")  # the schema knows no run folder
    assert imports_of(ROOT / "src" / "config" / "schema.py") == set()


def test_every_exception_class_of_src_is_a_maskcls_error():
    """Exceptions are errors; the one BaseException outside them is the trainer's SIGTERM, raised like Ctrl-C."""
    import importlib

    classes = []
    for path in MODULES:
        module = importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts))
        classes += [obj for obj in vars(module).values() if isinstance(obj, type) and issubclass(obj, Exception)
                    and obj.__module__ == module.__name__]
    assert classes and all(issubclass(c, MaskclsError) for c in classes), classes
    assert {c.__module__ for c in classes} == {"src.errors"}  # one home for the error types


def test_no_path_hacks_anywhere():
    out = subprocess.run(["git", "grep", "-n", "-e", "sys.path.insert", "-e", "noqa: E402", "-e", "from conftest import",
                          "--", "*.py"], cwd=ROOT, capture_output=True, text=True)
    hits = [line for line in out.stdout.splitlines() if not line.startswith("tests/test_package_layers.py")]
    assert hits == []


def module_imports(path: Path) -> set[str]:
    """The src modules a module imports anywhere in its file (TYPE_CHECKING blocks and function bodies included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "src":
            for alias in node.names:  # `from src.run import tracking` names a module, `from src.x import f` does not
                child = ROOT.joinpath(*node.module.split("."), f"{alias.name}.py")
                found.add(f"{node.module}.{alias.name}" if child.is_file() else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("src.")}
    return {name for name in found if ROOT.joinpath(*name.split(".")).with_suffix(".py").is_file()}


def test_every_module_imports_and_no_two_import_each_other_even_for_type_checking():
    import importlib

    names = {".".join(p.relative_to(ROOT).with_suffix("").parts): p for p in MODULES}
    for name in names:
        importlib.import_module(name)
    graph = {name: module_imports(path) & set(names) for name, path in names.items()}
    state, cycles = {}, []

    def visit(name: str, trail: list[str]):
        state[name] = "open"
        for other in sorted(graph[name]):
            if state.get(other) == "open":
                cycles.append(" -> ".join(trail[trail.index(other):] + [other]) if other in trail else other)
            elif other not in state:
                visit(other, trail + [other])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_the_run_folder_writes_what_it_is_handed_and_decides_nothing():
    """src/run/ records results (src/engine/evaluation.py computes them): it imports neither the decision nor the
    people module."""
    imported = {name for path in (ROOT / "src" / "run").glob("*.py") for name in module_imports(path)}
    assert not imported & {"src.decision", "src.people"}, sorted(imported)
