"""The maskcls logger: short lines on the console (through tqdm, so progress bars stay intact) and timestamped
lines in a run's train.log. A record with `extra=FILE_ONLY` goes to train.log alone (the per-epoch confusion
matrix), one with `extra=CONSOLE_ONLY` to the console alone."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from tqdm import tqdm

log = logging.getLogger("maskcls")
FILE_ONLY, CONSOLE_ONLY = {"only": "file"}, {"only": "console"}


class _Only(logging.Filter):
    def __init__(self, place: str):
        super().__init__()
        self.place = place

    def filter(self, record) -> bool:
        return getattr(record, "only", self.place) == self.place


class _TqdmHandler(logging.StreamHandler):
    def emit(self, record):
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging must never take a run down
            self.handleError(record)


class _FileHandler(logging.FileHandler):
    def handleError(self, record):
        pass  # a full or read-only disk: the console still has the line, and no traceback buries it


def setup_logging(log_file: Path | None = None, main: bool = True):
    """Console lines; with `log_file`, timestamped lines there too. Other ranks than the main one log errors only."""
    log.handlers.clear()
    log.setLevel(logging.INFO if main else logging.ERROR)  # rank 0 speaks for the run; the others only of errors
    log.propagate = False
    console = _TqdmHandler()
    console.setFormatter(logging.Formatter("%(message)s"))
    console.addFilter(_Only("console"))
    log.addHandler(console)
    if log_file is not None and main:
        fh = _FileHandler(log_file)
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        fh.addFilter(_Only("file"))
        log.addHandler(fh)
