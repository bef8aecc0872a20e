"""Send a run folder to experiment trackers:  python -m tools.track --run R [--log_dir logs]
                                                [--tracker mlflow,wandb] [--tracking_uri URI] [--experiment E]

The run folder is the record: its config, each fold's metrics.csv rows (as far as its last.pt), cv.json's figures,
the confusion figures, errors.png, a sweep trial's state and what infer and export recorded go to the trackers the
run's tracking.json names and to those --tracker adds. What a tracker already holds is not sent again, so a run
trained with --tracker none, or while the server was down, is added once and a second call changes nothing. It is
the same sending that live training does; see docs/tracking.md.
"""
if __name__ == "__main__" and not __package__:  # by path, only this folder is on sys.path: rerun as a module
    import os
    import sys

    script = os.path.realpath(__file__)
    root, package = os.path.split(os.path.dirname(script))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH"))))
    os.execv(sys.executable, [sys.executable, "-P", "-m", f"{package}.{os.path.basename(script)[:-3]}", *sys.argv[1:]])

import sys

from src.config.parsing import parse_or_exit
from src.config.schema import TrackConfig
from src.errors import fail_cleanly


def main(argv=None) -> int:
    cfg = parse_or_exit(argv, TrackConfig)
    with fail_cleanly():
        from src.run.logging import setup_logging
        from src.run.tracking import replay

        setup_logging()
        for line in replay(cfg):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
