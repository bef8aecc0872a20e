"""Every script of tools/ and bench/ starts by its path from any folder (python tools/x.py), without an install and
without touching sys.path: it re-runs itself as the module (python -m tools.x) that it also is."""
import subprocess
import sys

import pytest

from tests.helpers import ROOT

SCRIPTS = sorted(p for folder in ("tools", "bench") for p in (ROOT / folder).glob("*.py") if p.name != "__init__.py")


def started(args, cwd):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_help_by_path_from_another_folder_is_the_modules(script, tmp_path):
    by_path = started([script, "--help"], cwd=tmp_path)
    assert by_path.returncode == 0 and by_path.stdout.lstrip().startswith("usage:"), (by_path.stdout, by_path.stderr)
    module = f"{script.parent.name}.{script.stem}"
    named = by_path.stdout.split("\n")[0]  # the module's own file (argparse's default) or its -m command
    assert named.split()[1] == script.name or named.startswith(f"usage: python -m {module} "), named
