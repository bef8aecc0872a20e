"""Every script of tools/ and bench/ starts both ways: by its path from any folder (python tools/x.py) and as a
module from the repository root (python -m tools.x), without an install and without touching sys.path."""
import subprocess
import sys

import pytest

from tests.helpers import ROOT

SCRIPTS = sorted(p for folder in ("tools", "bench") for p in (ROOT / folder).glob("*.py") if p.name != "__init__.py")


def started(args, cwd):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_help_by_path_from_another_folder_and_as_a_module(script, tmp_path):
    by_path = started([script, "--help"], cwd=tmp_path)
    as_module = started(["-m", f"{script.parent.name}.{script.stem}", "--help"], cwd=ROOT)
    for how, proc in (("by path", by_path), ("as a module", as_module)):
        assert proc.returncode == 0 and proc.stdout.lstrip().startswith("usage:"), (how, proc.stdout, proc.stderr)
    assert by_path.stdout == as_module.stdout
