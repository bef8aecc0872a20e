"""The one error base of maskcls, and the one place that turns it into a line on stderr and an exit code.

A domain error says, in one line, the file (and row) or setting at fault and what to do; it carries its
exit code. Built-in exceptions are never raised as domain errors, so a stray one keeps its traceback.
"""
from __future__ import annotations

import contextlib
import sys


class MaskclsError(Exception):
    """A known failure: its message is one line (DataError: one line per problem) and its exit code."""
    exit_code = 1
    prefix = "error"

    def lines(self) -> list[str]:
        return [f"{self.prefix}: {self}"]


class ConfigError(MaskclsError):
    """A setting, recipe or command line that cannot be used as given; `key` names the setting when one is at fault."""
    exit_code = 2

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


class InvalidTrial(ConfigError):
    """A sweep trial whose combination of searched settings train.py refuses: that trial fails, the sweep goes on."""


class DataError(MaskclsError):
    """Bad input data: each problem names the file it is in and what was expected."""

    def __init__(self, problems: list[str] | str):
        if isinstance(problems, str):
            problems = [worker_problem(problems)]
        self.problems = list(problems)
        super().__init__("\n".join(f"  - {p}" for p in self.problems))

    def __reduce__(self):  # pickles as its problem list, not as the joined message
        return DataError, (self.problems,)

    def lines(self) -> list[str]:
        if len(self.problems) == 1:
            return [f"error: bad input data: {self.problems[0]}"]
        return [f"error: bad input data ({len(self.problems)} problems):\n{self}"]


def worker_problem(text: str) -> str:
    """A DataLoader worker re-raises DataError(formatted traceback); keep only the original problem."""
    if "Traceback" not in text:
        return text
    tail = text.rstrip().rsplit("DataError:", 1)[-1]
    return "; ".join(line.strip().removeprefix("- ") for line in tail.splitlines() if line.strip())


class ModelError(MaskclsError):
    """The configured network cannot be built: an unknown name, or an input size the architecture cannot take."""


class ParityError(ModelError):
    """An exported graph whose probabilities differ from PyTorch's by more than the tolerance."""


class PretrainedError(ModelError):
    """The configured weights cannot be had or do not fit the architecture."""


class CheckpointError(MaskclsError):
    """A checkpoint that cannot be read safely or is not of the expected kind."""


class RunExists(MaskclsError):
    """A run name that is taken, without --resume or --overwrite."""


class RunBusy(MaskclsError):
    """A run or fold lock held by another live process."""


class RunNotFound(MaskclsError):
    """A run, fold or checkpoint that prediction needs and that is not there."""


class NoSpace(MaskclsError):
    """The disk filled up while writing; the previous file is intact."""


class NonFinite(MaskclsError):
    """A NaN or infinity where a result was expected: never written as a result."""


class FileSystemError(MaskclsError):
    """A file or folder that cannot be read or written (read-only disk, no permission): the path and what to do."""


def filesystem_error(error: OSError, path, doing: str) -> FileSystemError:
    """One line for an OSError of the file system: what failed on which path, why, and what to do."""
    reason = error.strerror or str(error) or type(error).__name__
    return FileSystemError(f"cannot {doing} {path} ({reason}); make that place writable, or choose another "
                           f"--log_dir or --out")


class Interrupted(MaskclsError):
    """Ctrl-C or SIGTERM: training stopped at once; what was saved is intact."""

    def __init__(self, message: str, signal_name: str = "SIGINT"):
        super().__init__(message)
        self.exit_code = 143 if signal_name == "SIGTERM" else 130

    def lines(self) -> list[str]:
        return [str(self)]


@contextlib.contextmanager
def fail_cleanly():
    """Entry points: a MaskclsError becomes its lines on stderr and its exit code; anything else propagates."""
    try:
        yield
    except MaskclsError as e:
        for line in e.lines():
            print(line, file=sys.stderr)
        raise SystemExit(e.exit_code) from None
