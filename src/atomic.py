"""Atomic writes: a temp file in the same folder, then os.replace, so a crash never leaves half a file."""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import torch


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def replace_with(path, write):
    """Call write(tmp_path), then move tmp over path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_torch(obj, path):
    replace_with(path, lambda tmp: torch.save(obj, tmp))


def save_csv(df: pd.DataFrame, path, **kwargs):
    replace_with(path, lambda tmp: df.to_csv(tmp, index=False, **kwargs))


def save_text(text: str, path):
    replace_with(path, lambda tmp: Path(tmp).write_text(text))
