"""Probe the tool as an attacker's dataset or a careless user would, and print one line per case.

    python -m tools.probe_trust --work /tmp/probe --seed 31 [--strace]

Generates a small dataset with --seed, trains a tiny run, then crafts: a `../` path row, an absolute
ImageID, `--name ..` with `--overwrite`, `--overwrite` with a missing weights file, an empty info.csv, an
empty eval JPEG read by a loader worker, and two folds trained at once. With --strace, check_data and infer
of the traversal dataset run under `strace -f -e trace=openat`, and every opened path outside the data,
the run folder, the repository and the Python installation is listed (there should be none).
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--model", "test_efficientnet", "--pretrained", "false", "--img_height", "64", "--img_width", "48",
        "--batch_size", "8", "--epochs", "1", "--num_workers", "0", "--n_folds", "3", "--aug", "light",
        "--neck_dim", "32", "--msd_count", "2", "--optimizer", "adamw", "--lr", "1e-3", "--scheduler", "none"]


def run(*args, prefix=()):
    proc = subprocess.run([*prefix, sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    errors = [line for line in proc.stderr.splitlines() if line.startswith(("error:", "problem:"))]
    return proc, errors


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


if __name__ == "__main__":
    main()
