"""A page to try finished runs on photos and to look at a run (Gradio, on 127.0.0.1 by default).

    python app.py --run N [--port 7860] [--host 127.0.0.1] [--share] [--auth user:password]
    python app.py --runs N1 N2                 # an ensemble; the maps are the first run's
"""
import sys

from src.config.parsing import parse_or_exit
from src.config.schema import AppConfig
from src.errors import fail_cleanly


def main(argv=None) -> int:
    cfg = parse_or_exit(argv, AppConfig)
    with fail_cleanly():
        from src.insight.page import serve

        serve(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
