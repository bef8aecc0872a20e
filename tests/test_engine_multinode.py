"""Training past one machine, as torchrun itself is tested: several launchers of src/engine/launch.py (through
experiments/multinode.sh's environment) on this machine, c10d rendezvous, gloo. One run folder written by global rank 0
alone, disjoint shards that cover the fold, validation of every photo once, the tracker's epochs once; a world of 2
with batch b against one process with 2b under --sync_bn; a worker SIGKILLed mid-epoch, with and without restarts; a
node that never comes."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bench.multinode import free_port, kill_rank_when, launcher, max_differences, two_nodes
from tests.helpers import ROOT

TINY = ["--model", "test_efficientnet", "--pretrained", "false", "--img_height", "64", "--img_width", "48",
        "--num_workers", "0", "--n_folds", "2", "--fold", "0", "--neck_dim", "32", "--msd_count", "2", "--aug", "light",
        "--optimizer", "adamw", "--lr", "1e-3", "--scheduler", "none", "--infer_batch_size", "16", "--deterministic",
        "true", "--oof_from", "last"]

# Imported by every process (PYTHONPATH): in a worker (RANK set) it records what that rank trained and validated and
# every file it wrote, into <MASKCLS_SEEN>/rank<r>.<pid>.json when it exits.
SITECUSTOMIZE = '''
import atexit, json, os
if "RANK" in os.environ and os.environ.get("MASKCLS_SEEN"):
    from src.engine import fold as fold_mod
    from src.run import atomic
    seen = dict(rank=int(os.environ["RANK"]), train={}, val=[], writes=[])
    real_build, real_replace = fold_mod.build_fold, atomic.replace_together

    def build_fold(ins, k, seed):
        fold = real_build(ins, k, seed)
        seen["val"] = [int(i) for i in fold.data.val_loader.dataset.indices]
        for epoch in range(ins.cfg.epochs):
            fold.data.sampler.set_epoch(epoch)
            seen["train"][epoch] = [int(i) for i in fold.data.sampler]
        return fold

    def replace_together(writes):
        seen["writes"] += [str(p) for p in writes]
        return real_replace(writes)

    fold_mod.build_fold, atomic.replace_together = build_fold, replace_together
    atexit.register(lambda: open(os.path.join(os.environ["MASKCLS_SEEN"], f"rank{seen['rank']}.{os.getpid()}.json"),
                                 "w").write(json.dumps(seen)))
'''


def outside_address() -> str | None:
    """This machine's address on its first network card other than loopback, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.254", 9))  # nothing is sent: the kernel picks the card that would route there
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def args_of(data, logs, name, *extra) -> list:
    return ["--data_dir", data, "--log_dir", logs, "--name", name, *TINY, *extra]


def recording(seen: Path) -> dict:
    """The environment that makes every worker record what it saw into `seen` (SITECUSTOMIZE)."""
    hooks = seen.parent / "hooks"
    hooks.mkdir(exist_ok=True)
    (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE)
    seen.mkdir(exist_ok=True)
    return {"MASKCLS_SEEN": str(seen), "PYTHONPATH": os.pathsep.join(filter(None, [str(hooks), str(ROOT),
                                                                                  os.environ.get("PYTHONPATH")]))}


def finished(procs, timeout=600) -> list[str]:
    outs = [p.communicate(timeout=timeout)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * len(procs), "\n---\n".join(o[-3000:] for o in outs)
    return outs


def assert_one_world(run: Path, seen: Path, world: int, epochs: int):
    """Global rank 0 wrote every file of the run, once per epoch where an epoch writes it; the ranks' shards of each
    epoch are disjoint and cover the fold's training photos; validation saw every photo of the fold once."""
    ranks = {}
    for f in seen.glob("rank*.json"):
        r = json.loads(f.read_text())
        ranks[r["rank"]] = r
    assert sorted(ranks) == list(range(world))
    assert all(not ranks[r]["writes"] for r in range(1, world)), {r: ranks[r]["writes"][:3] for r in ranks}
    lasts = [w for w in ranks[0]["writes"] if w.endswith("last.pt")]
    assert len(lasts) == epochs and len(set(ranks[0]["writes"]) - {str(run / "fold0" / "last.pt")}) >= 5
    folds = __import__("pandas").read_csv(run / "folds.csv", dtype={"person_id": str})
    for epoch in map(str, range(epochs)):
        shards = [set(ranks[r]["train"][epoch]) for r in range(world)]
        assert sum(map(len, shards)) == len(set().union(*shards)), epoch  # disjoint (the fold divides evenly)
    val = sorted(i for r in range(world) for i in ranks[r]["val"])
    oof = __import__("pandas").read_csv(run / "fold0" / "oof.csv")
    assert val == list(range(len(oof))) and oof["path"].is_unique  # every validation photo once
    assert (folds["fold"] == 0).sum() * 7 == len(oof)


@pytest.mark.slow
def test_two_launchers_on_loopback_train_one_fold_as_one_run(few_people, tmp_path):
    from src.run.rundir import list_runs
    from tests.test_run_tracking import steps

    logs, seen = tmp_path / "logs", tmp_path / "seen"
    outs = finished(two_nodes(args_of(few_people, logs, "mn", "--epochs", "2", "--batch_size", "4", "--tracker",
                                      "mlflow"), env=recording(seen)))
    run = logs / "mn"
    assert_one_world(run, seen, world=2, epochs=2)
    assert "CV macro-F1" in outs[0] + outs[1] and [r.name for r in list_runs(logs)] == ["mn"]
    (target,) = json.loads((run / "tracking.json").read_text())["targets"].values()
    assert [s for s, _ in steps(target["where"], target["folds"]["0"], "val_f1")] == [0, 1]
    log = (run / "train.log").read_text()
    assert log.count("fold 0 epoch 1 ") == 1 and "world 2" in log


@pytest.mark.slow
def test_two_launchers_at_a_real_address_with_two_processes_each(few_people, tmp_path):
    """The address that loopback hides: torch guesses the rendezvous host from the host name and misses a second card's
    address; a world of 4, two launchers of two processes."""
    address = outside_address()
    if address is None:
        pytest.skip("this machine has no network card but loopback")
    logs, seen = tmp_path / "logs", tmp_path / "seen"
    finished(two_nodes(args_of(few_people, logs, "far", "--epochs", "1", "--batch_size", "2"), gpus=2, addr=address,
                       env=recording(seen)))
    assert_one_world(logs / "far", seen, world=4, epochs=1)


def weights(run: Path) -> dict:
    return torch.load(run / "fold0" / "last.pt", weights_only=True)["model"]


@pytest.mark.slow
def test_a_world_of_two_with_batch_b_and_sync_bn_learns_what_one_process_learns_with_2b(few_people, tmp_path):
    """No augmentation, no dropout, a per-photo mean loss, the same seed: three SGD steps of one process with batch 8
    and of two ranks with batch 4 each under --sync_bn give the same weights within 1e-3 (float sums in another
    order; without it the weights part by up to 11 and the running statistics by 59, bench/multinode.py)."""
    logs = tmp_path / "logs"
    same = ["--epochs", "1", "--aug", "none", "--msd_count", "0", "--optimizer", "sgd", "--lr", "0.01", "--loss", "ce",
            "--class_weights", "false", "--gridshuffle_p", "0"]
    one = subprocess.run([sys.executable, "train.py", "--data_dir", few_people, "--log_dir", logs, "--name", "one",
                          *TINY, *same, "--batch_size", "8"], cwd=ROOT, capture_output=True, text=True)
    assert one.returncode == 0, one.stderr[-2000:]
    finished([launcher(args_of(few_people, logs, "two", *same, "--batch_size", "4", "--sync_bn", "true"), gpus=2)])
    assert weights(logs / "one").keys() == weights(logs / "two").keys()
    learned, running = max_differences(logs / "one", logs / "two")
    assert learned < 1e-3 and running < 1e-3, (learned, running)


@pytest.mark.slow
def test_a_worker_killed_mid_epoch_is_restarted_or_named_and_the_run_ends_as_if_never_killed(few_people, tmp_path):
    """Under MAX_RESTARTS=1 torchrun restarts the group, which resumes from last.pt by itself: the same cv.json and
    weights as a run never killed. Under MAX_RESTARTS=0 the launcher says in one line which rank died and how to
    resume, and a launch with --resume finishes the run alike."""
    logs = tmp_path / "logs"
    args = ["--epochs", "4", "--batch_size", "4"]
    finished([launcher(args_of(few_people, logs, "straight", *args), gpus=2)])
    for name, restarts in (("restarted", "1"), ("named", "0")):
        proc = launcher(args_of(few_people, logs, name, *args), gpus=2,
                        env={"MAX_RESTARTS": restarts, "MASKCLS_RUN": str(logs / name)})
        kill_rank_when(logs / name, 1, 1, [proc])
        out = proc.communicate(timeout=600)[0]
        if restarts == "1":
            assert proc.returncode == 0, out[-3000:]
        else:
            lines = [line for line in out.splitlines() if line.startswith(("error", "interrupted"))]
            assert proc.returncode == 1 and len(lines) == 1, out[-3000:]
            assert "rank 1" in lines[0] and "SIGKILL" in lines[0] and "--resume" in lines[0]
            finished([launcher(args_of(few_people, logs, name, *args, "--resume"), gpus=2)])
        assert json.loads((logs / name / "cv.json").read_text()) == json.loads((logs / "straight" / "cv.json")
                                                                               .read_text()), name
        a, b = weights(logs / name), weights(logs / "straight")
        assert all(torch.equal(a[k], b[k]) for k in a), name


@pytest.mark.slow
def test_a_node_that_never_comes_is_one_line_and_leaves_nothing_in_the_way(few_people, tmp_path):
    logs = tmp_path / "logs"
    port = free_port()
    proc = launcher(args_of(few_people, logs, "alone", "--epochs", "1", "--batch_size", "4"), nodes=2, port=port,
                    env={"JOIN_TIMEOUT": "5"})
    out = proc.communicate(timeout=300)[0]
    lines = [line for line in out.splitlines() if line.startswith("error")]
    assert proc.returncode == 2 and len(lines) == 1, out[-3000:]
    assert f"localhost:{port}" in lines[0] and "NNODES=2, 1 node missing" in lines[0]
    assert not (logs / "alone").exists()
    finished([launcher(args_of(few_people, logs, "alone", "--epochs", "1", "--batch_size", "4"))])
    assert (logs / "alone" / "cv.json").is_file()


@pytest.mark.slow
def test_a_second_launch_of_a_run_in_training_is_refused_by_name_before_it_meets_anyone(few_people, tmp_path):
    """It would join the first launch's rendezvous and make torchrun restart that group to take it in."""
    from src.run.rundir import RunDir

    logs = tmp_path / "logs"
    first = launcher(args_of(few_people, logs, "busy", "--epochs", "200", "--batch_size", "4"))
    run = RunDir(logs, "busy")
    deadline = time.monotonic() + 120
    while not run.training_folds(2) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    second = launcher(args_of(few_people, logs, "busy", "--epochs", "200", "--batch_size", "4", "--resume"))
    out = second.communicate(timeout=120)[0]
    lines = [line for line in out.splitlines() if line.startswith("error")]
    assert second.returncode == 1 and len(lines) == 1 and "run busy: fold 0 is being trained" in lines[0], out
    assert first.poll() is None  # untouched
    first.send_signal(signal.SIGTERM)
    out = first.communicate(timeout=60)[0]
    assert first.returncode == 143 and "interrupted (SIGTERM); the run keeps each fold's last.pt" in out, out[-2000:]
