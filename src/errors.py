"""The one error base of maskcls, and the one place that turns it, or Ctrl-C and SIGTERM, into a line on stderr
and an exit code.

A domain error says, in one line, the file (and row) or setting at fault and what to do; it carries its
exit code. Built-in exceptions are never raised as domain errors, so a stray one keeps its traceback.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import socket
import sys
import threading


def first_line(error: Exception) -> str:
    """An exception's message as one short line."""
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


def brief(value, limit: int = 60) -> str:
    """repr(value) for a message, cut to `limit` characters: a value read from a file never floods the line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


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


class GroupLost(MaskclsError):
    """Under torchrun, a rank or node of the process group went away (killed, or its machine lost): this rank stops."""
    exit_code = 3  # src/engine/launch.py tells it from the other errors by it


class TrackerError(MaskclsError):
    """A tracker (MLflow, W&B) that did not take what python -m tools.track sent; the run folder keeps it to send again."""


def exit_code(signal_name: str) -> int:
    return 143 if signal_name == "SIGTERM" else 130


class Interrupted(MaskclsError):
    """Ctrl-C or SIGTERM: training stopped at once; what was saved is intact."""

    def __init__(self, message: str, signal_name: str = "SIGINT"):
        super().__init__(message)
        self.exit_code = exit_code(signal_name)

    def lines(self) -> list[str]:
        return [str(self)]


SIGNALLED: set[int] = set()  # the signals interruptible() has received; training checks it again at every batch
GRACE_S = 2.0  # after a signal, how long the stack has to unwind before the process ends anyway
_DEPTH = [0]  # interruptible() blocks open in this process: the deadline is lifted when the outermost one ends
_DEADLINE: list[threading.Event] = []  # the running deadline's event: set when the outermost block has ended
_ARMING = threading.Lock()  # the signal's handler and its watcher both arm the deadline: once
_DESCRIBE: list = []  # each open interruptible() block's describe: the innermost one says what was interrupted
# Held around each atomic replace (src/run/atomic.py). The deadline takes it before its last line and ends the process
# holding it, so what that line says of the files (which last.pt is intact) is what the disk keeps.
REPLACING = threading.Lock()


class TermSignal(BaseException):
    """SIGTERM, raised where it arrives so that the stack unwinds as it does for Ctrl-C."""


def nothing_half_written(signal_name: str) -> str:
    return (f"interrupted ({signal_name}); every output is replaced whole or not at all, so nothing was left "
            f"half-written")


def arm_deadline(describe, signal_name: str):
    """End the process GRACE_S after a signal if its exception has not left the outermost block by then: an
    exception raised inside a __del__ (a loader's teardown) or a finaliser is printed and ignored by Python, and the
    work would go on. Every output is replaced whole, so ending there leaves nothing half-written."""
    with _ARMING:
        if _DEADLINE or not _DEPTH[0]:  # armed already, or every block has ended: nothing left to bound
            return
        lifted = threading.Event()
        _DEADLINE.append(lifted)

    def end_if_still_running():
        if not lifted.wait(GRACE_S):
            REPLACING.acquire(timeout=GRACE_S)  # no file is replaced after this: the line stays true
            os.write(2, (describe(signal_name) + "\n").encode())  # no lock the stuck thread may hold
            for child in multiprocessing.active_children():  # loader workers would only notice within seconds
                child.terminate()
            os._exit(exit_code(signal_name))

    threading.Thread(target=end_if_still_running, name="signal-deadline", daemon=True).start()


def quiet_about_signals(unraisable):
    """A signal's exception that Python ignores (raised in a __del__) is not printed: the deadline says it in one line."""
    if not isinstance(unraisable.exc_value, (KeyboardInterrupt, TermSignal)):
        sys.__unraisablehook__(unraisable)


def lift_deadline():
    with _ARMING:
        while _DEADLINE:
            _DEADLINE.pop().set()


@contextlib.contextmanager
def watching():
    """Arm the deadline the moment a signal arrives. Python runs a signal's handler only once the main thread is back
    in the interpreter, which a long operation (a convolution's backward pass, a join) can delay for seconds; the C
    handler's byte on a wakeup socket wakes this thread at once."""
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    main_pid = os.getpid()

    def watch():
        while data := reader.recv(16):
            names = [signal.Signals(b).name for b in data if b in (signal.SIGINT, signal.SIGTERM)]
            describing = _DESCRIBE[-1:]  # empty once the block has ended: the signal is the caller's again
            if names and describing and os.getpid() == main_pid:
                arm_deadline(describing[0], "SIGTERM" if "SIGTERM" in names else names[0])

    thread = threading.Thread(target=watch, name="signal-watch", daemon=True)
    thread.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous)
        reader.shutdown(socket.SHUT_RDWR)  # the watcher's recv returns empty (closing the writer would not: forked
        thread.join()                      # loader workers hold copies of it)
        reader.close()
        writer.close()


def no_wakeup_in_child():
    """A forked loader worker must not wake its parent's watcher with the signals the worker alone receives."""
    with contextlib.suppress(ValueError):  # not the main thread: Python refuses, and nothing was inherited
        signal.set_wakeup_fd(-1)


os.register_at_fork(after_in_child=no_wakeup_in_child)


@contextlib.contextmanager
def interruptible(describe=nothing_half_written):
    """Ctrl-C and SIGTERM end the block at once as Interrupted(describe(signal name)): one line and exit codes
    130 and 143, within GRACE_S of the signal wherever it lands (arm_deadline, armed by `watching`). Loader workers
    fork with the handler: there SIGTERM ends the worker quietly as Ctrl-C does. Outside the main thread signals
    cannot be caught, and the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _DEPTH[0]:  # an inner block: the outermost one's handlers and watcher stay
        with _interruptible(describe):
            yield
        return
    with watching(), _interruptible(describe):
        yield


@contextlib.contextmanager
def _interruptible(describe):
    main_pid = os.getpid()
    if not _DEPTH[0]:
        SIGNALLED.clear()

    def on_signal(signum, _frame):
        SIGNALLED.add(signum)
        if os.getpid() != main_pid:
            raise KeyboardInterrupt()
        name = signal.Signals(signum).name
        arm_deadline(describe, name)
        raise TermSignal() if signum == signal.SIGTERM else KeyboardInterrupt()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    if not _DEPTH[0]:
        sys.unraisablehook = quiet_about_signals
    _DEPTH[0] += 1
    _DESCRIBE.append(describe)
    try:
        yield
        stop_if_signalled()  # a signal whose exception was swallowed on the way still ends the block as one
    except (KeyboardInterrupt, TermSignal) as e:
        name = "SIGTERM" if isinstance(e, TermSignal) else "SIGINT"
        raise Interrupted(describe(name), name) from None
    finally:
        _DESCRIBE.pop()
        with _ARMING:
            _DEPTH[0] -= 1
        if not _DEPTH[0]:
            lift_deadline()
            sys.unraisablehook = sys.__unraisablehook__
        for s, handler in previous.items():
            signal.signal(s, handler)


def stop_if_signalled():
    """Raise again a signal whose exception was swallowed where it landed (a loader's __del__ ignores exceptions)."""
    if SIGNALLED:
        raise TermSignal() if signal.SIGTERM in SIGNALLED else KeyboardInterrupt()


@contextlib.contextmanager
def fail_cleanly():
    """Entry points: a MaskclsError, Ctrl-C and SIGTERM included, becomes its lines on stderr and its exit code;
    anything else propagates."""
    try:
        with interruptible():
            yield
    except MaskclsError as e:
        for line in e.lines():
            print(line, file=sys.stderr)
        raise SystemExit(e.exit_code) from None
