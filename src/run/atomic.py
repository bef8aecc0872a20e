"""Atomic, durable writes: a temp file in the same folder, flushed to disk, then os.replace, so neither a
crash nor a power cut leaves half a file. A full disk is one clear error and the previous file stays."""
from __future__ import annotations

import errno
import io
import os
import re
from pathlib import Path

import pandas as pd
import torch

from src.errors import NoSpace

TMP_NAME = re.compile(r".*\.(\d+)\.tmp$")  # <name>.<pid>.tmp: the writer's pid tells a stale file


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _fsync_dir(folder: Path):
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_with(path, write):
    """Call write(tmp_path), fsync it, move it over path, fsync the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            intact = f"the previous {path.name} is intact" if path.exists() else f"no {path.name} was written"
            raise NoSpace(f"no space left on device while writing {path}; {intact}") from None
        raise
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(data, tmp):
    with open(tmp, "wb") as f:
        f.write(data)


def save_torch(obj, path):
    # serialised in memory first: torch's own file writer reports a full disk as "iostream error"
    buf = io.BytesIO()
    torch.save(obj, buf)
    replace_with(path, lambda tmp: write_bytes(buf.getbuffer(), tmp))


def save_csv(df: pd.DataFrame, path, **kwargs):
    replace_with(path, lambda tmp: df.to_csv(tmp, index=False, **kwargs))


def save_text(text: str, path):
    replace_with(path, lambda tmp: Path(tmp).write_text(text))


def remove_stale_tmp(folder: Path) -> list[Path]:
    """Delete temp files left by writers that no longer run (a kill mid-write); returns them."""
    removed = []
    for f in Path(folder).glob("*.tmp"):
        m = TMP_NAME.match(f.name)
        if m and not pid_alive(int(m.group(1))):
            f.unlink(missing_ok=True)
            removed.append(f)
    return removed


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
