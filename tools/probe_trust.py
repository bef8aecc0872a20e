"""Probe the tool as an attacker's dataset or a careless user would, and print one line per case.

    python -m tools.probe_trust --work /tmp/probe --seed 31 [--strace]

Generates a small dataset with --seed, trains a tiny run, then crafts: a `../` path row, an absolute
ImageID, `--name ..` with `--overwrite`, `--overwrite` with a missing weights file, an empty info.csv, an
empty eval JPEG read by a loader worker, and two folds trained at once. Then the faults: --out onto the data or
a folder, a named pipe as a photo, damaged cache files, read-only disks (bind mounts: run as root), names taken
by a file or too long, Ctrl-C and SIGTERM, a pickle as weights, infer beside a fold still training, a killed
infer's temp file, a hand-edited config.yaml, a hidden space, and a relative DATA_DIR. With --strace, check_data and infer
of the traversal dataset run under `strace -f -e trace=openat`, and every opened path outside the data,
the run folder, the repository and the Python installation is listed (there should be none).
"""
import argparse
import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--model", "test_efficientnet", "--pretrained", "false", "--img_height", "64", "--img_width", "48",
        "--batch_size", "8", "--epochs", "1", "--num_workers", "0", "--n_folds", "3", "--aug", "light",
        "--neck_dim", "32", "--msd_count", "2", "--optimizer", "adamw", "--lr", "1e-3", "--scheduler", "none"]


def run(*args, prefix=(), cwd=ROOT, env=None):
    proc = subprocess.run([*prefix, sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, timeout=600)
    return proc, error_lines(proc.stderr)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(("error:", "problem:", "interrupted"))]


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@contextlib.contextmanager
def read_only(folder: Path):
    """folder as a read-only bind mount of itself (root only)."""
    subprocess.run(["mount", "--bind", str(folder), str(folder)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True)
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def interrupt(args, sig, after: Path):
    """Start a training process, send it `sig` once `after` exists; (process with stderr, error lines)."""
    proc = subprocess.Popen([sys.executable, *map(str, args)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    while not after.is_file() and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(sig)
    proc.stderr = proc.communicate(timeout=300)[1]
    return proc, error_lines(proc.stderr)


class Payload:
    """A pickle that runs code when loaded without weights_only."""

    def __reduce__(self):
        return print, ("this payload ran",)


def report(case: str, proc, errors, ok: bool):
    shown = errors[0] if errors else f"(no error line; {len(proc.stderr.splitlines())} stderr lines)"
    print(f"| {case} | {proc.returncode} | {'ok' if ok else 'FAIL'} | {shown[:160]} |", flush=True)


def copy(data: Path, to: Path) -> Path:
    shutil.rmtree(to, ignore_errors=True)
    return shutil.copytree(data, to, symlinks=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--strace", action="store_true")
    a = p.parse_args()
    shutil.rmtree(a.work, ignore_errors=True)
    data, logs = a.work / "data", a.work / "logs"
    run("-m", "tools.make_synthetic_data", "--out", data, "--train_people", 150, "--eval_people", 6, "--seed", a.seed,
        "--size", "96x128")
    base = ["--data_dir", data, "--log_dir", logs, *TINY]
    proc, _ = run("train.py", *base, "--name", "ref", "--fold", "0")
    assert proc.returncode == 0, proc.stderr[-2000:]
    print("| case | exit | as expected | first error line |\n|---|---|---|---|")

    victim = a.work / "outside" / "victim"
    victim.mkdir(parents=True)
    (victim / "secret.txt").write_text("not yours")
    (victim / "listing_canary.txt").write_text("named nowhere: it shows only if the folder is listed")
    trav = copy(data, a.work / "trav")
    people = pd.read_csv(trav / "train" / "train.csv", dtype=str)
    people.loc[0, "path"] = "../../../outside/victim"
    people.to_csv(trav / "train" / "train.csv", index=False)
    info = pd.read_csv(trav / "eval" / "info.csv", dtype=str)
    info.loc[0, "ImageID"] = str(victim / "secret.txt")
    info.to_csv(trav / "eval" / "info.csv", index=False)
    proc, err = run("train.py", "--data_dir", trav, "--check_data")
    report("train.csv path ../../../outside/victim (check_data)", proc, err,
           proc.returncode == 1 and "row 2" in proc.stderr and "listing_canary" not in proc.stdout + proc.stderr)
    proc, err = run("infer.py", "--data_dir", trav, "--log_dir", logs, "--run", "ref", "--out", a.work / "s.csv")
    report("absolute ImageID (infer)", proc, err, proc.returncode == 1 and len(err) == 1 and "row 2" in err[0])

    (logs / "unrelated.txt").write_text("keep me")
    proc, err = run("train.py", *base, "--name", "..", "--overwrite")
    report("--name .. --overwrite", proc, err, proc.returncode == 2 and (logs / "unrelated.txt").is_file()
           and (logs / "ref" / "config.yaml").is_file())
    before = (logs / "ref" / "fold0" / "last.pt").read_bytes()
    proc, err = run("train.py", *base, "--name", "ref", "--overwrite", "--pretrained", "true", "--pretrained_path",
                    a.work / "typo.pth")
    report("--overwrite with a missing weights file", proc, err,
           proc.returncode == 1 and (logs / "ref" / "fold0" / "last.pt").read_bytes() == before)

    empty = copy(data, a.work / "empty_info")
    pd.read_csv(empty / "eval" / "info.csv").iloc[:0].to_csv(empty / "eval" / "info.csv", index=False)
    proc, err = run("infer.py", "--data_dir", empty, "--log_dir", logs, "--run", "ref", "--out", a.work / "s.csv")
    report("info.csv with a header only (infer)", proc, err, proc.returncode == 1 and len(err) == 1)

    broken = copy(data, a.work / "empty_jpeg")
    first = pd.read_csv(broken / "eval" / "info.csv", dtype=str)["ImageID"][0]
    (broken / "eval" / "images" / first).write_bytes(b"")
    proc, err = run("infer.py", "--data_dir", broken, "--log_dir", logs, "--run", "ref", "--num_workers", 1,
                    "--out", a.work / "s.csv")
    report("empty eval JPEG, num_workers=1 (infer)", proc, err,
           proc.returncode == 1 and len(err) == 1 and first in err[0] and len(proc.stderr.splitlines()) < 10)

    t0 = time.time()
    procs = [subprocess.Popen([sys.executable, "train.py", *map(str, base), "--name", "ref", "--fold", str(k),
                               "--resume"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for k in (1, 2)]
    outs = [pr.communicate()[1] for pr in procs]
    metrics = pd.read_csv(logs / "ref" / "metrics.csv")
    folds = sorted(set(metrics["fold"]))
    fake = type("P", (), {"returncode": max(pr.returncode for pr in procs), "stderr": "".join(outs)})
    report(f"--fold 1 and --fold 2 --resume at once ({time.time() - t0:.0f} s): metrics.csv folds {folds}", fake,
           [], fake.returncode == 0 and folds == [0, 1, 2])

    faults(a, data, logs, base)

    if a.strace:
        allowed = [str(trav), str(logs), str(ROOT), sys.prefix, sys.base_prefix, "/usr/", "/lib", "/etc/", "/proc/",
                   "/sys/", "/dev/", "/root/.cache/", "/root/.config/", "/root/.pyenv/"]
        for case, args in (("check_data", ["train.py", "--data_dir", trav, "--check_data"]),
                           ("infer", ["infer.py", "--data_dir", trav, "--log_dir", logs, "--run", "ref",
                                      "--out", a.work / "s.csv"])):
            trace = a.work / f"strace_{case}.txt"
            run(*args, prefix=("strace", "-f", "-e", "trace=openat", "-o", str(trace)))
            # relative names are the dynamic loader probing for libcuda from the working directory
            opened = {str(ROOT / o) if not o.startswith("/") else o
                      for o in re.findall(r'openat\([^,]+, "([^"]+)"', trace.read_text())}
            victim_hits = sorted(o for o in opened if o.startswith(str(a.work / "outside")))
            elsewhere = sorted(o for o in opened if not any(o.startswith(x) for x in allowed))
            print(f"strace {case}: {len(opened)} distinct paths opened; under the traversal target "
                  f"{a.work / 'outside'}: {victim_hits or 'none'}; anywhere else outside the data, the run, the "
                  f"repository and the Python installation: {elsewhere or 'none'}")


def faults(a, data: Path, logs: Path, base: list):
    """Outputs onto inputs, pipes, damaged caches, read-only disks, odd names, signals, busy folds, killed infers."""
    train_csv = data / "train" / "train.csv"
    before = md5(train_csv)
    proc, err = run("infer.py", "--data_dir", data, "--log_dir", logs, "--run", "ref", "--out", train_csv)
    report(f"infer --out D/train/train.csv: md5 {before[:8]} -> {md5(train_csv)[:8]}", proc, err,
           proc.returncode == 2 and md5(train_csv) == before)
    proc, err = run("infer.py", "--data_dir", data, "--log_dir", logs, "--run", "ref", "--out", a.work)
    report("infer --out an existing folder", proc, err, proc.returncode == 2 and "is a folder" in err[0])

    piped = copy(data, a.work / "fifo")
    photo = next(next((piped / "train" / "images").iterdir()).glob("mask3.*"))
    photo.unlink()
    os.mkfifo(photo)
    proc, err = run("train.py", "--data_dir", piped, "--check_data")
    report("a named pipe as mask3.jpg (check_data)", proc, err, proc.returncode == 1 and "named pipe" in err[0])
    proc, err = run("train.py", "--data_dir", piped, "--log_dir", a.work / "fifo_logs", *TINY, "--name", "f")
    report("a named pipe as mask3.jpg (train)", proc, err, proc.returncode == 1 and len(err) == 1
           and "named pipe" in err[0])

    cached = ["--data_dir", data, "--log_dir", a.work / "cache_logs", *TINY, "--fold", "0", "--epochs", "1",
              "--cache", "disk"]
    run("train.py", *cached, "--name", "c0")
    (npy,) = (a.work / "cache_logs" / "cache").glob("*.npy")
    with open(npy, "r+b") as f:
        f.truncate(npy.stat().st_size // 2)
    proc, err = run("train.py", *cached, "--name", "c1")
    report("a truncated .npy in log_dir/cache: rebuilt", proc, err,
           proc.returncode == 0 and "is damaged" in proc.stderr and "rebuilding" in proc.stderr)
    head = npy.read_bytes()[:128]
    count = re.search(rb"\((\d+), ", head).group(1)
    other = str(int(count) + 1 if len(str(int(count) + 1)) == len(count) else int(count) - 1).encode()
    npy.write_bytes(head.replace(b"(" + count + b", ", b"(" + other + b", ", 1) + npy.read_bytes()[128:])
    proc, err = run("train.py", *cached, "--name", "c2")
    report("a wrong-shape .npy header in log_dir/cache: rebuilt", proc, err,
           proc.returncode == 0 and "is damaged" in proc.stderr)

    locked = a.work / "ro_logs"
    locked.mkdir()
    with read_only(locked):
        proc, err = run("train.py", *base[:2], "--log_dir", locked, *TINY, "--name", "r")
    report("a read-only log_dir (train)", proc, err, proc.returncode == 1 and len(err) == 1
           and "Read-only" in err[0] and "Traceback" not in proc.stderr)
    with read_only(logs / "ref"):
        proc, err = run("infer.py", "--data_dir", data, "--log_dir", logs, "--run", "ref")
    report("infer into a read-only run", proc, err, proc.returncode == 1 and len(err) == 1 and "Read-only" in err[0]
           and "predict ref" not in proc.stderr)

    (logs / "notes").write_text("mine")
    proc, err = run("train.py", *base, "--name", "notes")
    report("a run name that exists as a plain file", proc, err,
           proc.returncode == 1 and not (logs / ".notes.lock").exists() and (logs / "notes").read_text() == "mine")
    for length in (250, 300):
        proc, err = run("train.py", *base, "--name", "n" * length)
        report(f"a {length}-character run name", proc, err, proc.returncode == 2 and "limit on file names" in err[0])
    proc, err = run("train.py", *base, "--name", "cache")
    report("--name cache", proc, err, proc.returncode == 2 and "reserved for log_dir/cache" in err[0])

    for sig, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        name = f"sig{code}"
        proc, err = interrupt(["train.py", *base, "--name", name, "--fold", "0", "--epochs", "3", "--num_workers", 1],
                              sig, logs / name / "fold0" / "last.pt")
        logged = (logs / name / "train.log").read_text()
        report(f"{signal.Signals(sig).name} mid-epoch", proc, err, proc.returncode == code and len(err) == 1
               and err[0] in logged and not list((logs / name).rglob("*.tmp")) and "Traceback" not in proc.stderr)

    payload = a.work / "payload.pt"
    torch.save({"model": Payload()}, payload)
    proc, err = run("train.py", *base, "--name", "w", "--pretrained", "true", "--pretrained_path", payload)
    report("a pickle payload as --pretrained_path", proc, err, proc.returncode == 1 and "for safety" in err[0]
           and "weights_only" not in proc.stderr)

    hold = ("import sys, time\nfrom src.run.rundir import RunDir\n"
            "with RunDir(sys.argv[1], 'ref').fold_lock(int(sys.argv[2])):\n    print('held', flush=True)\n"
            "    time.sleep(600)\n")
    trainer = subprocess.Popen([sys.executable, "-c", hold, str(logs), "1"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    trainer.stdout.readline()
    shutil.rmtree(logs / "ref" / "fold1")
    proc, err = run("infer.py", "--data_dir", data, "--log_dir", logs, "--run", "ref", "--out", a.work / "busy.csv")
    busy = next((line for line in proc.stderr.splitlines() if "still being trained" in line), "")
    report(f"infer while fold 1 trains: '{busy[:90]}'", proc, err, proc.returncode == 0 and f"{trainer.pid}" in busy)
    trainer.kill()

    run("infer.py", "--data_dir", data, "--log_dir", logs, "--run", "ref")
    stale = logs / "ref" / f".submission.csv.{2**22 + 99}.tmp"
    stale.write_bytes(b"")
    proc, err = run("infer.py", "--data_dir", data, "--log_dir", logs, "--run", "ref")
    report("a kill -9 of infer left a temp file: the next infer removes it", proc, err,
           proc.returncode == 0 and not stale.exists())

    edited = copy(logs / "ref", logs / "edited")
    config = edited / "config.yaml"
    config.write_text(config.read_text().replace("lr: 0.001", "lr: fast"))
    proc, err = run("train.py", *base, "--name", "edited", "--resume")
    report("config.yaml edited to lr: fast, then --resume", proc, err,
           proc.returncode == 2 and str(config) in err[0] and "line" in err[0] and "--lr" not in err[0])

    spaced = copy(data, a.work / "spaced")
    info = pd.read_csv(spaced / "eval" / "info.csv", dtype=str)
    info.loc[0, "ImageID"] += " "
    info.to_csv(spaced / "eval" / "info.csv", index=False)
    proc, err = run("infer.py", "--data_dir", spaced, "--log_dir", logs, "--run", "ref", "--out", a.work / "sp.csv")
    report("an ImageID with a trailing space", proc, err, proc.returncode == 1 and " '" in err[0])

    elsewhere = a.work / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "data").symlink_to(data)
    proc = subprocess.run(["bash", str(ROOT / "infer.sh")], cwd=elsewhere, capture_output=True, text=True,
                          env={**os.environ, "DATA_DIR": "data", "LOG_DIR": str(logs), "RUN": "ref"}, timeout=600)
    report("DATA_DIR=data bash infer.sh from another folder", proc, error_lines(proc.stderr),
           proc.returncode == 0 and (logs / "ref" / "submission.csv").is_file())


if __name__ == "__main__":
    main()
