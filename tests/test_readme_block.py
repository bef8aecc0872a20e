"""README's block for generated data, run as written in a new shell (`env -i`, only PATH and HOME), in a copy of the
repository: the block cannot go stale unnoticed. The data and the training are shrunk by SHRINK's replacements, each
of which must still find its text."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

BLOCK_TITLE = "On generated data, without a GPU"
SHRINK = {"--train_people 300 --eval_people 100": "--train_people 16 --eval_people 2 --size 96x128",
          "bash experiments/quick.sh": "bash experiments/quick.sh --epochs 1 --img_height 64 --img_width 48"}


def readme_block() -> list[str]:
    """The commands of README's bash block after BLOCK_TITLE, comments dropped, shrunk."""
    text = (ROOT / "README.md").read_text()
    block = re.search(re.escape(BLOCK_TITLE) + r".*?```bash\n(.*?)```", text, re.S)
    assert block, f"README.md has no bash block after '{BLOCK_TITLE}'"
    for written, small in SHRINK.items():
        assert written in block[1], f"README's block no longer says '{written}'; update SHRINK"
    commands = []
    for line in block[1].splitlines():
        command = re.sub(r"\s+#.*$", "", line).strip()
        for written, small in SHRINK.items():
            command = command.replace(written, small)
        if command:
            commands.append(command)
    return commands


def repository_copy(dest: Path) -> Path:
    """The tracked files, and the environment `. .venv/bin/activate` enters: this one's .venv, or (from a conda env,
    PYTHON=...) an activate script that puts this interpreter first on PATH."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    if (ROOT / ".venv" / "bin" / "activate").is_file() and Path(sys.prefix) == (ROOT / ".venv").resolve():
        (dest / ".venv").symlink_to(ROOT / ".venv")
    else:
        (dest / ".venv" / "bin").mkdir(parents=True)
        (dest / ".venv" / "bin" / "activate").write_text(f'PATH="{Path(sys.executable).parent}:$PATH"\n')
    return dest


def run_in_a_new_shell(commands: list[str], cwd: Path, timeout: int):
    script = "set -euo pipefail\n" + "\n".join(f"echo '+ {c}' >&2\n{c}" for c in commands)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")}
    return subprocess.run(["env", "-i", *(f"{k}={v}" for k, v in env.items()), "bash", "-c", script], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def test_the_blocks_first_command_works_in_a_new_shell(tmp_path):
    commands = readme_block()
    assert commands[0].startswith(". .venv/bin/activate")  # a new shell's python lacks the requirements
    proc = run_in_a_new_shell(commands[:2], repository_copy(tmp_path / "repo"), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "repo" / "data" / "synthetic" / "train" / "train.csv").is_file()


@pytest.mark.slow
def test_the_whole_block_runs_as_written(tmp_path):
    repo = repository_copy(tmp_path / "repo")
    proc = run_in_a_new_shell(readme_block(), repo, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (repo / "logs" / "quick" / "submission.csv").is_file() and (repo / "logs" / "report.html").is_file()
    assert "macro" in proc.stdout.lower()  # tools.score printed its figure
