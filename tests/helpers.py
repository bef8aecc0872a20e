"""What tests share besides fixtures: the tiny model's settings, a generated dataset, subprocess and in-process
runs of the entry points, and configs built as the command line builds them."""
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
CORRECTIONS = str(ROOT / "corrections.csv")

# A tiny timm model at a small size: a whole fold takes seconds on 2 CPU cores.
TINY = ["--model", "test_efficientnet", "--pretrained", "false", "--img_height", "64", "--img_width", "48",
        "--batch_size", "8", "--epochs", "2", "--num_workers", "0", "--n_folds", "2", "--aug", "light",
        "--neck_dim", "32", "--msd_count", "2", "--optimizer", "adamw", "--lr", "1e-3", "--scheduler", "none",
        "--infer_batch_size", "16"]


def make_data(out: Path, train_people=24, eval_people=4, seed=6, size="96x128"):
    from tools.make_synthetic_data import main

    main(["--out", str(out), "--train_people", str(train_people), "--eval_people", str(eval_people),
          "--seed", str(seed), "--size", size])
    return out


def run_py(*args, cwd=ROOT, timeout=600, check=True, env=None):
    """Run a repo entry point in a subprocess; returns the CompletedProcess."""
    proc = subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\n"
                             f"stderr:\n{proc.stderr[-3000:]}")
    return proc


def killed_once_saved(args, saved: Path, timeout: float = 300):
    """Start an entry point (`args` after the interpreter) and SIGKILL it as soon as `saved` exists."""
    proc = subprocess.Popen([sys.executable, *map(str, args)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while not saved.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def cli(main, *args, capsys):
    """(exit code, stderr) of an entry point's main() run in this process."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def copy_data(dataset, tmp_path):
    return shutil.copytree(dataset, tmp_path / "d")


def first_eval_image(data):
    return data / "eval" / "images" / pd.read_csv(data / "eval" / "info.csv", dtype=str)["ImageID"][0]


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def tiny_cfg(cls=None, **overrides):
    """A config of `cls` (default TrainConfig) with the TINY settings it takes, then `overrides`."""
    from src.config.schema import TrainConfig
    from src.config.parsing import fields_of, parse

    cls = cls or TrainConfig
    args = [a for key, value in zip(TINY[::2], TINY[1::2]) if key[2:] in fields_of(cls) for a in (key, value)]
    for k, v in overrides.items():
        args += [f"--{k}", str(v)]
    return parse(args, cls)


@contextlib.contextmanager
def read_only(folder: Path):
    """`folder` as a read-only bind mount of itself for the block (root only; the test is skipped elsewhere)."""
    import pytest

    mounted = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {mounted.stderr.decode().strip()}")
    try:
        remounted = subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], capture_output=True)
        if remounted.returncode != 0:
            pytest.skip(f"cannot remount read-only here: {remounted.stderr.decode().strip()}")
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def applied_offsets(run_root: Path):
    """The offsets infer applies for a run: its decision.json's, or None (argmax) where it has none."""
    import json

    import numpy as np

    path = Path(run_root) / "decision.json"
    return np.array(json.loads(path.read_text())["offsets"]) if path.is_file() else None


def hand_table():
    """Ten masked men: 4 under 30, 4 of 30-59, and 2 of 60+ whom the model always finds a little younger (classes 0,
    1, 2 of 18; the other classes get no probability). For src/decision.py's tests and bench/decisions.py's."""
    import numpy as np

    rows = [[0.9, 0.05, 0.05]] * 4 + [[0.1, 0.85, 0.05]] * 4 + [[0.1, 0.5, 0.4]] * 2
    probs = np.zeros((10, 18))
    probs[:, :3] = rows
    return probs, np.array([0] * 4 + [1] * 4 + [2] * 2)
