"""What entry points share: turning the project's known failures into one clear line and an exit code."""
import contextlib
import sys


@contextlib.contextmanager
def fail_cleanly():
    from src.config import ConfigError
    from src.data import DataError
    from src.model import PretrainedError
    from src.rundir import RunExists
    from src.trainer import NonFiniteLoss

    try:
        yield
    except DataError as e:
        print(f"error: bad input data:\n{e}", file=sys.stderr)
        raise SystemExit(1)
    except (ConfigError, RunExists, PretrainedError, NonFiniteLoss, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2 if isinstance(e, ConfigError) else 1)
