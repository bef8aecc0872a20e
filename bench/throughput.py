"""Training-pipeline throughput against the model-only limit, every row measured in one run.

    python -m bench.throughput                       # the quick recipe on generated data (a few minutes on CPU)
    python -m bench.throughput --quick               # under 2 minutes
    python -m bench.throughput --data_dir D --model tf_efficientnet_b3_ns --img_height 384 --img_width 288 \
        --batch_size 64 --amp bf16 --workers 0 8 16

Rows (images/s, median of timed windows after warm-up):
  a    model-only train step on uint8 tensors already in memory: the limit
  a2   the same step in the other memory format (NCHW vs channels_last)
  b    full pipeline (Dataset, DataLoader, augmentation, step), cache off, then on, per worker count
  c    loader alone (cache on), no model
  d    inference with flip TTA (one doubled batch)
  ref  the original entry's loop: its augmentation on full-size decodes, no cache, 4 workers, NCHW step
  e    ratio b(cache on) / a: rows a and b alternate in rounds; e is the median of the per-round ratios
Then each b row against the limit per worker count, flagged where it falls under --flag_below (0.9): there the data
cannot keep up with the model. The last line is exactly ratio_pipeline_to_limit=<float> (cache on, the first worker
count).
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
import sys
import tempfile
import time
from pathlib import Path

# torch and the pipeline are imported where they are used: --help and a bad argument start without them


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_dir", help="dataset in the competition layout; default: generated once into /tmp")
    p.add_argument("--model", default="tf_efficientnet_lite0")
    p.add_argument("--img_height", type=int, default=128)
    p.add_argument("--img_width", type=int, default=96)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--workers", type=int, nargs="+", default=[-1],
                   help="loader workers; -1 = the training default (src.data.loaders.default_workers)")
    p.add_argument("--aug", default="light", help="augmentation preset of the measured pipeline")
    p.add_argument("--amp", default="bf16", help="bf16, fp16 or none (CUDA only)")
    p.add_argument("--channels_last", default="true", choices=["true", "false"])
    p.add_argument("--quick", action="store_true", help="fewer, shorter windows: under 2 minutes on CPU")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds of rows a and b (cache on)")
    p.add_argument("--windows", type=int, default=2, help="timed windows per row (per round for a and b)")
    p.add_argument("--steps", type=int, default=3, help="train steps per timed window")
    p.add_argument("--no_reference", action="store_true", help="skip the reference row")
    p.add_argument("--compile", default="false", choices=["true", "false"], help="torch.compile the model's step")
    p.add_argument("--flag_below", type=float, default=0.9,
                   help="flag a pipeline under this share of the model-only step: the data cannot keep up")
    a = p.parse_args(argv)
    if a.quick:
        a.rounds, a.windows, a.steps = 3, 1, 3
    return a


def window_rates(step, warmup: int, windows: int, steps: int) -> list[float]:
    import torch

    for _ in range(warmup):
        step()
    rates = []
    for _ in range(windows):
        t0 = time.perf_counter()
        n = sum(step() for _ in range(steps))
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        rates.append(n / (time.perf_counter() - t0))
    return rates


def median_rate(step, warmup: int, windows: int, steps: int) -> float:
    return statistics.median(window_rates(step, warmup, windows, steps))


class Trainer:
    """One model + loss + optimizer around the trainer's own TrainStep (src/engine/step.py), which calls the model
    as the trainer does (compiled when cfg.compile)."""

    def __init__(self, cfg, device):
        from src.engine import builders
        from src.engine.optim import build_optimizer

        self.cfg, self.device = cfg, device
        self.model = builders.model(cfg).to(device).train()
        self.train_step = builders.train_step(cfg, builders.forward_model(cfg, self.model),
                                              builders.criterion(cfg).to(device), build_optimizer(cfg, self.model),
                                              device)

    def step(self, x, y) -> int:
        self.train_step(x, y)
        return len(x)


def training_batches(images, labels, cfg, aug, workers, device):
    """(the loader, an endless iterator of its batches) of the trainer's own Dataset, sampler and loader."""
    from src.data.dataset import FaceDataset
    from src.data.loaders import forever, make_loader
    from src.data.samplers import train_sampler
    from src.engine import builders

    ds = FaceDataset(images, labels, builders.train_transform(cfg, aug), seed=0)
    sampler = train_sampler("none", labels, 1, 0, 0)
    loader = make_loader(ds, device, cfg.batch_size, workers, cfg.prefetch_factor, sampler, drop_last=True)
    return loader, forever(loader, sampler)


def pipeline_rates(trainer, images, labels, cfg, aug, workers, a, warmup=2) -> list[float]:
    loader, batches = training_batches(images, labels, cfg, aug, workers, trainer.device)
    rates = window_rates(lambda: trainer.step(*next(batches)[:2]), warmup, a.windows, a.steps)
    batches.close()
    del loader  # stops the persistent workers before the next row
    return rates


def loader_rate(images, labels, cfg, aug, workers, a) -> float:
    import torch

    loader, batches = training_batches(images, labels, cfg, aug, workers, torch.device("cpu"))
    rate = median_rate(lambda: len(next(batches)[0]), 2, a.windows, a.steps * 4)
    batches.close()
    del loader
    return rate


class Rows(list):
    """The table's (key, what, img/s) rows, each also printed to stderr once measured: a run stopped by a time limit
    still shows what it measured."""

    def append(self, row):
        super().append(row)
        print(f"measured: {row[0]} | {row[1]} | {row[2]:.1f} img/s", file=sys.stderr, flush=True)


def keep_up_table(pipeline: dict[tuple[int, bool], float], limit: float, flag_below: float) -> list[str]:
    """Rows of pipeline / model-only step per worker count, cache off and on (`pipeline`: (workers, cache on) ->
    img/s); a ratio under flag_below is flagged: there the data cannot keep up."""
    def cell(key):
        if key not in pipeline:
            return "-"
        ratio = pipeline[key] / limit
        return f"{ratio:.2f}" + (f" **under {flag_below:g}: data-bound**" if ratio < flag_below else "")

    lines = ["| workers | cache off / limit | cache on / limit |", "|---|---|---|"]
    for w in dict.fromkeys(w for w, _ in pipeline):
        lines.append(f"| {w} | {cell((w, False))} | {cell((w, True))} |")
    bound = sum(v / limit < flag_below for v in pipeline.values())
    lines.append(f"data_bound_rows={bound} of {len(pipeline)} (pipeline under {flag_below:g} of the model-only step)")
    return lines


def main(argv=None):
    a = parse(argv)
    import torch

    from src.config.schema import TrainConfig
    from src.data.cache import build_cache
    from src.data.images import FileImages
    from src.data.loaders import default_workers
    from src.data.tables import load_train
    from src.engine import builders
    from src.engine.forward import forward_views

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = TrainConfig(model=a.model, pretrained=False, img_height=a.img_height, img_width=a.img_width,
                 batch_size=a.batch_size, optimizer="adamw", lr=1e-4, loss="ce", head="linear",
                 amp=a.amp if device.type == "cuda" else "none", channels_last=a.channels_last == "true",
                 infer_batch_size=a.batch_size, compile=a.compile == "true")
    data_dir = Path(a.data_dir) if a.data_dir else Path(tempfile.gettempdir()) / "maskcls_bench_data"
    if not (data_dir / "train" / "train.csv").is_file():
        from tools.make_synthetic_data import main as make_data

        make_data(["--out", str(data_dir), "--train_people", "40", "--eval_people", "1", "--seed", "0"])
    table = load_train(data_dir, "none", 60, None, 42)
    labels = table["label"].to_numpy()
    size = builders.work_size(cfg)
    t0 = time.perf_counter()
    cached = build_cache("ram", table["path"], size, "none", Path(), num_workers=default_workers(-1))
    cache_s = time.perf_counter() - t0
    trainer = Trainer(cfg, device)
    rows = Rows()

    x = torch.randint(0, 256, (cfg.batch_size, 3, cfg.img_height, cfg.img_width), dtype=torch.uint8).to(device)
    y = torch.randint(0, 18, (cfg.batch_size,)).to(device)

    def limit_step():
        return trainer.step(x, y)

    median_rate(limit_step, 3, 1, 1)  # warm-up
    workers = [default_workers(w, device) for w in a.workers]
    # (a) and (b, cache on) alternate in rounds, each round with a fresh loader, so drift in this
    # machine's speed hits both alike and no worker runs during a model-only window.
    limit_rates, pipe_rates, round_ratios = [], [], []
    for _ in range(a.rounds):
        limit_rates.append(statistics.median(window_rates(limit_step, 0, a.windows, a.steps)))
        pipe_rates.append(statistics.median(pipeline_rates(trainer, cached, labels, cfg, a.aug, workers[0], a)))
        round_ratios.append(pipe_rates[-1] / limit_rates[-1])
    limit, with_cache = statistics.median(limit_rates), {workers[0]: statistics.median(pipe_rates)}
    pipeline = {}  # (workers, cache on) -> img/s of row b
    rows.append(("a", "model-only train step (limit)", limit))
    nchw_cfg = TrainConfig(**{**cfg.__dict__, "channels_last": not cfg.channels_last})
    nchw = Trainer(nchw_cfg, device)
    rows.append(("a2", f"model-only train step, channels_last={nchw_cfg.channels_last}",
                 median_rate(lambda: nchw.step(x, y), 2, a.windows, a.steps)))
    for w in workers:
        pipeline[w, False] = statistics.median(pipeline_rates(trainer, FileImages(table["path"], size), labels, cfg,
                                                              a.aug, w, a))
        rows.append(("b", f"full pipeline, cache off, {w} workers", pipeline[w, False]))
        if w not in with_cache:
            with_cache[w] = statistics.median(pipeline_rates(trainer, cached, labels, cfg, a.aug, w, a))
        pipeline[w, True] = with_cache[w]
        rows.append(("b", f"full pipeline, cache on, {w} workers", with_cache[w]))
    rows.append(("c", f"loader alone, cache on, {workers[0]} workers",
                 loader_rate(cached, labels, cfg, a.aug, workers[0], a)))

    trainer.model.eval()
    xb = x[: cfg.infer_batch_size]

    def infer_step():
        forward_views([trainer.model], xb, device, "flip", cfg.amp)
        return len(xb)

    rows.append(("d", "inference, flip TTA (doubled batch)", median_rate(infer_step, 2, a.windows, a.steps)))
    trainer.model.train()
    if not a.no_reference:
        ref_cfg = TrainConfig(**{**cfg.__dict__, "channels_last": False})
        ref = Trainer(ref_cfg, device)
        rows.append(("ref", "reference: original aug, full-size decode, no cache, 4 workers, NCHW",
                     statistics.median(pipeline_rates(ref, FileImages(table["path"]), labels, ref_cfg, "original",
                                                      4, a))))
    ratio = statistics.median(round_ratios)  # each round's pipeline against the limit measured just before it

    threads = torch.get_num_threads()
    print(f"\nsetup: {datetime.date.today()}  device={device}"
          f"{' ' + torch.cuda.get_device_name() if device.type == 'cuda' else ''}  torch threads={threads}  "
          f"cores={len(os.sched_getaffinity(0))}  model={a.model}  input={a.img_height}x{a.img_width}  "
          f"batch={a.batch_size}  amp={cfg.amp}  channels_last={cfg.channels_last}  compile={cfg.compile}  "
          f"aug={a.aug}  "
          f"data={data_dir} ({len(table)} images)  cache built in {cache_s:.1f}s  "
          f"rounds={a.rounds} windows={a.windows}x{a.steps} steps")
    print("| row | what | img/s | x limit |\n|---|---|---|---|")
    for key, what, rate in rows:
        print(f"| {key} | {what} | {rate:.1f} | {rate / limit:.2f} |")
    if not a.no_reference:
        ref_rate = next(r for k, _, r in rows if k == "ref")
        print(f"| e2 | pipeline (cache on) / reference | {with_cache[workers[0]] / ref_rate:.2f} | |")
    print(f"| e | pipeline (cache on) / limit, median of per-round ratios "
          f"{' '.join(f'{r:.3f}' for r in round_ratios)} | {ratio:.3f} | |")
    print("\n" + "\n".join(keep_up_table(pipeline, limit, a.flag_below)))
    print(f"ratio_pipeline_to_limit={ratio:.4f}")


if __name__ == "__main__":
    main()
