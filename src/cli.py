"""What entry points share: turning the project's known failures into one clear line and an exit code."""
import contextlib
import sys


@contextlib.contextmanager
def fail_cleanly():
    from src.atomic import NoSpace
    from src.checkpoint import CheckpointError
    from src.config import ConfigError
    from src.data import DataError
    from src.forward import NonFinite
    from src.model import ModelError
    from src.rundir import RunBusy, RunExists

    try:
        yield
    except DataError as e:
        if len(e.problems) == 1:
            print(f"error: bad input data: {e.problems[0]}", file=sys.stderr)
        else:
            print(f"error: bad input data ({len(e.problems)} problems):\n{e}", file=sys.stderr)
        raise SystemExit(1)
    except (ConfigError, RunExists, RunBusy, ModelError, NonFinite, CheckpointError, NoSpace,
            FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2 if isinstance(e, ConfigError) else 1)
