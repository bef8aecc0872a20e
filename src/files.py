"""Reading a file named by untrusted data: only a regular file is read, and opening never blocks (a named pipe
or a device is a problem naming it, not a hang)."""
from __future__ import annotations

import os
import stat
from pathlib import Path

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


def is_regular(path: Path) -> bool:
    return irregular(path) is None


def shown(name) -> str:
    """A name as a message shows it: quoted when spaces at its ends or unprintable characters would hide."""
    text = str(name)
    return repr(text) if text != text.strip() or not text.isprintable() else text
