"""The option reference (docs/options.md), rendered from the schema: every group of settings in the order
schema.py declares them, each option with its type, choices or range, default, help text (the field's trailing
comment, as --help shows it) and the entry points that take it. `python -m tools.options` writes it; a test
compares it with what this module renders, so it never drifts from the schema."""
from __future__ import annotations

import dataclasses
import textwrap

from src.config import schema
from src.config.parsing import NOT_OPTIONS, field_comments, field_type, needs, positional
from src.config.schema import ENTRY_POINTS, SET, AgeSpan, Box, Choices, Name, Range

WIDTH = 119  # the docs' longest line
HEADER = """# Options

```bash
python train.py --help                 # the options of one entry point, as below
python -m tools.options                # regenerate this page after changing src/config/schema.py
python -m tools.options --check        # exit 1 when this page is stale
```

Every setting of every entry point, by group. Generated from `src/config/schema.py` by `python -m tools.options`:
edit the schema (a field's trailing comment is its help text), then run the command. A test fails while this page
differs from what the schema generates.

An option is given as `--key value` (or `--key=value`) on the command line or as `key: value` in a recipe
(`--config FILE`, see [configuration.md](configuration.md)). Booleans take true/false/1/0 or stand bare
(`--resume`); lists take several values or commas. `python <entry point> --help` prints the same options.
"""


def groups() -> list[type]:
    """The setting groups, in the order schema.py declares them: dataclasses that entry points are built from."""
    entries = set(ENTRY_POINTS)
    used = {g for cls in entries for g in cls.__mro__ if dataclasses.is_dataclass(g) and g not in entries}
    return [g for g in vars(schema).values() if isinstance(g, type) and g in used]


def own_fields(group: type) -> list[str]:
    """The options a group declares itself (not those of its bases, nor those --config sets)."""
    return [k for k in vars(group).get("__annotations__", {}) if k not in NOT_OPTIONS]


def entry_points(group: type) -> list[str]:
    return [script for cls, script in ENTRY_POINTS.items() if group in cls.__mro__]


def kind(group: type, key: str) -> str:
    """What a value of the option looks like: its choices, its range, or its type."""
    typ, allowed, rule = field_type(group, key)
    if allowed:
        return " | ".join(map(str, allowed))
    if isinstance(rule, (AgeSpan, Box, Choices)):
        return str(rule)
    if isinstance(rule, Name):
        return "run names" if isinstance(getattr(group(), key), list) else "a run name"
    if typ is bool:
        return "true | false"
    if typ in (int, float):
        word = "integer" if typ is int else "number"
        return f"{word} {rule}" if isinstance(rule, Range) and str(rule) != "finite" else word
    if getattr(typ, "__args__", None):
        inner = typ.__args__[0]
        return {int: "integers", float: "numbers"}.get(inner, "words")
    return "text"


def shown(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return " ".join(map(shown, value)) if value else "(none)"
    return str(value) if value != "" else "(empty)"


def condition(group: type, key: str) -> str:
    rule = needs(group, key)
    if rule is None:
        return ""
    def told(values) -> str:
        return "|".join("..." if v == SET else shown(v) for v in values)

    return "; has an effect only with " + " or ".join(f"`--{k} {told(values)}`" for k, values in rule.conditions)


def option_line(group: type, key: str, comments: dict[str, str]) -> str:
    bare = positional(group, key)
    name = f"{bare.metavar} ..." if bare else f"--{key}"
    default = "" if bare else f"; default `{shown(getattr(group(), key))}`"
    text = f"- `{name}` ({kind(group, key)}{default}{condition(group, key)}): {comments.get(key, '')}"
    return textwrap.fill(text, WIDTH, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False)


def markdown() -> str:
    """docs/options.md as the schema defines it."""
    parts = [HEADER]
    for group in groups():
        keys = own_fields(group)
        if not keys:
            continue
        entry = next(cls for cls in ENTRY_POINTS if group in cls.__mro__)
        comments = field_comments(entry)
        title = group.__doc__.strip()
        parts.append(f"## {title[0].upper()}{title[1:]}\n\nTaken by: {', '.join(entry_points(group))}.\n")
        parts.append("\n".join(option_line(group, k, comments) for k in keys) + "\n")
    return "\n".join(parts)
