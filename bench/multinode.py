"""Training past one machine, on this one: the quick recipe's fold 0 as one process, as a world of 2 on one launcher, on
two launchers (as two machines would start it: experiments/multinode.sh's environment, c10d rendezvous, gloo), and on
two launchers with MAX_RESTARTS=1 and rank 1 killed (SIGKILL) in the middle of epoch 3; then three SGD steps of the
tiny model on 8 people as one process with batch 8 against two ranks with batch 4 each, without and with --sync_bn.

    python -m bench.multinode [--people 80] [--epochs 4]

The two cores are shared by the ranks: the point is each way's overhead and that they learn alike, not a speed-up.
Prints the wall time, the CV macro-F1 and, for the killed run, the time the restart cost against the same world
unkilled; then the largest difference of each world of 2 from the one process, in weights and in BatchNorm's running
statistics.
"""
if __name__ == "__main__" and not __package__:  # by path, only this folder is on sys.path: rerun as a module
    import os
    import sys

    script = os.path.realpath(__file__)
    root, package = os.path.split(os.path.dirname(script))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH"))))
    os.execv(sys.executable, [sys.executable, "-P", "-m", f"{package}.{os.path.basename(script)[:-3]}", *sys.argv[1:]])

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launcher(args: list, nodes: int = 1, gpus: int = 1, addr: str = "localhost", port: int | None = None,
             env: dict | None = None) -> subprocess.Popen:
    """One node's launcher: python -m src.engine.launch train.py ARGS, set as experiments/multinode.sh sets it."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "NNODES": str(nodes), "GPUS": str(gpus), "MASTER_ADDR": addr,
                   "MASTER_PORT": str(port or free_port()), "JOIN_TIMEOUT": "120",
                   "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])), **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "src.engine.launch", "train.py", *map(str, args)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment)


def two_nodes(args: list, gpus: int = 1, addr: str = "localhost", env: dict | None = None) -> list[subprocess.Popen]:
    """Two launchers of one run, the second once the first hosts the rendezvous (as on two machines)."""
    port = free_port()
    first = launcher(args, 2, gpus, addr, port, env)
    deadline = time.monotonic() + 120
    while first.poll() is None and time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex((addr, port)) == 0:
                break
        time.sleep(0.1)
    return [first, launcher(args, 2, gpus, addr, port, env)]


def finished(procs: list[subprocess.Popen], timeout: float = 3600) -> list[str]:
    outs = [p.communicate(timeout=timeout)[0] for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit("\n---\n".join(o[-3000:] for o in outs))
    return outs


def kill_rank_when(run: Path, rank: int, epoch: int, procs: list[subprocess.Popen]):
    """SIGKILL the worker of global `rank` of `run` (its launcher's env has MASKCLS_RUN=run) once fold 0's last.pt
    holds `epoch`, so in the middle of the next."""
    import torch

    last, deadline = run / "fold0" / "last.pt", time.monotonic() + 1800
    while time.monotonic() < deadline and all(p.poll() is None for p in procs):
        try:
            if torch.load(last, weights_only=True, mmap=True)["epoch"] >= epoch:
                break
        except (OSError, RuntimeError, KeyError):
            pass
        time.sleep(0.05)
    time.sleep(0.2)
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"train.py" in cmdline and b"src.engine.launch" not in cmdline and f"RANK={rank}".encode() in environ \
                and f"MASKCLS_RUN={run}".encode() in environ:
            os.kill(int(pid), signal.SIGKILL)
            return
    raise SystemExit(f"no worker of rank {rank} of {run} to kill")


def max_differences(a: Path, b: Path) -> tuple[float, float]:
    """The largest difference of the learned weights, and of BatchNorm's running statistics, between two runs."""
    import torch

    x, y = (torch.load(r / "fold0" / "last.pt", weights_only=True)["model"] for r in (a, b))
    gap = {k: (x[k].float() - y[k].float()).abs().max().item() for k in x if x[k].is_floating_point()}
    running = [k for k in gap if ".running_" in k]
    return max(v for k, v in gap.items() if k not in running), max(gap[k] for k in running)


TINY_SGD = ["--model", "test_efficientnet", "--pretrained", "false", "--img_height", "64", "--img_width", "48",
            "--num_workers", "0", "--n_folds", "2", "--fold", "0", "--neck_dim", "32", "--epochs", "1", "--aug", "none",
            "--msd_count", "0", "--optimizer", "sgd", "--lr", "0.01", "--scheduler", "none", "--loss", "ce",
            "--class_weights", "false", "--gridshuffle_p", "0", "--deterministic", "true"]  # no randomness, a mean loss


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--people", type=int, default=80, help="generated training people (quick trains fold 0 of 4)")
    p.add_argument("--epochs", type=int, default=4)
    a = p.parse_args(argv)
    from tools.make_synthetic_data import main as make_data

    with tempfile.TemporaryDirectory() as tmp:
        data, logs = Path(tmp) / "d", Path(tmp) / "logs"
        make_data(["--out", str(data), "--train_people", str(a.people), "--eval_people", "2", "--seed", "4701"])
        quick = ["--config", "experiments/quick.yaml", "--data_dir", data, "--log_dir", logs, "--epochs", a.epochs,
                 "--deterministic", "true", "--early_stop_patience", "99"]
        rows = []

        def timed(label, name, start, killed=False):
            t0 = time.perf_counter()
            procs = start(name)
            if killed:
                kill_rank_when(logs / name, 1, 2, procs)
            finished(procs)
            cv = json.loads((logs / name / "cv.json").read_text())["cv_f1"]
            rows.append((label, time.perf_counter() - t0, cv))

        timed("world 1 (train.py, 2 threads)", "w1", lambda n: [subprocess.Popen(
            [sys.executable, "train.py", *map(str, quick), "--name", n], cwd=ROOT, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)])
        half = [*quick, "--batch_size", "16"]  # the same 32 a step over the world
        timed("world 2, one launcher (GPUS=2)", "w2", lambda n: [launcher([*half, "--name", n], gpus=2)])
        timed("world 2, two launchers (NNODES=2)", "n2", lambda n: two_nodes([*half, "--name", n]))
        timed("world 2, two launchers, rank 1 killed in epoch 3, MAX_RESTARTS=1", "k2",
              lambda n: two_nodes([*half, "--name", n], env={"MAX_RESTARTS": "1", "MASKCLS_RUN": str(logs / n)}),
              killed=True)
        few = Path(tmp) / "few"  # 8 people: fold 0 trains 28 photos, 3 steps of 8
        make_data(["--out", str(few), "--train_people", "8", "--eval_people", "2", "--seed", "3", "--size", "48x64"])
        small = ["--data_dir", few, "--log_dir", logs, *TINY_SGD]
        finished([subprocess.Popen([sys.executable, "train.py", *map(str, small), "--name", "one", "--batch_size", "8"],
                                   cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)])
        for name, extra in (("plain", []), ("sync", ["--sync_bn", "true"])):
            finished([launcher([*small, "--name", name, "--batch_size", "4", *extra], gpus=2)])
        plain, sync = (max_differences(logs / "one", logs / n) for n in ("plain", "sync"))
        same = (logs / "n2" / "cv.json").read_text() == (logs / "k2" / "cv.json").read_text()

    print(f"\nquick.yaml, fold 0 of 4, {a.epochs} epochs, {a.people} generated people (seed 4701), --deterministic true")
    print("| world | wall (s) | CV macro-F1 |\n|---|---|---|")
    for label, wall, cv in rows:
        print(f"| {label} | {wall:.1f} | {cv:.4f} |")
    print(f"the restart cost {rows[3][1] - rows[2][1]:+.1f} s against the same world unkilled; cv.json "
          f"{'identical' if same else 'DIFFERENT'}")
    print("\nthe tiny model on 8 people, 3 SGD steps (lr 0.01): one process with batch 8 against two ranks with batch 4 "
          "each")
    print("| world of 2 | largest difference: weights | BatchNorm running statistics |\n|---|---|---|")
    for label, (weights, running) in (("without --sync_bn", plain), ("with --sync_bn", sync)):
        print(f"| {label} | {weights:.3g} | {running:.3g} |")


if __name__ == "__main__":
    main()
