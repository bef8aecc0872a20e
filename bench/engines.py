"""onnxruntime against PyTorch on the same run, batch and images, in interleaved rounds; then infer.py as a whole
process both ways.

    python -m bench.engines --data_dir D --log_dir L --run cpu15            # the 4-fold cpu15 run, flip TTA
    python -m bench.engines --data_dir D --log_dir L --run R --images 256 --rounds 2 --no_whole

Rows (images/s over the first --images eval images, decoded and resized once, in --infer_batch_size batches):
  torch        TorchEngine: the run's fold models, forward_views with TTA (channels_last as the model chooses)
  onnxruntime  OnnxEngine: the run's exported graph (folds and TTA inside), from the run folder's cache
  ratio        onnxruntime / torch per round; the median is printed
Then, with the cache warm, `python infer.py --engine torch|onnxruntime` on every eval image, whole process wall
seconds per round, and the ratio torch / onnxruntime. The first onnxruntime infer (with the export) is timed
apart. Both engines use torch's thread count. Never run it beside another job: the figure would mean nothing.
"""
if __name__ == "__main__" and not __package__:  # by path, only this folder is on sys.path: rerun as a module
    import os
    import sys

    script = os.path.realpath(__file__)
    root, package = os.path.split(os.path.dirname(script))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH"))))
    os.execv(sys.executable, [sys.executable, "-P", "-m", f"{package}.{os.path.basename(script)[:-3]}", *sys.argv[1:]])

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_dir", type=Path, required=True)
    p.add_argument("--log_dir", type=Path, required=True)
    p.add_argument("--run", required=True)
    p.add_argument("--checkpoint", default="auto")
    p.add_argument("--tta", default="flip", choices=["none", "flip"])
    p.add_argument("--images", type=int, default=1400, help="eval images of the engine rows")
    p.add_argument("--infer_batch_size", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--no_whole", action="store_true", help="skip the whole-process infer.py rows")
    return p.parse_args(argv)


def rate(engine, batches) -> float:
    t0 = time.perf_counter()
    n = sum(len(engine(x)[0]) for x in batches)
    return n / (time.perf_counter() - t0)


def infer_seconds(a, engine: str, out: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "infer.py", "--data_dir", str(a.data_dir), "--log_dir", str(a.log_dir), "--run",
                    a.run, "--checkpoint", a.checkpoint, "--tta", a.tta, "--engine", engine, "--out", str(out)],
                   cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - t0


def print_table(first: str, unit: str, rows: dict[str, list[float]], ratio: tuple[str, list[float]], rounds: int):
    """A markdown table: one column per round and the median, the value rows then the ratio row."""
    print(f"| {first} | " + " | ".join(f"round {r + 1}{unit}" for r in range(rounds)) + f" | median{unit} |")
    print("|---|" + "---|" * (rounds + 1))
    for name, values in rows.items():
        print(f"| {name} | " + " | ".join(f"{v:.1f}" for v in values) + f" | {statistics.median(values):.1f} |")
    name, values = ratio
    print(f"| {name} | " + " | ".join(f"{v:.2f}" for v in values) + f" | {statistics.median(values):.2f} |")


def main(argv=None):
    a = parse(argv)
    import torch  # after the arguments: --help and a bad one cost none of these imports

    from src.config.schema import MAX_IMAGE_PIXELS
    from src.data.dataset import FaceDataset
    from src.data.tables import load_eval
    from src.engine import builders
    from src.predict.engines import OnnxEngine, TorchEngine, cached_session, load_models
    from src.predict.plans import plan_run

    plan = plan_run(a.log_dir, a.run, a.checkpoint)
    cfg, kind = plan.cfg, plan.checkpoint
    paths = load_eval(a.data_dir)["path"][:a.images]
    ds = FaceDataset(builders.file_images(cfg, paths, a.log_dir, MAX_IMAGE_PIXELS), None, builders.eval_transform(cfg))
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    batches = list(x.split(a.infer_batch_size))
    cpu = torch.device("cpu")
    session = cached_session(plan.run, cfg, plan.checkpoints, plan.folds, kind, a.tta)
    engines = {"torch": TorchEngine(a.run, load_models(cfg, plan.checkpoints, cpu), plan.folds, kind, cpu,
                                    a.tta, "none"),
               "onnxruntime": OnnxEngine(a.run, session, kind)}
    for engine in engines.values():  # warm-up: first-call allocations and kernel choices
        engine(batches[0])
    rates = {name: [] for name in engines}
    for r in range(a.rounds):
        order = list(engines) if r % 2 == 0 else list(engines)[::-1]
        for name in order:
            rates[name].append(rate(engines[name], batches))
    ratios = [o / t for o, t in zip(rates["onnxruntime"], rates["torch"])]
    print(f"# bench.engines {datetime.date.today()}: run {a.run} ({cfg.model}, {cfg.heads} heads, "
          f"{len(plan.folds)} folds, {cfg.img_height}x{cfg.img_width}, {kind}, tta={a.tta}); "
          f"{len(x)} eval images of {a.data_dir}, batch {a.infer_batch_size}; {torch.get_num_threads()} threads; "
          f"{os.cpu_count()} cores; torch {torch.__version__}")
    print_table("row", "", {f"{name} img/s": values for name, values in rates.items()},
                ("onnxruntime / torch", ratios), a.rounds)
    if a.no_whole:
        return
    with tempfile.TemporaryDirectory() as tmp:
        for stale in plan.run.onnx_exports(kind, a.tta):
            stale.unlink()
        first = infer_seconds(a, "onnxruntime", Path(tmp) / "first.csv")
        seconds = {"torch": [], "onnxruntime": []}
        for r in range(a.rounds):
            for name in (["torch", "onnxruntime"] if r % 2 == 0 else ["onnxruntime", "torch"]):
                seconds[name].append(infer_seconds(a, name, Path(tmp) / f"{name}.csv"))
    whole = [t / o for t, o in zip(seconds["torch"], seconds["onnxruntime"])]
    n = len(load_eval(a.data_dir))
    print(f"\n# infer.py whole process on {n} eval images (decode, resize, predict, write); first onnxruntime infer "
          f"with the export: {first:.1f} s")
    print_table("engine", " s", seconds, ("torch / onnxruntime", whole), a.rounds)
    print(f"ratio_whole_process={statistics.median(whole):.3f}")


if __name__ == "__main__":
    main()
