"""One photo through the page (app.py) against predict.py on the same photo, side by side.

    python -m bench.page --log_dir L --run R                 # the first eval photo of the run's data, 5 rounds
    python -m bench.page --log_dir L --run R --photo P --rounds 9

Rows (wall seconds; the requests and the processes alternate round by round, medians with min-max):
  page start         app.py started until its page answers (once)
  page, 1st photo    the first request: the engines and the Grad-CAM models load on demand (once)
  page               one request with one photo, the server warm: its decision and its three maps
  predict.py --cam   python predict.py --run R --cam DIR P: the whole process, with the same maps
  predict.py         the same without maps
A request goes through gradio_client (the page's own API, what the browser calls); both decide with predict.py's
Predictor and the same engine (--engine auto)."""
if __name__ == "__main__" and not __package__:  # by path, only this folder is on sys.path: rerun as a module
    import os
    import sys

    script = os.path.realpath(__file__)
    root, package = os.path.split(os.path.dirname(script))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH"))))
    os.execv(sys.executable, [sys.executable, "-P", "-m", f"{package}.{os.path.basename(script)[:-3]}", *sys.argv[1:]])

import argparse
import datetime
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(log_dir: Path, name: str, log: Path, *extra: str, wait_s: float = 180):
    """app.py for run `name` on a free port: (process, url) once its page answers; its output goes to `log`."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "app.py", "--log_dir", str(log_dir), "--run", name, "--port", str(port),
                             *extra], cwd=ROOT, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
    url, deadline = f"http://127.0.0.1:{port}/", time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"app.py did not answer within {wait_s:.0f} s:\n{log.read_text()[-3000:]}")


def ask(url: str, *photos: Path):
    """The page's predict API for these photos: (the decisions' markdown, ...) as the browser gets them."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False, analytics_enabled=False, download_files=False)
    return client.predict([handle_file(str(p)) for p in photos], None, api_name="/predict")


def timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def first_eval_photo(log_dir: Path, name: str) -> Path:
    """The first eval photo of info.csv in the data the run trained on (config.yaml's data_dir)."""
    import pandas as pd
    import yaml

    data = Path(yaml.safe_load((log_dir / name / "config.yaml").read_text())["data_dir"])
    return data / "eval" / "images" / pd.read_csv(data / "eval" / "info.csv", dtype=str)["ImageID"][0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--log_dir", type=Path, default=Path("logs"))
    parser.add_argument("--run", required=True)
    parser.add_argument("--photo", type=Path, help="default: the first eval photo of the run's data")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    photo = args.photo or first_eval_photo(args.log_dir, args.run)
    predict = [sys.executable, "predict.py", "--log_dir", str(args.log_dir), "--run", args.run, str(photo)]
    times = {"page": [], "predict.py --cam": [], "predict.py": []}
    with tempfile.TemporaryDirectory() as work:
        start = time.perf_counter()
        proc, url = serve(args.log_dir, args.run, Path(work) / "app.log")
        try:
            started = time.perf_counter() - start
            first = timed(lambda: ask(url, photo))
            for _ in range(args.rounds):
                times["page"].append(timed(lambda: ask(url, photo)))
                for row, extra in (("predict.py --cam", ["--cam", str(Path(work) / "maps")]), ("predict.py", [])):
                    times[row].append(timed(lambda: subprocess.run(predict + extra, cwd=ROOT, check=True,
                                                                   capture_output=True)))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(f"bench.page {datetime.date.today()}  run {args.log_dir / args.run}  photo {photo}  rounds {args.rounds}  "
          f"cpus {os.cpu_count()}")
    print("| what | wall s, median (min-max) | against the page |\n|---|---|---|")
    print(f"| page start | {started:.2f} | |\n| page, 1st photo | {first:.2f} | |")
    page = statistics.median(times["page"])
    for row, values in times.items():
        median = statistics.median(values)
        print(f"| {row} | {median:.2f} ({min(values):.2f}-{max(values):.2f}) | {median / page:.1f}x |")


if __name__ == "__main__":
    main()
