"""Probe the tool as an attacker's dataset or a careless user would, and print one line per case.

    python -m tools.probe_trust --work /tmp/probe --seed 31 [--strace]

Generates a small dataset with --seed, trains a tiny run, then crafts: a `../` path row, an absolute
ImageID, `--name ..` with `--overwrite`, `--overwrite` with a missing weights file, an empty info.csv, an
empty eval JPEG read by a loader worker, and two folds trained at once. Then the faults: --out onto the data or
a folder, a named pipe as a photo, damaged cache files, read-only disks (bind mounts: run as root), names taken
by a file or too long, Ctrl-C and SIGTERM, a pickle as weights, infer beside a fold still training, a killed
infer's temp file, a hand-edited config.yaml, a hidden space, and a relative DATA_DIR. Then hostile files: a photo
linked out of the data, a symlink loop among photos, YAML aliases and deep nesting in recipes, sweep files and run
files, a recipe that extends a secret file, a decision.json out of range or a folder, a changed cached .onnx, a
config.yaml naming another network, read-only --out folders, a missing face detector, GPUS=two, and the quick
recipe on 30 people; and readers: --overwrite while infer reads the run, Ctrl-C and SIGTERM on infer. With
--strace, check_data and infer of the traversal dataset, and check_data of the linked photo, run under
`strace -f -e trace=openat`, and every opened path outside the data, the run folder, the repository and the Python
installation is listed (there should be none).
"""
if __name__ == "__main__" and not __package__:  # by path, only this folder is on sys.path: rerun as a module
    import os
    import sys

    script = os.path.realpath(__file__)
    root, package = os.path.split(os.path.dirname(script))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH"))))
    os.execv(sys.executable, [sys.executable, "-P", "-m", f"{package}.{os.path.basename(script)[:-3]}", *sys.argv[1:]])

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

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
    hostile_files(a, data, logs, base)
    readers_and_signals(a, data, logs, base)

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

    import torch  # only this case needs it: --help starts without it

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



def reader_active(lock_file: Path) -> bool:
    """Whether some process holds a (shared) reader lock on the run: an exclusive probe is refused."""
    import fcntl

    if not lock_file.is_file():
        return False
    with open(lock_file, "a+") as f:
        try:
            fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.lockf(f, fcntl.LOCK_UN)
    return False


def laughs(leaf: str) -> str:
    """YAML anchors that expand to 9^9 copies of `leaf` through the alias *l8."""
    return "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}' if i else leaf] * 9)}]\n" for i in range(9))


def hostile_files(a, data: Path, logs: Path, base: list):
    """Files a user or an attacker hands in: links out of the data, YAML bombs, deep nesting, out-of-range records."""
    linked = copy(data, a.work / "linked")
    folder = next(p for p in sorted((linked / "train" / "images").iterdir()) if p.is_dir())  # not .DS_Store
    photo = next(folder.glob("mask1.*"))
    outside = a.work / "outside" / "face.jpg"
    outside.write_bytes(photo.read_bytes())  # a real JPEG: it would be trained on if it were read
    photo.unlink()
    photo.symlink_to(outside)
    proc, err = run("train.py", "--data_dir", linked, "--check_data")
    report("a photo linked to a JPEG outside the data (check_data)", proc, err,
           proc.returncode == 1 and "resolves outside" in proc.stderr)
    if a.strace:
        trace = a.work / "strace_linked.txt"
        run("train.py", "--data_dir", linked, "--check_data", prefix=("strace", "-f", "-e", "trace=openat", "-o",
                                                                       str(trace)))
        hits = sorted({o for o in re.findall(r'openat\([^,]+, "([^"]+)"', trace.read_text())
                       if o.startswith(str(a.work / "outside"))})
        print(f"strace check_data of the linked photo: opened under {a.work / 'outside'}: {hits or 'none'}")

    photos = a.work / "loop_photos"
    photos.mkdir()
    shutil.copy(next(folder.glob("mask2.*")), photos / "a.jpg")
    os.symlink("loop.jpg", photos / "loop.jpg")
    proc, err = run("predict.py", "--log_dir", logs, "--run", "ref", photos, "--out", a.work / "p.csv")
    rows = pd.read_csv(a.work / "p.csv") if (a.work / "p.csv").is_file() else pd.DataFrame({"error": []})
    report("a symlink loop among the photos of predict --out", proc, err,
           proc.returncode == 0 and rows["error"].notna().sum() == 1 and "Traceback" not in proc.stderr)

    bombs = {"a sweep file's sampler.seed": ("sweep.py", "--sweep", "{f}", "--study", "b", "--data_dir", data,
                                             "--log_dir", a.work / "bomb_logs"),
             "--config crop_box": ("train.py", "--config", "{f}", "--data_dir", data),
             "--config pretrained_path": ("train.py", "--config", "{f}", "--data_dir", data)}
    texts = {"a sweep file's sampler.seed": "base: " + str(ROOT / "experiments/quick.yaml")
             + "\nspace: {lr: {low: 0.001, high: 0.01}}\n" + laughs("1") + "sampler: {name: random, seed: *l8}\n",
             "--config crop_box": laughs("0.5") + "crop_box: *l8\n",
             "--config pretrained_path": laughs("lol") + "pretrained_path: *l8\n"}
    for case, args in bombs.items():
        bomb = a.work / f"bomb{len(case)}.yaml"
        bomb.write_text(texts[case])
        t0 = time.time()
        proc, err = run(*[str(bomb) if x == "{f}" else x for x in args])
        report(f"YAML aliases under {case} ({time.time() - t0:.1f} s)", proc, err,
               proc.returncode == 2 and len(err) == 1 and "YAML alias" in err[0] and len(proc.stderr) < 1000)
    deep = a.work / "deep.yaml"
    deep.write_text("crop_box: " + "[" * 200000 + "\n")
    proc, err = run("train.py", "--config", deep, "--data_dir", data)
    report("a --config nested 200,000 deep", proc, err, proc.returncode == 2 and len(err) == 1
           and "deep" in err[0] and "Traceback" not in proc.stderr)
    secret = a.work / "outside" / "shadow"
    secret.write_text("root:$6$saltsalt$hashhash:19000:0:99999:7:::\n")
    (a.work / "extends.yaml").write_text(f"extends: {secret}\n")
    proc, err = run("train.py", "--config", a.work / "extends.yaml", "--data_dir", data)
    report("a recipe that extends a secret file", proc, err,
           proc.returncode == 2 and len(err) == 1 and "saltsalt" not in proc.stderr)

    decided = copy(logs / "ref", logs / "decided")
    for case, write in (("decision.json offsets of 1e308", lambda p: p.write_text(json.dumps(
                            {"offsets": [0.0] * 17 + [1e308]}))),
                        ("decision.json nested 200,000 deep", lambda p: p.write_text("[" * 200000)),
                        ("decision.json as a folder", lambda p: p.mkdir())):
        target = decided / "decision.json"
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
        write(target)
        proc, err = run("infer.py", "--data_dir", data, "--log_dir", logs, "--run", "decided", "--out",
                        a.work / "d.csv")
        report(case, proc, err, proc.returncode == 1 and len(err) == 1 and "decision.json: expected 18" in err[0]
               and "Traceback" not in proc.stderr)

    cached = copy(logs / "ref", logs / "cached")
    run("infer.py", "--data_dir", data, "--log_dir", logs, "--run", "cached", "--out", a.work / "c1.csv")
    run("infer.py", "--data_dir", data, "--log_dir", logs, "--run", "cached", "--tta", "none", "--out",
        a.work / "c2.csv")
    (flip,), (plain,) = (sorted((cached / "onnx").glob(f"*.{t}.*.onnx")) for t in ("flip", "none"))
    flip.write_bytes(plain.read_bytes())  # a valid graph, but another one
    proc, err = run("infer.py", "--data_dir", data, "--log_dir", logs, "--run", "cached", "--out", a.work / "c3.csv")
    report("a valid but changed cached .onnx", proc, err,
           proc.returncode == 0 and "does not match the digest" in proc.stderr and "exported" in proc.stderr)

    other = copy(logs / "ref", logs / "other_net")
    (other / "config.yaml").write_text((other / "config.yaml").read_text().replace("model: test_efficientnet",
                                                                                 "model: resnet18"))
    for script, extra in (("infer.py", ["--data_dir", data, "--out", a.work / "o.csv"]),
                          ("predict.py", [photos / "a.jpg"]), ("export.py", ["--out", a.work / "o_ship"])):
        proc, err = run(script, "--log_dir", logs, "--run", "other_net", *extra)
        report(f"config.yaml edited to another network ({script})", proc, err,
               proc.returncode == 1 and len(err) == 1 and "does not match" in err[0] and "Traceback" not in proc.stderr)

    shut = a.work / "ro_out"
    shut.mkdir()
    with read_only(shut):
        for script, extra in (("predict.py", [photos / "a.jpg", "--out", shut / "p.csv"]),
                              ("export.py", ["--out", shut / "ship"])):
            t0 = time.time()
            proc, err = run(script, "--log_dir", logs, "--run", "ref", *extra)
            report(f"a read-only --out ({script}, {time.time() - t0:.1f} s)", proc, err,
                   proc.returncode == 1 and len(err) == 1 and "Read-only" in err[0] and "parity" not in proc.stderr)
    proc, err = run("export.py", "--log_dir", logs, "--run", "ref", "--out", a.work / "own_data_ship")
    report("export.py without --data_dir takes the run's own data", proc, err, proc.returncode == 0
           and str(data) in json.loads((a.work / "own_data_ship" / "model.json").read_text())["parity"]["data_dir"])

    blocker = a.work / "no_facenet"
    blocker.mkdir()
    (blocker / "facenet_pytorch.py").write_text("raise ImportError('not installed')\n")
    proc, err = run("train.py", *base, "--name", "face", "--crop", "face", env={"PYTHONPATH": str(blocker)})
    report("--crop face without facenet-pytorch", proc, err,
           proc.returncode == 2 and "facenet-pytorch" in err[0] and not (logs / "face").exists())
    proc = subprocess.run(["bash", str(ROOT / "experiments" / "quick.sh")], capture_output=True, text=True,
                          env={**os.environ, "GPUS": "two", "DATA_DIR": str(data)})
    report("GPUS=two bash experiments/quick.sh", proc, error_lines(proc.stderr),
           proc.returncode == 2 and len(proc.stderr.splitlines()) == 1)

    locked = a.work / "ro_logs2"
    locked.mkdir()
    with read_only(locked):
        proc, err = run("train.py", *base[:2], "--log_dir", locked, *TINY, "--name", "r")
    first = proc.stderr.splitlines()[0] if proc.stderr else ""
    report("a read-only log_dir: the first line is the error", proc, err,
           proc.returncode == 1 and first.startswith("error:") and "Read-only" in first)
    proc, err = run("train.py", *base, "--name", "noise", "--fold", "0")
    absent = [line for line in proc.stderr.splitlines() if "not in this dataset" in line]
    summary = [line for line in proc.stderr.splitlines() if " apply to this data " in line]  # not the settings echo
    report(f"corrections absent from the data: {summary[0] if summary else 'no summary'}", proc, err,
           proc.returncode == 0 and not absent and len(summary) == 1)

    small = a.work / "d30"
    run("-m", "tools.make_synthetic_data", "--out", small, "--train_people", 30, "--eval_people", 4, "--seed",
        a.seed + 1)
    env = {**os.environ, "DATA_DIR": str(small), "LOG_DIR": str(a.work / "q_logs"), "NAME": "q"}
    proc = subprocess.run(["bash", str(ROOT / "experiments" / "quick.sh"), "--epochs", "1"], capture_output=True,
                          text=True, env=env, timeout=900)
    inferred = subprocess.run(["bash", str(ROOT / "infer.sh")], capture_output=True, text=True,
                              env={**env, "RUN": "q"}, timeout=900)
    report("DATA_DIR=D30 bash experiments/quick.sh --epochs 1, then infer.sh", proc, error_lines(proc.stderr),
           proc.returncode == 0 and inferred.returncode == 0 and (a.work / "q_logs" / "q" / "submission.csv").is_file())


def readers_and_signals(a, data: Path, logs: Path, base: list):
    """--overwrite while infer reads the run; Ctrl-C and SIGTERM on infer."""
    big = copy(data, a.work / "big_eval")
    info = pd.read_csv(big / "eval" / "info.csv", dtype=str)
    images = big / "eval" / "images"
    rows = [f"dup{i:05d}.jpg" for i in range(6000)]  # links within the data: a long infer
    for i, name in enumerate(rows):
        (images / name).symlink_to(info["ImageID"][i % len(info)])
    pd.DataFrame({"ImageID": rows, "ans": 0}).to_csv(big / "eval" / "info.csv", index=False)
    readers = logs / ".ow.readers.lock"
    run("train.py", *base, "--name", "ow", "--fold", "0")
    reader = subprocess.Popen([sys.executable, "infer.py", "--data_dir", big, "--log_dir", logs, "--run", "ow"],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while not reader_active(readers) and reader.poll() is None:
        time.sleep(0.1)
    before = (logs / "ow" / "fold0" / "last.pt").read_bytes()
    proc, err = run("train.py", *base, "--name", "ow", "--fold", "0", "--overwrite")
    reader_err = reader.communicate(timeout=600)[1]
    report("train --overwrite while infer reads the run", proc, err,
           proc.returncode == 1 and "cannot be replaced" in err[0] and reader.returncode == 0
           and (logs / "ow" / "fold0" / "last.pt").read_bytes() == before and (logs / "ow" / "submission.csv").is_file()
           and "Traceback" not in reader_err)
    for sig, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        reader = subprocess.Popen([sys.executable, "infer.py", "--data_dir", big, "--log_dir", logs, "--run", "ow",
                                   "--out", a.work / f"sig{code}.csv"], cwd=ROOT, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
        while not reader_active(readers) and reader.poll() is None:
            time.sleep(0.1)
        time.sleep(1)
        reader.send_signal(sig)
        reader.stderr = reader.communicate(timeout=300)[1]
        err = error_lines(reader.stderr)
        report(f"{signal.Signals(sig).name} on infer", reader, err, reader.returncode == code and len(err) == 1
               and "Traceback" not in reader.stderr and not (a.work / f"sig{code}.csv").exists())


if __name__ == "__main__":
    main()
