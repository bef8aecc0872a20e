"""The shape of src/: no function (nested ones included) is longer than 60 lines, counted by ast from its `def` line
(decorators aside) to its last line."""
import ast

from tests.helpers import ROOT

MAX_LINES = 60


def function_lengths() -> list[tuple[int, str]]:
    """(lines, 'path:line name') of every function and method under src/, longest first."""
    found = []
    for path in sorted((ROOT / "src").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                where = f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"
                found.append((node.end_lineno - node.lineno + 1, where))
    return sorted(found, reverse=True)


def test_no_function_of_src_is_longer_than_60_lines(capsys):
    lengths = function_lengths()
    with capsys.disabled():
        print(f"\nlongest functions of src/: {', '.join(f'{where} ({n})' for n, where in lengths[:3])}")
    too_long = [f"{where} ({n} lines)" for n, where in lengths if n > MAX_LINES]
    assert not too_long, f"over {MAX_LINES} lines: {too_long}"
