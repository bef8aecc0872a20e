"""A sweep file: the base recipe, the objective, the search space, the budget, the sampler and the pruner, every
key and value checked against the train.py schema before any trial starts.

    base: experiments/cpu15.yaml        # relative to the working folder, else to the sweep file's folder
    objective: {folds: "0"}             # the folds each trial trains: an index or all
    space:
      lr: {low: 1.0e-4, high: 1.0e-2, log: true}
      epochs: {low: 3, high: 8, step: 1}
      head: {choices: [linear, arcface]}
    n_trials: 12                        # trials in all, over every worker
    trial_minutes: 15                   # a trial predicted to train longer is pruned before it trains; none: no limit
    timeout: 3600                       # seconds a worker keeps starting trials; none: no limit
    sampler: {name: tpe, seed: 0}       # tpe or random, seeded
    pruner: {name: median, n_startup_trials: 2, n_warmup_steps: 1}   # median, hyperband or none
"""
from __future__ import annotations

import copy
import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path

import optuna

from src.config.parsing import apply, check_settings, convert, field_type, fields_of, is_option, parse, read_mapping
from src.config.schema import TrainConfig
from src.errors import ConfigError, brief

TOP_KEYS = ("base", "objective", "space", "n_trials", "trial_minutes", "timeout", "sampler", "pruner")
OBJECTIVE_KEYS = ("folds",)
CHOICE_KEYS, RANGE_KEYS = ("choices",), ("low", "high", "log", "step")
SAMPLERS = {"tpe": ("seed", "n_startup_trials"), "random": ("seed",)}
PRUNERS = {"median": ("n_startup_trials", "n_warmup_steps"), "hyperband": ("min_resource", "reduction_factor"),
           "none": ()}
# set by the sweep itself for each trial: never searched; only data_dir and log_dir may be fixed on the command line
OWNED_KEYS = ("name", "log_dir", "data_dir", "fold", "resume", "overwrite", "check_data", "recipes")


@dataclass
class Param:
    """One searched key: choices, or an int/float range (log, step)."""
    key: str
    choices: list | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    integer: bool = False

    def suggest(self, trial: optuna.Trial):
        if self.choices is not None:
            return trial.suggest_categorical(self.key, self.choices)
        if self.integer:
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)


@dataclass
class SweepSpec:
    path: Path
    base: Path
    folds: str = "all"
    space: list[Param] = field(default_factory=list)
    n_trials: int = 12
    trial_minutes: float | None = None
    timeout: float | None = None
    sampler: dict = field(default_factory=lambda: {"name": "tpe", "seed": 0})
    pruner: dict = field(default_factory=lambda: {"name": "median", "n_startup_trials": 2, "n_warmup_steps": 1})

    def make_sampler(self, offset: int = 0) -> optuna.samplers.BaseSampler:
        """The sampler, its seed moved by `offset` (each trial samples from its own seed)."""
        opts = {k: v for k, v in self.sampler.items() if k != "name"}
        if "seed" in opts:
            opts["seed"] += offset
        return optuna.samplers.TPESampler(**opts) if self.sampler["name"] == "tpe" \
            else optuna.samplers.RandomSampler(**opts)

    def make_pruner(self) -> optuna.pruners.BasePruner:
        opts = {k: v for k, v in self.pruner.items() if k != "name"}
        return {"median": optuna.pruners.MedianPruner, "hyperband": optuna.pruners.HyperbandPruner,
                "none": optuna.pruners.NopPruner}[self.pruner["name"]](**opts)

    def record(self) -> dict:
        """What the study keeps of its sweep, so every worker that joins runs the same search."""
        return dict(folds=self.folds, sampler=self.sampler, pruner=self.pruner, timeout=self.timeout,
                    trial_minutes=self.trial_minutes,
                    space={p.key: p.choices if p.choices is not None else [p.low, p.high, p.log, p.step]
                           for p in self.space})


def arg_text(value) -> str:
    """A value as train.py's command line takes it."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(arg_text(v) for v in value)
    return str(value)


def option_args(params: dict) -> list[str]:
    return [a for key, value in params.items() for a in (f"--{key}", arg_text(value))]


def given_keys(train_args: list[str]) -> list[str]:
    return [tok[2:].partition("=")[0] for tok in train_args if tok.startswith("--")]


def one_of(what: str, value, valid) -> ConfigError:
    close = difflib.get_close_matches(str(value), [str(v) for v in valid], n=1)
    hint = f" Did you mean: {close[0]}?" if close else ""
    return ConfigError(f"{what} {brief(value)} is not supported.{hint} Valid: {', '.join(map(str, valid))}")


def load_spec(path, fixed_args: list[str], trial_minutes: float = 0) -> SweepSpec:
    """The sweep file at `path`, checked with the train.py keys fixed on the command line (`fixed_args`);
    `trial_minutes` > 0 replaces the file's."""
    path = Path(path)
    data = read_mapping(path, f"sweep file {path}")
    where = f"sweep file {path}"
    for key in data:
        if key not in TOP_KEYS:
            raise one_of(f"{where}: key", key, TOP_KEYS)
    if "base" not in data or not isinstance(data["base"], str):
        raise ConfigError(f"{where}: 'base' names the recipe every trial starts from (for example "
                          f"experiments/cpu15_every_epoch.yaml)")
    base = Path(data["base"])
    if not base.is_file() and (path.parent / base).is_file():
        base = Path(os.path.normpath(path.parent / base))
    if not base.is_file():
        raise ConfigError(f"{where}: base recipe {data['base']} not found (relative to the working folder or to "
                          f"{path.parent})")
    spec = SweepSpec(path=path, base=base)
    fixed = given_keys(fixed_args)
    if "fold" in fixed or "config" in fixed:
        raise ConfigError(f"--{'fold' if 'fold' in fixed else 'config'} is the sweep file's to set ('objective: "
                          f"folds' and 'base'), not the command line's")
    owned = [k for k in fixed if k in OWNED_KEYS and k not in ("data_dir", "log_dir")]
    if owned:
        raise ConfigError(f"--{owned[0]} is set by the sweep for each trial (runs are <study>-<trial>, a retry "
                          f"resumes its run); leave it out")
    template = parse(["--config", str(base), *fixed_args])  # the base and the fixed keys must make a valid run
    objective = data.get("objective") or {}
    if not isinstance(objective, dict):
        raise ConfigError(f"{where}: 'objective' is a mapping such as {{folds: all}}")
    for key in objective:
        if key not in OBJECTIVE_KEYS:
            raise one_of(f"{where}: objective key", key, OBJECTIVE_KEYS)
    spec.folds = str(objective.get("folds", "all"))
    checked(template, "fold", spec.folds, f"{where}: objective folds")
    if spec.folds == "full" or template.teacher:  # a trial's objective is its CV, which these runs do not have
        raise ConfigError(f"{where}: a trial is scored by its CV; --fold full and --teacher runs have none: sweep "
                          f"their K-fold recipe (objective folds all or an index, no teacher)")
    space = data.get("space")
    if not isinstance(space, dict) or not space:
        raise ConfigError(f"{where}: 'space' maps each searched train.py key to {{choices: [...]}} or "
                          f"{{low: .., high: .., log: .., step: ..}}")
    for key, rule in space.items():
        spec.space.append(param(template, str(key), rule, fixed, where))
    spec.n_trials = whole(data.get("n_trials", spec.n_trials), f"{where}: n_trials", 1)
    spec.timeout = positive(data.get("timeout"), f"{where}: timeout", "seconds")
    spec.trial_minutes = trial_minutes or positive(data.get("trial_minutes"), f"{where}: trial_minutes", "minutes")
    spec.sampler = named(data.get("sampler", spec.sampler), SAMPLERS, f"{where}: sampler")
    spec.pruner = named(data.get("pruner", spec.pruner), PRUNERS, f"{where}: pruner")
    searched = {p.key for p in spec.space}
    # a trial is pruned only between validated epochs, never after a fold's last
    if spec.pruner["name"] != "none" and not searched & {"val_every", "epochs"} and \
            template.val_every >= template.epochs:
        raise ConfigError(f"{where}: pruner {spec.pruner['name']} would never prune: the base and the fixed keys "
                          f"validate only each fold's last epoch (val_every {template.val_every} >= epochs "
                          f"{template.epochs}); give --val_every 1, a base with a smaller val_every, or pruner: none")
    return spec


def positive(value, what: str, unit: str) -> float | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
        raise ConfigError(f"{what} is {unit} (> 0) or absent, got {brief(value)}")
    return value


def whole(value, what: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{what} must be a whole number >= {low}, got {brief(value)}")
    return value


def named(rule, kinds: dict, what: str) -> dict:
    """A {name: ..., option: value} mapping whose name is one of kinds and whose options that kind takes."""
    rule = {"name": rule} if isinstance(rule, str) else rule
    if not isinstance(rule, dict) or "name" not in rule:
        raise ConfigError(f"{what} is a name ({', '.join(kinds)}) or a mapping with 'name'")
    if rule["name"] not in kinds:
        raise one_of(what, rule["name"], kinds)
    for key, value in rule.items():
        if key != "name" and key not in kinds[rule["name"]]:
            raise one_of(f"{what} {rule['name']} option", key, kinds[rule["name"]] or ["(none)"])
        if key != "name" and key != "reduction_factor":
            whole(value, f"{what} {rule['name']} {key}", 0)
    if "reduction_factor" in rule:
        whole(rule["reduction_factor"], f"{what} hyperband reduction_factor", 2)
    return dict(rule)


def checked(template: TrainConfig, key: str, value, what: str):
    """value as key's type, refused (naming `what`) where train.py would refuse it."""
    try:
        typed = convert(TrainConfig, key, value if not isinstance(value, list) else [arg_text(v) for v in value])
        cfg = copy.deepcopy(template)
        apply(cfg, {key: typed}, what)
        check_settings(cfg)
    except ConfigError as e:
        raise ConfigError(f"{what}: {e}") from None
    return typed


def param(template: TrainConfig, key: str, rule, fixed: list[str], where: str) -> Param:
    what = f"{where}: space {key}"
    if key not in fields_of(TrainConfig) or not is_option(TrainConfig, key):
        options = [k for k in fields_of(TrainConfig) if is_option(TrainConfig, k) and k not in OWNED_KEYS]
        close = difflib.get_close_matches(key, options, n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ConfigError(f"{what}: unknown train.py key.{hint} Valid keys: {', '.join(options)}")
    if key in OWNED_KEYS:
        raise ConfigError(f"{what}: the sweep sets {key} itself; it cannot be searched")
    if key in fixed:
        raise ConfigError(f"{what}: --{key} is also fixed on the command line; search it or fix it, not both")
    if not isinstance(rule, dict):
        raise ConfigError(f"{what}: give {{choices: [...]}} or {{low: .., high: ..}}, got {brief(rule)}")
    if "choices" in rule:
        extra = [k for k in rule if k not in CHOICE_KEYS]
        if extra:
            raise ConfigError(f"{what}: choices take no {brief(extra[0])} (a range has low, high, log, step)")
        values = rule["choices"]
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{what}: choices must be a non-empty list")
        for v in values:
            checked(template, key, v, what)
        # Optuna stores scalars only: list values (task_weights) are kept as train.py's text for them, 1,0.5,2
        return Param(key, choices=[arg_text(v) if isinstance(v, list) else v for v in values])
    for k in rule:
        if k not in RANGE_KEYS:
            raise one_of(f"{what}: key", k, CHOICE_KEYS + RANGE_KEYS)
    typ, allowed, _ = field_type(TrainConfig, key)
    if allowed is not None or typ not in (int, float):
        kinds = f"one of: {', '.join(map(str, allowed))}" if allowed else f"of type {getattr(typ, '__name__', typ)}"
        raise ConfigError(f"{what}: a range needs a number key; {key} is {kinds}: use choices")
    if "low" not in rule or "high" not in rule:
        raise ConfigError(f"{what}: a range needs both low and high")
    low, high, log, step = rule["low"], rule["high"], rule.get("log", False), rule.get("step")
    for name, v in (("low", low), ("high", high)) + ((("step", step),) if step is not None else ()):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (typ is int and not isinstance(v, int)):
            raise ConfigError(f"{what}: {name} must be {'a whole number' if typ is int else 'a number'}, got {brief(v)}")
    if not isinstance(log, bool):
        raise ConfigError(f"{what}: log is true or false, got {brief(log)}")
    if not low < high:
        raise ConfigError(f"{what}: low {low} must be below high {high}")
    if log and (low <= 0 or step is not None):
        raise ConfigError(f"{what}: a log range needs low > 0 and no step")
    if step is not None and step <= 0:
        raise ConfigError(f"{what}: step must be > 0, got {step}")
    for v in (low, high):
        checked(template, key, v, what)
    return Param(key, low=low, high=high, log=log, step=step, integer=typ is int)

