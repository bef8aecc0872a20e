"""What it costs the CPU to feed a GPU: each training preset's steps, the loader's rate, the fog against albumentations'
RandomFog, and what an epoch spends outside its training and validation steps.

    python -m bench.feed                  # every preset at 384x288, 144x108 and 128x96 on generated photos
    python -m bench.feed --quick          # 384x288 only, fewer photos and batches: about 1.5 minutes on 2 cores

Tables, all on this machine, the step table on one core (the process pinned to it, one OpenCV and torch thread):
  steps   ms an image of each step of each preset: the cache read (or the decode, for cache none), each augmentation
          step with its probability (and, for the fog, when it fires), the tensor, the collate, and their sum
  loader  images/s of the trainer's own Dataset and DataLoader with 0, 1 and 2 workers; the sum of the steps; the feed
          that 14 workers would give on 16 cores (14 x 1000 / ms); against one H100's B3 step at 384x288 (an estimate,
          not a measurement: bench/gpu.sh measures it) and this machine's model-only step (bench.throughput --quick)
  fog     FastFog against RandomFog on the same --fog_photos photos, from the cache through the pipeline's resize to
          384x288, per fog coefficient: the mean
          brightness lift, the share of local contrast lost (mean absolute Laplacian), the fog's own texture (local
          standard deviation of the output minus the blurred photo), and ms when it fires
  fixed   an epoch's cost outside its steps for tf_efficientnet_b3_ns at 384x288 with SGD: what the fold's writes
          cost (last.pt, best_*.pt, oof.csv, confusion.png, metrics.csv, TensorBoard), what the training loop now
          waits for (save_epoch: the copies, the console line), and the first batch of an epoch and of a validation
          pass against a steady batch; as a share of an epoch at the estimated GPU rate
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
import dataclasses
import datetime
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

# torch, albumentations and the pipeline are imported where they are used: --help and a bad argument start without them

GPU_ESTIMATE = (1000, 900, 1250)  # B3 at 384x288, bf16, one H100 SXM: img/s (range), scaled from public benchmarks
GPU_WORKERS = 14  # loader workers of a 16-core GPU server
BASELINE_TRAIN, BASELINE_VAL = 14_175, 4_725  # one fold of the real data: 2,700 people x 7 photos, 3/4 and 1/4
VAL_SPEEDUP = 3  # a validation step (no backward pass) against a training step: an estimate


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                prog="python -m bench.feed")
    p.add_argument("--data_dir", help="dataset in the competition layout; default: generated once into /tmp")
    p.add_argument("--presets", nargs="+", default=["original", "light", "geometric", "none"])
    p.add_argument("--sizes", nargs="+", default=["384x288", "144x108", "128x96"], help="HxW input sizes")
    p.add_argument("--photos", type=int, default=200, help="photos each step is timed on")
    p.add_argument("--fog_photos", type=int, default=200, help="photos of the fog comparison")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="loader workers of the loader table")
    p.add_argument("--batches", type=int, default=8, help="timed batches per loader row (after two to warm up)")
    p.add_argument("--batch_size", type=int, default=32, help="the baseline's")
    p.add_argument("--cache", default="disk", choices=["disk", "ram", "none"], help="the baseline's: disk")
    p.add_argument("--skip", nargs="*", default=[], choices=["steps", "loader", "fog", "fixed"])
    p.add_argument("--quick", action="store_true", help="384x288 only, 60 photos, 4 batches, 60 fog photos")
    p.add_argument("--picture", help="also draw three photos with RandomFog and FastFog side by side into this PNG")
    a = p.parse_args(argv)
    if a.quick:
        a.sizes, a.photos, a.batches, a.fog_photos = ["384x288"], 60, 4, 60
    try:
        a.sizes = [tuple(int(v) for v in s.lower().split("x")) for s in a.sizes]
    except ValueError:
        p.error(f"--sizes takes HxW, such as 384x288; got {' '.join(a.sizes)}")
    return a


@contextlib.contextmanager
def one_core():
    """The process on one core with one torch and OpenCV thread: the cost an image takes of one loader worker."""
    import cv2
    import torch

    cores, threads, cv_threads = os.sched_getaffinity(0), torch.get_num_threads(), cv2.getNumThreads()
    os.sched_setaffinity(0, {min(cores)})
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        os.sched_setaffinity(0, cores)
        torch.set_num_threads(threads)
        cv2.setNumThreads(cv_threads)


def generated_data(data_dir) -> Path:
    if data_dir:
        return Path(data_dir)
    out = Path(tempfile.gettempdir()) / "maskcls_bench_feed"
    if not (out / "train" / "train.csv").is_file():
        from tools.make_synthetic_data import main as make_data

        make_data(["--out", str(out), "--train_people", "40", "--eval_people", "1", "--seed", "0"])
    return out


def step_name(step) -> str:
    import albumentations as A

    if isinstance(step, A.OneOf):
        return "OneOf(" + ", ".join(type(t).__name__ for t in step.transforms) + ")"
    return type(step).__name__


def time_steps(aug, images, labels, batch_size: int) -> list[tuple[str, float, float | None]]:
    """(step, mean ms an image, ms when it fires or None) of the source read, each step of `aug`, the tensor and the
    collate, over `images`; each step is called as the pipeline calls it, on its predecessor's output."""
    import numpy as np
    import torch
    from torch.utils.data import default_collate

    steps = aug.pipeline.transforms
    spent = np.zeros(len(steps) + 4)
    fired_s, fired_n = np.zeros(len(steps) + 1), np.zeros(len(steps) + 1)
    tensors = []
    for i in range(min(5, len(labels))):  # first calls set up OpenCV's and albumentations' state: not timed
        aug(np.array(images[i]), int(labels[i]))
    aug.reseed(0)
    for i in range(len(labels)):
        t0 = time.perf_counter()
        img = np.array(images[i])  # the read: a memory-mapped or shared cache row copied, or a file decoded
        spent[0] += time.perf_counter() - t0
        for j, step in enumerate(steps, 1):
            t0 = time.perf_counter()
            out = step(image=img)["image"]
            took = time.perf_counter() - t0
            spent[j] += took
            if out is not img:
                fired_s[j - 1] += took
                fired_n[j - 1] += 1
            img = out
        t0 = time.perf_counter()
        if aug.grid is not None and labels[i] in aug.grid_classes:
            out = aug.grid(image=img)["image"]
            took = time.perf_counter() - t0
            fired_s[-1] += took * (out is not img)
            fired_n[-1] += out is not img
            img = out
        spent[-3] += time.perf_counter() - t0
        t0 = time.perf_counter()
        tensors.append((torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))), int(labels[i]), i))
        spent[-2] += time.perf_counter() - t0
    t0 = time.perf_counter()
    for b in range(0, len(tensors), batch_size):
        default_collate(tensors[b:b + batch_size])
    spent[-1] = time.perf_counter() - t0
    ms = spent * 1e3 / len(labels)
    rows = [("read", ms[0], None)]
    rows += [(step_name(s), ms[j], fired_s[j - 1] / fired_n[j - 1] * 1e3 if fired_n[j - 1] else None)
             for j, s in enumerate(steps, 1)]
    rows += [("GridShuffle (not-worn classes)", ms[-3], fired_s[-1] / fired_n[-1] * 1e3 if fired_n[-1] else None),
             ("tensor", ms[-2], None), ("collate", ms[-1], None)]
    return rows


def steps_table(results: dict) -> list[str]:
    """results: (preset, size) -> time_steps rows. One table per size: a row per step, a column per preset."""
    lines = []
    for size in dict.fromkeys(size for _, size in results):
        presets = [p for p, s in results if s == size]
        lines += [f"\nsteps at {size[0]}x{size[1]}: ms an image on one core (when it fires)",
                  "| step | " + " | ".join(presets) + " |", "|---|" + "---|" * len(presets)]
        names = list(dict.fromkeys(name for p in presets for name, _, _ in results[p, size]))
        for name in names:
            cells = []
            for p in presets:
                row = next((r for r in results[p, size] if r[0] == name), None)
                cells.append("" if row is None else f"{row[1]:.2f}" + (f" ({row[2]:.2f})" if row[2] is not None
                                                                       else ""))
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("| **sum** | " + " | ".join(f"**{sum(r[1] for r in results[p, size]):.2f}**"
                                                 for p in presets) + " |")
    return lines


def loader_rate(images, labels, cfg, workers: int, batches: int) -> float:
    """Images/s of the trainer's Dataset, sampler and DataLoader (cfg's preset) after two batches to warm up."""
    import torch

    from bench.throughput import training_batches

    loader, stream = training_batches(images, labels, cfg, cfg.aug, workers, torch.device("cpu"))
    for _ in range(2):
        next(stream)
    t0 = time.perf_counter()
    n = sum(len(next(stream)[0]) for _ in range(batches))
    rate = n / (time.perf_counter() - t0)
    stream.close()
    del loader
    return rate


def model_only_rate() -> float:
    """bench.throughput --quick's row a: the quick recipe's model-only train step (img/s), the machine's speed."""
    import torch

    from bench.throughput import Trainer, window_rates
    from src.config.schema import TrainConfig

    cfg = TrainConfig(model="tf_efficientnet_lite0", pretrained=False, img_height=128, img_width=96, batch_size=32,
                      optimizer="adamw", lr=1e-4, loss="ce", head="linear", amp="none")
    trainer = Trainer(cfg, torch.device("cpu"))
    x = torch.randint(0, 256, (32, 3, 128, 96), dtype=torch.uint8)
    y = torch.randint(0, 18, (32,))
    window_rates(lambda: trainer.step(x, y), 3, 0, 0)
    return statistics.median(statistics.median(window_rates(lambda: trainer.step(x, y), 0, 1, 3)) for _ in range(3))


def fog_table(images, n_photos: int) -> list[str]:
    """FastFog against RandomFog at each coefficient over the same photos (384x288)."""
    import albumentations as A
    import cv2
    import numpy as np

    from src.data import transforms
    from src.data.fog import FastFog, blur_size

    def grey(im):
        return cv2.cvtColor(im, cv2.COLOR_RGB2GRAY).astype(np.float32)

    def laplacian(im):
        return float(np.abs(cv2.Laplacian(grey(im), cv2.CV_32F)).mean())

    def local_std(g, w=7):
        mean, square = cv2.blur(g, (w, w)), cv2.blur(g * g, (w, w))
        return float(np.sqrt(np.maximum(square - mean * mean, 0)).mean())

    resize = transforms.resize((384, 288))  # the photos as the pipeline's first step hands them on
    photos = [resize(image=np.array(images[i]))["image"] for i in range(n_photos)]
    size = blur_size(384, 288)
    lines = [f"\nfog: FastFog against RandomFog on the same {n_photos} photos at 384x288, one core",
             "| coefficient | brightness lift: RandomFog / FastFog (ratio) | local contrast lost | fog texture "
             "(local std) | ms when it fires |", "|---|---|---|---|---|"]
    for coef in (0.1, 0.2, 0.3):
        stats = {}
        for name, fog in (("RandomFog", A.RandomFog(fog_coef_range=(coef, coef), p=1.0)),
                          ("FastFog", FastFog(fog_coef_range=(coef, coef), p=1.0))):
            fog.set_random_seed(1)
            lift, lost, texture, seconds = [], [], [], 0.0
            for im in photos:
                t0 = time.perf_counter()
                out = fog(image=im)["image"]
                seconds += time.perf_counter() - t0
                lift.append(out.mean() - im.mean())
                lost.append(1 - laplacian(out) / laplacian(im))
                texture.append(local_std(grey(out) - grey(cv2.GaussianBlur(im, (size, size), 0))))
            stats[name] = [np.mean(lift), np.mean(lost), np.mean(texture), seconds / len(photos) * 1e3]
        r, f = stats["RandomFog"], stats["FastFog"]
        cells = [f"{r[i]:.3f} / {f[i]:.3f} ({f[i] / r[i]:.3f})" for i in range(3)]
        lines.append(f"| {coef} | " + " | ".join(cells) + f" | {r[3]:.1f} / {f[3]:.2f} |")
    return lines


def fog_picture(images, path: str):
    """Three photos at 384x288: as they are, then RandomFog and FastFog at coefficients 0.1 and 0.3, same seeds."""
    import albumentations as A
    import numpy as np

    from src.data import transforms
    from src.data.fog import FastFog
    from src.run.figures import pyplot, save_png

    resize = transforms.resize((384, 288))
    columns = [("photo", None)] + [(f"{type(f).__name__} {c}", f) for c in (0.1, 0.3)
                                   for f in (A.RandomFog(fog_coef_range=(c, c), p=1.0),
                                             FastFog(fog_coef_range=(c, c), p=1.0))]
    fig, axes = pyplot().subplots(3, len(columns), figsize=(2.2 * len(columns), 3 * 3))
    for row, i in enumerate(np.linspace(0, len(images) - 1, 3).astype(int)):
        photo = resize(image=np.array(images[i]))["image"]
        for col, (title, fog) in enumerate(columns):
            if fog is not None:
                fog.set_random_seed(row)
            axes[row, col].imshow(photo if fog is None else fog(image=photo)["image"])
            axes[row, col].set_title(title, fontsize=9)
            axes[row, col].axis("off")
    fig.tight_layout()
    save_png(fig, Path(path), dpi=72)


def fixed_cost(data_dir: Path, batch_size: int, workers: int) -> list[str]:
    """The parts of an epoch outside its steps, for B3 at 384x288 with SGD (momentum): the fold's writes on the
    writer thread, what save_epoch makes the loop wait for, and the first batches of an epoch."""
    import numpy as np
    import torch

    from src.config.schema import TrainConfig
    from src.engine import builders
    from src.engine.optim import build_optimizer
    from src.engine.stopping import EarlyStopping
    from src.run import checkpoint, records as records_mod, saver as saver_mod
    from src.run.atomic import save_text
    from src.run.logging import setup_logging
    from src.run.records import RunRecords
    from src.run.rundir import RunDir
    from src.predictions import Predictions
    from src.run.saver import FoldObjects, FoldSaver, Validated

    cfg = TrainConfig(model="tf_efficientnet_b3_ns", pretrained=False, img_height=384, img_width=288)
    model = builders.model(cfg)
    optimizer = build_optimizer(cfg, model)
    for p in model.parameters():  # the momentum buffers, as after any step
        optimizer.state[p]["momentum_buffer"] = torch.zeros_like(p)
    step = builders.train_step(cfg, model, builders.criterion(cfg), optimizer, torch.device("cpu"))
    objects = FoldObjects(model=model, optimizer=optimizer, scheduler=None, step=step,
                          stopper=EarlyStopping(cfg.early_stop_monitor, cfg.early_stop_mode, 5, 0.0), kept=model)
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(18), BASELINE_VAL).astype(np.float32)
    labels = rng.integers(0, 18, BASELINE_VAL)
    paths = np.array([str(data_dir / "train" / "images" / f"{i:06d}_female_Asian_30" / "mask1.jpg")
                      for i in range(BASELINE_VAL)])
    parts: dict[str, list[float]] = {}

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                parts.setdefault(name, []).append(time.perf_counter() - t0)
        return wrapper

    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir(tmp, "fixed")
        run.fold(0).mkdir(parents=True)
        save_text("", run.config)
        setup_logging(run.train_log)
        with RunRecords(run) as records:
            saver = FoldSaver(run, 0, objects, oof_from="best_f1", records=records, writes=True)
            originals = (checkpoint.FoldState.save, saver_mod.save_best, saver_mod.save_csv, saver_mod.save_png,
                         saver_mod.rebuild_metrics, records_mod.RunRecords.epoch_saved,
                         records_mod.RunRecords.epoch_line)
            checkpoint.FoldState.save = timed("last.pt (model and SGD state)", originals[0])
            saver_mod.save_best = timed("best_*.pt (3 when every metric improves)", originals[1])
            saver_mod.save_csv = timed("oof.csv and the fold's metrics.csv", originals[2])
            saver_mod.save_png = timed("confusion.png", originals[3])
            saver_mod.rebuild_metrics = timed("the run's metrics.csv", originals[4])
            records_mod.RunRecords.epoch_saved = timed("TensorBoard (scalars, confusion figure)", originals[5])
            records_mod.RunRecords.epoch_line = timed("console and train.log lines", originals[6])
            blocking = []
            try:
                for epoch in range(3):  # every epoch improves every metric: the most an epoch writes
                    metrics = dict(val_loss=1.0 - epoch / 10, val_acc=0.5 + epoch / 10, val_f1=0.5 + epoch / 10,
                                   val_f1_mask=0.9, val_f1_gender=0.8, val_f1_age=0.6)
                    values = dict(lr=0.002, train_loss=1.0, train_f1=0.5, **metrics, time_s=15.0)
                    t0 = time.perf_counter()
                    saver.save_epoch(epoch, values, Validated(paths, labels, Predictions(probs), metrics), last=False,
                                     rngs=[checkpoint.rng_state()])
                    blocking.append(time.perf_counter() - t0)
                    saver.wait()
            finally:
                (checkpoint.FoldState.save, saver_mod.save_best, saver_mod.save_csv, saver_mod.save_png,
                 saver_mod.rebuild_metrics, records_mod.RunRecords.epoch_saved,
                 records_mod.RunRecords.epoch_line) = originals
                setup_logging(None)
    per_epoch = {name: sum(times) / 3 for name, times in parts.items()}
    first, steady, val_first = epoch_start(data_dir, batch_size, workers)
    epoch_s = BASELINE_TRAIN / GPU_ESTIMATE[0] + BASELINE_VAL / (GPU_ESTIMATE[0] * VAL_SPEEDUP)
    written = sum(v for k, v in per_epoch.items() if not k.startswith("console"))
    waited = statistics.median(blocking)
    refill = max(first - steady, 0.0) + max(val_first - steady, 0.0)
    lines = [f"\nfixed: an epoch's cost outside its steps, tf_efficientnet_b3_ns at 384x288, SGD (momentum), "
             f"{BASELINE_VAL:,} validation rows, every metric improving (the most an epoch writes); mean of 3 epochs",
             "| part | s an epoch |", "|---|---|"]
    lines += [f"| {name} | {seconds:.3f} |" for name, seconds in per_epoch.items()]
    lines += [f"| the fold's writes and records, together (on the training thread before; on the writer thread now) "
              f"| {written:.3f} |",
              f"| save_epoch: what the training loop waits for now (copies of the state, the console line) "
              f"| {waited:.3f} |",
              f"| first batch of an epoch (original preset, batch {batch_size}, {workers} workers, persistent) "
              f"| {first:.3f} (a steady batch {steady:.3f}) |",
              f"| first batch of a validation pass | {val_first:.3f} |",
              f"\nAt the estimated {GPU_ESTIMATE[0]:,} img/s an epoch of one fold trains and validates in "
              f"{epoch_s:.1f} s ({BASELINE_TRAIN:,} + {BASELINE_VAL:,} images; validation at {VAL_SPEEDUP}x). "
              f"Outside its steps before: {written + refill:.2f} s = {(written + refill) / epoch_s:.1%} of an epoch; "
              f"now: {waited + refill:.2f} s = {(waited + refill) / epoch_s:.1%} (the loaders' refill "
              f"{refill:.2f} s included in both)."]
    return lines


def epoch_start(data_dir: Path, batch_size: int, workers: int) -> tuple[float, float, float]:
    """(seconds to the first batch of a later epoch, a steady batch, the first batch of a validation pass) of the
    trainer's loaders with persistent workers, original preset at 384x288 from the memory cache."""
    import torch

    from src.config.schema import TrainConfig
    from src.data.cache import build_cache
    from src.data.dataset import FaceDataset
    from src.data.loaders import make_loader, set_epoch
    from src.data.samplers import train_sampler
    from src.data.tables import load_train
    from src.engine import builders

    cfg = TrainConfig(img_height=384, img_width=288, batch_size=batch_size)
    table = load_train(data_dir, "none", 59, None, 42)
    images = build_cache("ram", table["path"], builders.work_size(cfg), "none", Path(), num_workers=workers)
    labels = table["label"].to_numpy()
    device = torch.device("cpu")
    train = FaceDataset(images, labels, builders.train_transform(cfg), seed=0)
    sampler = train_sampler("none", labels, 1, 0, 0)
    loader = make_loader(train, device, batch_size, workers, cfg.prefetch_factor, sampler, drop_last=True)
    firsts, steadies = [], []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        set_epoch(train, epoch)
        t0 = time.perf_counter()
        it = iter(loader)
        next(it)
        firsts.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for _ in range(len(loader) - 1):
            next(it)
        steadies.append((time.perf_counter() - t0) / max(len(loader) - 1, 1))
    val = FaceDataset(images, labels, builders.eval_transform(cfg))
    val_loader = make_loader(val, device, cfg.infer_batch_size, workers, cfg.prefetch_factor)
    val_firsts = []
    for _ in range(3):
        t0 = time.perf_counter()
        next(iter(val_loader))
        val_firsts.append(time.perf_counter() - t0)
    del loader, val_loader
    return statistics.median(firsts[1:]), statistics.median(steadies[1:]), statistics.median(val_firsts[1:])


def main(argv=None) -> int:
    a = parse(argv)
    import torch

    from src.config.schema import TrainConfig
    from src.data.tables import load_train
    from src.engine import builders

    data_dir = generated_data(a.data_dir)
    table = load_train(data_dir, "none", 59, None, 42)
    paths, labels = table["path"].to_numpy(), table["label"].to_numpy()
    out: list[str] = []
    steps, loaders = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in a.sizes:
            cfg = TrainConfig(img_height=size[0], img_width=size[1], cache=a.cache, log_dir=tmp,
                              batch_size=a.batch_size, data_dir=str(data_dir))
            images = builders.images(cfg, paths, builders.work_size(cfg), num_workers=2)
            n = min(a.photos, len(paths))
            for preset in a.presets:
                pcfg = dataclasses.replace(cfg, aug=preset)
                if "steps" not in a.skip:
                    with one_core():
                        steps[preset, size] = time_steps(builders.train_transform(pcfg), images, labels[:n],
                                                         a.batch_size)
                if "loader" not in a.skip:
                    loaders[preset, size] = {w: loader_rate(images, labels, pcfg, w, a.batches) for w in a.workers}
                print(f"measured {preset} at {size[0]}x{size[1]}", file=sys.stderr, flush=True)
        fog_images = builders.images(TrainConfig(img_height=384, img_width=288, cache="ram", log_dir=tmp),
                                     paths[:a.fog_photos], builders.work_size(TrainConfig()), num_workers=2) \
            if "fog" not in a.skip else None
    if steps:
        out += steps_table(steps)
    model_only = model_only_rate()
    if loaders:
        out += [f"\nloader: images/s here (the trainer's Dataset and DataLoader, cache {a.cache}, batch "
                f"{a.batch_size}); CPU ms an image (the steps' sum, one core); the feed of {GPU_WORKERS} workers on a "
                f"16-core server; one H100's B3 step at 384x288 is about {GPU_ESTIMATE[0]:,} img/s "
                f"({GPU_ESTIMATE[1]:,}-{GPU_ESTIMATE[2]:,}), an estimate; this machine's model-only step "
                f"(bench.throughput --quick) {model_only:.1f} img/s",
                "| preset | size | " + " | ".join(f"{w} workers" for w in a.workers)
                + f" | CPU ms an image | feed of {GPU_WORKERS} workers | / H100 estimate |",
                "|---|---|" + "---|" * (len(a.workers) + 3)]
        for (preset, size), rates in loaders.items():
            ms = sum(r[1] for r in steps[preset, size]) if (preset, size) in steps else float("nan")
            feed = GPU_WORKERS * 1000 / ms
            out.append(f"| {preset} | {size[0]}x{size[1]} | " + " | ".join(f"{rates[w]:.1f}" for w in a.workers)
                       + f" | {ms:.2f} | {feed:,.0f} img/s | {feed / GPU_ESTIMATE[0]:.2f} |")
    if fog_images is not None:
        with one_core():
            out += fog_table(fog_images, min(a.fog_photos, len(fog_images)))
        if a.picture:
            fog_picture(fog_images, a.picture)
    if "fixed" not in a.skip:
        out += fixed_cost(data_dir, a.batch_size, max(a.workers))
    print(f"\nsetup: {datetime.date.today()}  cores={len(os.sched_getaffinity(0))}  torch {torch.__version__}  "
          f"data={data_dir} ({len(paths)} photos, 384x512)  cache={a.cache}  photos timed={a.photos}  "
          f"model-only step (bench.throughput --quick)={model_only:.1f} img/s")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
