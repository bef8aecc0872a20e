"""The rules about runs that the settings imply: what a resume may change, which settings another makes
pointless, and what a run saves of its settings (with the git commit) and how they differ from the defaults.
"""
from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import yaml

from src.config.parsing import (SAVED_EXTRA, apply, check_settings, fields_of, key_lines, needs, read_mapping,
                                recipe_layers)
from src.config.schema import SET, Needs, RunSwitches, Tracking, TrainConfig
from src.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
# Switches of one invocation, not settings of a run: left out of the saved config.yaml. The tracking keys are too:
# where an invocation also logs changes nothing it trains, a resume may add a tracker or move to another server, and
# the run folder's tracking.json records where the run went.
SWITCHES = (tuple(f.name for f in dataclasses.fields(RunSwitches) if f.name != "name")
            + tuple(f.name for f in dataclasses.fields(Tracking)) + ("recipes",))
# Settings a resumed (or joined) run may give differently: the rest must match its config.yaml. A different
# seed is overruled by the run's own (folds.csv, weights and augmentation all follow it); onecycle's epochs
# are fixed (resume_conflicts); finished folds are never extended.
MAY_CHANGE_ON_RESUME = ("data_dir", "log_dir", "seed", "fold", "epochs", "num_workers", "prefetch_factor",
                        "infer_batch_size", "max_image_pixels", "cache", "compile", "dist_backend",
                        "early_stop_patience", "val_every")


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


def dump(cfg, cls=None, extra: dict | None = None) -> str:
    """The resolved settings plus the git commit and the recipe files (and `extra`): what a run or an inference
    saves."""
    commit, dirty = git_commit()
    return yaml.safe_dump({**settings(cfg, cls), "git_commit": commit, "git_dirty": dirty,
                           "recipes": list(cfg.recipes), **(extra or {})}, sort_keys=False)


def diff_lines(title: str, before: dict, after: dict) -> list[str]:
    keys = [k for k in after if after[k] != before[k]]
    return [f"{title}: {len(keys)} key(s)", *(f"  {k}: {before[k]} -> {after[k]}" for k in keys)]


def changes(cfg, recipe_files=()) -> list[str]:
    """What differs from the defaults, then what each layer set: every recipe file (its bases first), then the
    command line, as `key: before -> after`. Lost runs come from a forgotten override; these lines open every
    train.log and the report."""
    cls, now = type(cfg), settings(cfg)
    lines = diff_lines("differs from the defaults", settings(cls()), now)
    layered = cls()
    for path in recipe_files:
        for layer, own in recipe_layers(path):
            before = settings(layered)
            apply(layered, own, f"--config {layer}")
            base_of = "" if Path(layer) == Path(path) else f" (base of {path})"
            lines += diff_lines(f"set by {layer}{base_of}", before, settings(layered))
    if recipe_files:
        lines += diff_lines("set by the command line", settings(layered), now)
    return lines


def pointless(cfg) -> list[str]:
    """A warning for each setting given a non-default value that another setting makes pointless."""
    cls, defaults, out = type(cfg), type(cfg)(), []

    def shown(v) -> str:
        return str(v).lower() if isinstance(v, bool) else str(v)

    for key in fields_of(cls):
        rule = needs(cls, key)
        if rule is None or getattr(cfg, key) == getattr(defaults, key):
            continue
        conditions = [(k, values) for k, values in rule.conditions if k in fields_of(cls)]
        if conditions and not any(Needs.holds(getattr(cfg, k), values) for k, values in conditions):
            now = " and ".join(f"--{k} {shown(getattr(cfg, k))}" for k, _ in conditions)
            wanted = ", or ".join(f"--{k} {' or '.join('...' if v == SET else shown(v) for v in values)}"
                                for k, values in conditions)
            out.append(f"--{key} {getattr(cfg, key)} has no effect with {now} (it applies with {wanted})")
    return out


def resume_conflicts(saved, cfg) -> dict:
    """{key: (saved value, new value)} of the settings that a resume may not change."""
    old, new = settings(saved, TrainConfig), settings(cfg, TrainConfig)
    conflicts = {k: (old[k], new[k]) for k in new if old[k] != new[k] and k not in MAY_CHANGE_ON_RESUME}
    if (old["fold"] == "full") != (new["fold"] == "full"):  # one model on everyone, or K folds: never both in a run
        conflicts["fold"] = (old["fold"], new["fold"])
    if new["scheduler"] == "onecycle" and old["epochs"] != new["epochs"]:
        conflicts["epochs"] = (old["epochs"], new["epochs"])  # onecycle's schedule is fixed by its length
    return conflicts


def from_saved(path: Path) -> TrainConfig:
    """A run's saved config.yaml back as a TrainConfig (used by infer and resume)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no saved config; is this a run folder written by train.py?")
    saved = {k: v for k, v in read_mapping(path, str(path)).items() if k not in SAVED_EXTRA}
    lines = key_lines(path)
    cfg = apply(TrainConfig(), saved, str(path), lines)
    try:
        return check_settings(cfg)
    except ConfigError as e:
        if e.key is None:
            raise ConfigError(f"{path}: {e}") from None
        where = f"{path} line {lines[e.key]}" if e.key in lines else str(path)
        raise ConfigError(f"{where}: {str(e).removeprefix('--')}; fix this file or restore it", e.key) from None


def subset(cfg, cls):
    """The keys of cfg that `cls` has, as a `cls` (e.g. the TrainConfig part of a PseudoConfig)."""
    return cls(**{k: v for k, v in dataclasses.asdict(cfg).items() if k in fields_of(cls)})
