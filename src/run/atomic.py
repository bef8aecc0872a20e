"""Atomic, durable writes: a temp file in the same folder, flushed to disk, then os.replace, so neither a
crash nor a power cut leaves half a file, and files written together are all old or all new. A full disk is one
clear error and the previous file stays; a read-only disk or a missing permission is one line too."""
from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from src.errors import REPLACING, FileSystemError, NoSpace, filesystem_error
from src.files import read_json

TMP_NAME = re.compile(r".*\.(\d+)\.tmp$")  # <name>.<pid>.tmp: the writer's pid tells a stale file
MOVES_NAME = re.compile(r".*\.(\d+)\.moves$")  # the journal of replace_together's moves


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
    replace_together({Path(path): write})


def replace_together(writes: dict):
    """{path: write(tmp_path)}: every file is written to its temp file and synced first, then all are moved into
    place, so a failure or a kill while writing leaves every old file. With several files a journal lists the
    moves while they happen: a writer killed among them is completed by the next remove_stale_tmp, so the files
    are all old or all new."""
    tmps = {Path(path): _tmp(Path(path)) for path in writes}
    journal = _tmp(next(iter(tmps))).with_suffix(".moves") if len(tmps) > 1 else None
    current = None
    try:
        for path, write in writes.items():
            current = Path(path)
            current.parent.mkdir(parents=True, exist_ok=True)
            write(tmps[current])
            with open(tmps[current], "rb+") as f:
                os.fsync(f.fileno())
        if journal is not None:
            current = journal
            journal.write_text(json.dumps([[str(t), str(p)] for p, t in tmps.items()]))
        with REPLACING:  # a signal's last line waits for these moves, and none starts after it
            for path, tmp in tmps.items():
                current = path
                os.replace(tmp, path)
        for folder in dict.fromkeys(p.parent for p in tmps):
            _fsync_dir(folder)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            intact = f"the previous {current.name} is intact" if current.exists() else f"no {current.name} was written"
            raise NoSpace(f"no space left on device while writing {current}; {intact}") from None
        raise filesystem_error(e, current, "write") from None
    finally:
        for leftover in [*tmps.values(), *([journal] if journal is not None else [])]:
            with contextlib.suppress(OSError):  # a read-only disk refuses even this: the error above says why
                leftover.unlink(missing_ok=True)


def check_writable(folder: Path):
    """Make folder if needed and write a temp file into it, before any long work: one line if it cannot be."""
    probe = _tmp(Path(folder) / "probe")
    existing = next(p for p in (Path(folder), *Path(folder).parents) if os.path.lexists(p))
    if not existing.is_dir():  # no permission would help: say what is in the way
        what = "it is" if existing == Path(folder) else f"{existing} is"
        raise FileSystemError(f"{folder}: expected a folder, but {what} a file; choose another --log_dir or --out")
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise filesystem_error(e, folder, "write into") from None


def write_bytes(data, tmp):
    with open(tmp, "wb") as f:
        f.write(data)


def save_torch(obj, path):
    import torch  # here, not at the top: the tools and benches that only read a run folder start without torch

    # serialised in memory first: torch's own file writer reports a full disk as "iostream error"
    buf = io.BytesIO()
    torch.save(obj, buf)
    replace_with(path, lambda tmp: write_bytes(buf.getbuffer(), tmp))


def csv_writer(df: pd.DataFrame, **kwargs):
    return lambda tmp: df.to_csv(tmp, index=False, **kwargs)


def text_writer(text: str):
    return lambda tmp: Path(tmp).write_text(text)


def save_csv(df: pd.DataFrame, path, **kwargs):
    replace_with(path, csv_writer(df, **kwargs))


def save_npz(arrays: dict, path):
    """numpy arrays in one .npz, serialised in memory first like save_torch."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    replace_with(path, lambda tmp: write_bytes(buf.getbuffer(), tmp))


def save_text(text: str, path):
    replace_with(path, text_writer(text))


def remove_stale_tmp(folder: Path) -> list[Path]:
    """Finish the moves of writers killed among them (their .moves journal), then delete temp files left by writers
    that no longer run (a kill mid-write); returns the deleted temp files."""
    for journal in Path(folder).glob(".*.moves"):
        m = MOVES_NAME.match(journal.name)
        if m and not pid_alive(int(m.group(1))):
            try:
                moves = read_json(journal)
            except ValueError:  # killed while writing the journal: no move had started
                moves = []
            for tmp, path in moves:
                if Path(tmp).exists():
                    os.replace(tmp, path)
            journal.unlink(missing_ok=True)
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
