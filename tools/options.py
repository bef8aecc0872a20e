"""Write the option reference docs/options.md from the config schema:  python -m tools.options [--out FILE] [--check]

Every option of every entry point, by group, with its type, choices or range, default, help text and the entry
points that take it (src/config/reference.py renders it). Run it after changing src/config/schema.py. --check
writes nothing: it exits 1 when the file differs from what the schema generates, as tests/test_config_reference.py
does.
"""
if __name__ == "__main__" and not __package__:  # by path, only this folder is on sys.path: rerun as a module
    import os
    import sys

    script = os.path.realpath(__file__)
    root, package = os.path.split(os.path.dirname(script))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH"))))
    os.execv(sys.executable, [sys.executable, "-P", "-m", f"{package}.{os.path.basename(script)[:-3]}", *sys.argv[1:]])

import argparse
import sys
from pathlib import Path

OPTIONS_PAGE = Path(__file__).resolve().parent.parent / "docs" / "options.md"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=OPTIONS_PAGE, help="default docs/options.md")
    p.add_argument("--check", action="store_true", help="exit 1 when the file is stale; write nothing")
    a = p.parse_args(argv)

    from src.config.reference import markdown

    text = markdown()
    if a.check:
        stale = not a.out.is_file() or a.out.read_text() != text
        print(f"{a.out}: {'stale: run python -m tools.options' if stale else 'up to date'}")
        return int(stale)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(text)
    print(f"wrote {a.out} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
