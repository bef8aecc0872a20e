"""From the command line and recipe files to a checked config: argparse built from the schema, YAML recipes
(which may `extends:` another), typed coercion, and errors that name the key and what is allowed.

Defaults, then each `--config FILE` in order (a recipe's base first), then the command line. An unknown key,
a key of another entry point, a value outside its choices or range: each is a ConfigError.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import inspect
import io
import math
import re
import sys
import tokenize
import typing
from pathlib import Path
from typing import Annotated, Literal

import yaml

from src.config.schema import (AUTO_EPOCHS, ENTRY_POINTS, RESERVED_NAMES, AgeSpan, Auto, Box, Choices, Name, Needs,
                               Positional, PseudoConfig, Range, TrainConfig)
from src.errors import ConfigError, brief, fail_cleanly
from src.files import irregular, load_yaml, read_document, real

EXTENDS = "extends"  # the recipe key naming a base recipe, relative to the recipe's own folder
RECIPE_SUFFIXES = (".yaml", ".yml")  # what `extends` may name: never an arbitrary file whose lines an error would show
SAVED_EXTRA = ("git_commit", "git_dirty", "recipes")  # written beside the settings, ignored when read back
NOT_OPTIONS = ("recipes",)  # fields that --config sets; not options of their own
OPTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")  # what a key must look like to be shown in an error


@functools.cache
def fields_of(cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


@functools.cache
def field_extras(cls, key: str) -> tuple:
    """(base type, the Annotated extras) of a field."""
    typ = typing.get_type_hints(cls, include_extras=True)[key]
    if typing.get_origin(typ) is Annotated:
        typ, *extras = typing.get_args(typ)
        return typ, tuple(extras)
    return typ, ()


@functools.cache
def field_type(cls, key: str):
    """(base type, Literal choices or None, rule (a Range, Name, AgeSpan, Box or Choices) or None) of a field."""
    typ, extras = field_extras(cls, key)
    rule = next((e for e in extras if isinstance(e, (Range, Name, AgeSpan, Box, Choices))), None)
    if typing.get_origin(typ) is Literal:
        return str, typing.get_args(typ), rule
    return typ, None, rule


def choices(cls, key: str) -> tuple | None:
    return field_type(cls, key)[1]


def needs(cls, key: str) -> Needs | None:
    return next((e for e in field_extras(cls, key)[1] if isinstance(e, Needs)), None)


def auto(cls, key: str) -> Auto | None:
    return next((e for e in field_extras(cls, key)[1] if isinstance(e, Auto)), None)


def positional(cls, key: str) -> Positional | None:
    return next((e for e in field_extras(cls, key)[1] if isinstance(e, Positional)), None)


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
            if len(items) == 1 and isinstance(items[0], str) and not positional(cls, key):  # paths keep their commas
                items = [v for v in items[0].split(",") if v.strip()] if items[0].strip() else []
            return [to_scalar(inner, v) for v in items]
        if isinstance(raw, (list, tuple)):
            if len(raw) != 1:
                raise ValueError(f"takes exactly one value, got {len(raw)}: {' '.join(map(str, raw))}")
            raw = raw[0]
        word = auto(cls, key)
        if word is not None and isinstance(raw, str) and raw.strip().lower() == "auto":
            return word.value
        value = to_scalar(typ, raw)
        if word is not None and value == word.value:  # only the word stands for auto
            raise ValueError(f"must be {field_type(cls, key)[2]} or auto")
        return value
    except ValueError as e:
        raise ConfigError(f"--{key} {e}, got {brief(raw)}", key) from None


def is_option(cls, key: str) -> bool:
    """A field given as --key value: not one that --config sets, nor the bare words."""
    return key in fields_of(cls) and key not in NOT_OPTIONS and not positional(cls, key)


def other_entry_points(cls, key: str) -> list[str]:
    return [script for c, script in ENTRY_POINTS.items() if c is not cls and key in fields_of(c)]


def unknown_key_error(cls, key: str) -> ConfigError:
    elsewhere = other_entry_points(cls, key)
    script = ENTRY_POINTS.get(cls, cls.__name__)
    if elsewhere:
        scripts = ", ".join(elsewhere[:-1]) + " and " + elsewhere[-1] if len(elsewhere) > 1 else elsewhere[0]
        return ConfigError(f"--{key} is a setting of {scripts}; {script} does not take it")
    options = [k for k in fields_of(cls) if is_option(cls, k)]
    close = difflib.get_close_matches(key, options, n=3)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return ConfigError(f"unknown option --{key}.{hint} Valid options: {', '.join(options)} (and --config FILE)")


def check_settings(cfg):
    """Choices and ranges declared beside each field, then the rules that join several fields."""
    cls = type(cfg)
    for key in fields_of(cls):
        _, allowed, rule = field_type(cls, key)
        value = getattr(cfg, key)
        if allowed is not None and value not in allowed:
            raise ConfigError(f"--{key} {brief(value)} is not supported; choose one of: {', '.join(allowed)}", key)
        if isinstance(rule, Name) and not rule.allows(value):
            reserved = [v for v in (value if isinstance(value, list) else [value]) if v in RESERVED_NAMES]
            if reserved:
                raise ConfigError(f"--{key} {brief(reserved[0])} is reserved for log_dir/{reserved[0]}; choose another name",
                                  key)
            raise ConfigError(f"--{key} {brief(value)} is not a run name: use {rule}", key)
        if isinstance(rule, Choices) and not rule.allows(value):
            bad = next(v for v in value if v not in rule.values)
            raise ConfigError(f"--{key} {brief(bad)} is not supported; choose {rule}", key)
        word = auto(cls, key)
        if isinstance(rule, (Range, AgeSpan, Box)) and not rule.allows(value) and not (word and value == word.value):
            raise ConfigError(f"--{key} must be {rule}{' or auto' if word else ''}, got {brief(value)}", key)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"--{key} must be a finite number, got {brief(value)}", key)
    if isinstance(cfg, TrainConfig):
        if cfg.fold not in ("all", "full") and (not cfg.fold.isdigit() or not 0 <= int(cfg.fold) < cfg.n_folds):
            raise ConfigError(f"--fold must be 'all', 'full' or an integer from 0 to {cfg.n_folds - 1}, got "
                              f"{brief(cfg.fold)}")
        check_distillation(cfg)
        if cfg.loss in ("focal", "f1") and cfg.label_smoothing > 0:
            raise ConfigError(f"--label_smoothing applies to --loss ce and ce_f1, not {cfg.loss}; set --loss ce or "
                              f"--label_smoothing 0")
        if len(cfg.mean) != 3 or len(cfg.std) != 3 or min(cfg.std) <= 0:
            raise ConfigError("--mean and --std take three values each (R G B), std positive")
        if len(cfg.task_weights) != 3 or min(cfg.task_weights) < 0 or sum(cfg.task_weights) <= 0:
            raise ConfigError(f"--task_weights takes three weights >= 0 (mask gender age), not all 0, "
                              f"got {cfg.task_weights}")
        if cfg.age_head != "band" and cfg.heads != "per_task":
            raise ConfigError(f"--age_head {cfg.age_head} is the age head of heads: per_task (mask, gender and age "
                              f"heads); the joint 18-way head has none: set --heads per_task or --age_head band")
        if any(not 0 <= c < 18 for c in cfg.gridshuffle_classes):
            raise ConfigError(f"--gridshuffle_classes must be class ids in 0..17, got {cfg.gridshuffle_classes}")
    return cfg


def check_distillation(cfg: TrainConfig):
    """The rules of --teacher, --fold full and --epochs auto that no single field states."""
    if cfg.teacher and isinstance(cfg, PseudoConfig):
        raise ConfigError("pseudo_train.py's teachers are --run/--runs (hard labels); --teacher (soft targets) is "
                          "train.py's")
    if cfg.epochs == AUTO_EPOCHS and not (cfg.fold == "full" and cfg.teacher):
        raise ConfigError("--epochs auto is the teachers' median kept epoch: it needs --fold full and --teacher RUN; "
                          "give a number of epochs otherwise")
    if cfg.fold == "full" and cfg.scheduler == "plateau":
        raise ConfigError("--scheduler plateau follows the validation loss, and --fold full validates nothing; choose "
                          "one of: cosine, onecycle, none")
    if cfg.teacher and cfg.uda:
        raise ConfigError("--teacher and --uda both learn from unlabelled photos; use one (--distill_unlabeled_share "
                          "for the teachers' photos)")
    if cfg.teacher and cfg.pseudo_csv:
        raise ConfigError("--teacher already labels the unlabelled photos (soft, --distill_unlabeled_share); leave "
                          "--pseudo_csv empty")
    if cfg.teacher and cfg.fold != "full":
        raise ConfigError("--teacher trains one student on every person: add --fold full (a K-fold student's CV would "
                          "be flattered: its teachers saw its validation photos)")
    if cfg.name in cfg.teacher:
        raise ConfigError(f"--name {cfg.name} is also a teacher run; the student needs a new name")


def read_mapping(path: Path, source: str) -> dict:
    """A YAML file's mapping of key: value; `source` names the file in errors."""
    why = irregular(path)
    if why:
        raise ConfigError(f"{source}: {'file not found' if why == 'not found' else why}")
    try:
        data = load_yaml(read_document(path))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{source}:{where}: invalid YAML ({getattr(e, 'problem', None) or e})") from None
    except ValueError as e:
        raise ConfigError(f"{source}: {e}") from None
    except OSError as e:
        raise ConfigError(f"{source}: cannot be read ({e.strerror})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of key: value")
    return data


def recipe_layers(path, seen: tuple = ()) -> list[tuple[Path, dict]]:
    """[(file, its own keys)] of a recipe and the bases it extends, the deepest base first."""
    path = Path(path)
    if real(path) in seen:
        chain = " -> ".join(str(p) for p in (*seen, real(path)))
        raise ConfigError(f"--config {path}: recipes extend each other in a loop: {chain}")
    data = read_mapping(path, f"--config {path}")
    own = {k: v for k, v in data.items() if k not in SAVED_EXTRA and k != EXTENDS}
    base = data.get(EXTENDS)
    if base is None:
        return [(path, own)]
    if not isinstance(base, str) or not base.strip():
        raise ConfigError(f"--config {path}: {EXTENDS} must name one recipe file, got {brief(base)}")
    if "://" in base:
        raise ConfigError(f"--config {path}: {EXTENDS} takes a file path, got {brief(base)}; URLs are not fetched: "
                          f"download the recipe and name the file")
    if Path(base).suffix.lower() not in RECIPE_SUFFIXES:
        raise ConfigError(f"--config {path}: {EXTENDS} must name a recipe file ending in "
                          f"{' or '.join(RECIPE_SUFFIXES)}")
    base_path = Path(base) if Path(base).is_absolute() else path.parent / base
    if not base_path.is_file():
        raise ConfigError(f"--config {path}: {EXTENDS}: {base_path} not found")
    return [*recipe_layers(base_path, (*seen, real(path))), (path, own)]


def load_file(path) -> dict:
    """A recipe (its bases applied first) or a saved config, as one mapping of key: value."""
    merged: dict = {}
    for _, own in recipe_layers(path):
        merged.update(own)
    return merged


def apply(cfg, updates: dict, source: str, lines: dict | None = None):
    """Set each key of `updates` from `source` (the command line, or a file whose key -> line is `lines`)."""
    cls = type(cfg)
    for key, value in updates.items():
        where = f"{source} line {lines[key]}" if lines and key in lines else source
        if key not in fields_of(cls) or key in NOT_OPTIONS:
            if not (isinstance(key, str) and OPTION_NAME.fullmatch(key)):  # not a mistyped option: never echoed
                raise ConfigError(f"{where}: a key that is not an option name; recipes hold key: value lines of "
                                  f"{ENTRY_POINTS.get(cls, cls.__name__)} options")
            raise ConfigError(f"{where}: {unknown_key_error(cls, key)}")
        try:
            setattr(cfg, key, convert(cls, key, value))
        except ConfigError as e:
            if source == "command line":
                raise
            raise ConfigError(f"{where}: {str(e).removeprefix('--')}", key) from None
    return cfg


def key_lines(path: Path) -> dict[str, int]:
    """The line of each top-level key of a YAML mapping file (1-based), for errors that name it."""
    try:
        node = yaml.compose(read_document(path))
    except (yaml.YAMLError, OSError, ValueError, RecursionError):  # read_mapping has said what is wrong
        return {}
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {k.value: k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)}


def apply_recipes(cfg, paths):
    """Each recipe file (bases first) applied to cfg in order; cfg.recipes records the files."""
    for path in paths:
        for layer, own in recipe_layers(path):
            apply(cfg, own, f"--config {layer}", key_lines(layer))
    cfg.recipes = [str(p) for p in paths]
    return cfg


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise ConfigError(message)


@functools.cache
def build_parser(cls, prog: str | None = None) -> argparse.ArgumentParser:
    """argparse from the dataclass: every field is `--key value`, lists take several values or commas,
    booleans may be bare (`--resume`). Values stay raw strings here; `convert` types them."""
    comments = field_comments(cls)
    bare = [f" [{p.metavar} ...]" for f in dataclasses.fields(cls) if (p := positional(cls, f.name))]
    parser = _Parser(prog=prog or ENTRY_POINTS.get(cls), usage=f"%(prog)s [--config FILE ...] [--key value ...]{''.join(bare)}",
                     description=cls.__doc__, allow_abbrev=False, add_help=False,
                     argument_default=argparse.SUPPRESS, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--help", action="store_true", help="list every option with its default")
    parser.add_argument("--config", action="append", metavar="FILE",
                        help="a recipe or saved config (YAML); repeat to apply several in order")
    defaults = cls()
    for group_cls in reversed(cls.__mro__):
        own = [f for f in dataclasses.fields(group_cls) if f.name in vars(group_cls).get("__annotations__", {})
               and f.name not in NOT_OPTIONS] if dataclasses.is_dataclass(group_cls) and group_cls is not cls else []
        if not own:
            continue
        group = parser.add_argument_group(group_cls.__doc__)
        for f in own:
            typ, allowed, rule = field_type(cls, f.name)
            if positional(cls, f.name):
                group.add_argument(f.name, nargs="*", metavar=positional(cls, f.name).metavar,
                                   help=comments.get(f.name, ""))
                continue
            extra = f" {{{'|'.join(allowed)}}}" if allowed else f" ({rule})" if rule else ""
            nargs = "*" if typing.get_origin(typ) is list else "?" if typ is bool else None
            group.add_argument(f"--{f.name}", nargs=nargs, const="true" if typ is bool else None, metavar="V",
                               help=f"{comments.get(f.name, '')}{extra} [default: {getattr(defaults, f.name)}]")
    return parser


def parse(argv: list[str] | None = None, cls=TrainConfig, prog: str | None = None):
    """Defaults, then each --config FILE in order, then the command line; checked. `prog` names the command in
    --help where it is not the config's own entry point (a bench taking train.py's options)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(cls, prog)
    after = argv[argv.index("--") + 1:] if "--" in argv else []  # after '--' come bare words only, '-x.jpg' too
    argv = argv[:len(argv) - len(after) - 1] if "--" in argv else argv
    for tok in argv:
        key = tok[2:].partition("=")[0] if tok.startswith("--") else None
        if key is not None and not is_option(cls, key) and key not in ("config", "help"):
            raise unknown_key_error(cls, key)
    bare = next((key for key in fields_of(cls) if positional(cls, key)), None)
    # bare words may come before, between or after the options: predict.py --run R a.jpg --out x.csv
    ns, rest = parser.parse_known_intermixed_args(argv) if bare else parser.parse_known_args(argv)
    if rest or (after and not bare):
        word = (rest or after)[0]
        hint = (f"; a {positional(cls, bare).metavar} starting with '-' goes after -- or as ./{word}"
                if bare and word.startswith("-") and not word.startswith("--") else "")
        raise ConfigError(f"unexpected argument {brief(word)}: options look like --key value{hint}")
    given = vars(ns)
    if after:
        given[bare] = [*given.get(bare, []), *after]
    if given.pop("help", False):
        print(parser.format_help())
        raise SystemExit(0)
    cfg = apply_recipes(cls(), given.pop("config", []))
    apply(cfg, given, "command line")
    return check_settings(cfg)


def parse_or_exit(argv: list[str] | None = None, cls=TrainConfig, prog: str | None = None):
    """parse(), with a bad setting as one line on stderr and exit code 2."""
    with fail_cleanly():
        return parse(argv, cls, prog)
