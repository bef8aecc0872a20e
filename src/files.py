"""Reading a file named by untrusted data: only a regular file is read, and opening never blocks (a named pipe
or a device is a problem naming it, not a hang). YAML and JSON that a user or a run folder hands in are parsed
with limits: no YAML alias (an anchor can expand without end), bounded nesting and size."""
from __future__ import annotations

import hashlib
import json
import math
import os
import stat
import sys
from pathlib import Path

import yaml

MAX_NESTING = 64  # of lists and mappings in a YAML file; settings need a handful
MAX_DOCUMENT_BYTES = 256 * 2**20  # the largest YAML or JSON file read (face boxes of a big image set fit)
KINDS = {stat.S_IFIFO: "a named pipe", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
         stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a folder"}


def kind_of(mode: int) -> str:
    return KINDS.get(stat.S_IFMT(mode), "not a regular file")


def irregular(path) -> str | None:
    """Why `path` (symlinks followed) is not a regular file that exists, or None."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "not found"
    except OSError as e:
        return f"cannot be read ({e.strerror})"
    return None if stat.S_ISREG(mode) else f"is {kind_of(mode)}, not a regular file"


def read_regular(path) -> bytes:
    """The bytes of a regular file. Raises OSError (ENOENT, EACCES...) or ValueError naming what the path is
    instead; O_NONBLOCK keeps a named pipe from blocking the open."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ValueError(f"is {kind_of(mode)}, not a regular file")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read()
    finally:
        os.close(fd)


def real(path) -> Path:
    """The path with every symlink followed. Unlike Path.resolve, a symlink loop is no exception: the looping part
    stays as it is, and reading it later fails as any unreadable file does."""
    return Path(os.path.realpath(path))


def within(path, root) -> bool:
    """Whether path, its symlinks followed, lies inside root (also followed); nothing is opened."""
    return real(path).is_relative_to(real(root))


def is_regular(path: Path) -> bool:
    return irregular(path) is None


def shown(name) -> str:
    """A name as a message shows it: quoted when spaces at its ends or unprintable characters would hide."""
    text = str(name)
    return repr(text) if text != text.strip() or not text.isprintable() else text


def read_document(path) -> str:
    """A regular file's text (undecodable bytes replaced), refused above MAX_DOCUMENT_BYTES."""
    size = os.stat(path).st_size
    if size > MAX_DOCUMENT_BYTES:
        raise ValueError(f"is {size:,} bytes, more than the {MAX_DOCUMENT_BYTES:,} such a file may hold")
    return read_regular(path).decode("utf-8", errors="replace")


def load_yaml(text: str):
    """yaml.safe_load, after the event stream showed no alias and no nesting deeper than MAX_NESTING. Raises
    yaml.YAMLError for bad YAML, ValueError for what the limits refuse."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            raise ValueError(f"uses the YAML alias *{event.anchor}, which is not accepted (aliases can expand "
                             f"without limit); write the value out")
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_NESTING:
                raise ValueError(f"nests lists or mappings more than {MAX_NESTING} deep")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return yaml.safe_load(text)


def json_int(digits: str) -> int | float:
    """An integer of a JSON file; one too long for Python to convert (thousands of digits) is an infinity of its sign,
    so that the check of the value it is, not the whole file, refuses it."""
    if len(digits.lstrip("-")) <= sys.get_int_max_str_digits():
        return int(digits)
    return -math.inf if digits.startswith("-") else math.inf


def load_json(text: str | bytes):
    """json.loads, with nesting too deep for the decoder a ValueError instead of a RecursionError."""
    try:
        return json.loads(text, parse_int=json_int)
    except RecursionError:
        raise ValueError("nests lists or objects too deep to read") from None


def read_yaml(path):
    """A YAML file's value through load_yaml's limits; OSError, ValueError or yaml.YAMLError when it cannot be."""
    return load_yaml(read_document(path))


def read_json(path):
    """A JSON file's value through load_json's limits; OSError or ValueError when it cannot be."""
    return load_json(read_document(path))


def read_object(path, read=read_json) -> dict | None:
    """A JSON (or `read`'s) file's object, or None while it is missing, unreadable or not an object."""
    try:
        data = read(path)
    except (OSError, ValueError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


FINGERPRINT_BYTES = 8 << 20  # files up to this size are told apart by content, larger ones by size and time


def file_digest(path) -> str:
    """A file's SHA-256, read a megabyte at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint(path) -> str | None:
    """What tells a file's versions apart: its content's SHA-256, or size and time for a large file; None if absent."""
    try:
        stat = Path(path).stat()
        return f"{stat.st_size}:{stat.st_mtime_ns}" if stat.st_size > FINGERPRINT_BYTES else file_digest(path)
    except OSError:
        return None


def mtime_ms(path) -> int | None:
    """A file's modification time in milliseconds, or None when it is absent."""
    try:
        return int(Path(path).stat().st_mtime * 1000)
    except OSError:
        return None
