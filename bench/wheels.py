"""The packages bench/gpu.sh needs beyond the device image's, carried there as wheels in .whl/ (it has no internet).

    python -m bench.wheels fetch [--dest .whl]                 with internet: each pinned wheel for CPython 3.12 on
                                                               manylinux x86_64, without dependencies
    python -m bench.wheels install --target DIR [--dest .whl]  on the device: the wheels whose distribution is missing
                                                               there or older than pinned, into DIR (put it first on
                                                               PYTHONPATH); prints what it installed

The image has Python 3.12 with torch, torchvision, timm (and its dependencies), opencv, numpy, scipy, pandas,
scikit-learn, pillow and onnxruntime. What the CUDA tests, the throughput bench and a baseline epoch import besides
is pinned below, each at requirements.txt's version or, for a dependency, the version installed with it;
tests/test_bench_wheels.py checks that every runtime dependency of a pinned package is pinned or the image's.
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:  # by path, only this folder is on sys.path: rerun as a module
    import os
    import sys

    script = os.path.realpath(__file__)
    root, package = os.path.split(os.path.dirname(script))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH"))))
    os.execv(sys.executable, [sys.executable, "-P", "-m", f"{package}.{os.path.basename(script)[:-3]}", *sys.argv[1:]])

import argparse
import importlib.metadata as md
import os
import re
import subprocess
import sys
from pathlib import Path

PINNED = {
    # augmentation: albumentations and its small dependencies
    "albumentations": "2.0.8", "albucore": "0.0.24", "pydantic": "2.14.4", "pydantic_core": "2.50.5",
    "annotated-types": "0.8.0", "typing-inspection": "0.4.5", "typing_extensions": "4.16.0", "simsimd": "6.5.16",
    "stringzilla": "5.3.2", "PyYAML": "6.0.4", "tqdm": "4.70.1",
    # a training run's records: TensorBoard scalars and figures, confusion matrices and previews through matplotlib
    "tensorboard": "2.21.0", "absl-py": "2.5.1", "protobuf": "7.36.2", "matplotlib": "3.11.2", "contourpy": "1.3.3",
    "cycler": "0.12.1", "fonttools": "4.68.0", "kiwisolver": "1.5.1", "pyparsing": "3.3.3",
    "python-dateutil": "2.9.0.post0", "six": "1.17.0", "packaging": "26.4",
    # export.py and infer's onnxruntime engine: torch's ONNX exporter needs onnx
    "onnx": "1.23.2", "ml_dtypes": "0.7.0",
    # the CUDA tests
    "pytest": "9.2.0", "iniconfig": "2.3.1", "pluggy": "1.7.0", "Pygments": "2.21.0",
    # the image has a timm, but the code and the tests' model (test_efficientnet) are the pinned one's
    "timm": "1.0.31",
}
IMAGE = ("torch", "torchvision", "huggingface_hub", "safetensors", "opencv-python-headless", "numpy", "scipy",
         "pandas", "scikit-learn", "pillow", "onnxruntime", "setuptools")
# declared by tensorboard but never imported by a SummaryWriter (its server's): not carried
UNUSED = ("grpcio", "markdown", "werkzeug", "tensorboard-data-server")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def version_key(version: str) -> tuple:
    """Enough of PEP 440 for these pins: the release numbers, then the rest (a .post1 sorts after the release)."""
    release = re.match(r"\d+(\.\d+)*", version)
    numbers = tuple(int(n) for n in release.group().split(".")) if release else ()
    return numbers + (0,) * (6 - len(numbers)) + (version[release.end() if release else 0:],)


def needed() -> list[str]:
    """The pinned distributions this Python lacks, or has at an older version."""
    out = []
    for dist, version in PINNED.items():
        try:
            have = md.version(dist)
        except md.PackageNotFoundError:
            out.append(dist)
            continue
        if version_key(have) < version_key(version):
            out.append(dist)
    return out


def wheel_file(dest: Path, dist: str) -> Path:
    """The pinned wheel of dist in dest (a wheel's name is NAME-VERSION-TAGS.whl)."""
    found = [p for p in dest.glob("*.whl") if [normal(p.name.split("-")[0]), p.name.split("-")[1]]
             == [normal(dist), PINNED[dist]]]
    if not found:
        raise SystemExit(f"error: {dist}=={PINNED[dist]} is needed here but {dest}/ has no wheel of it: run "
                         f"`bash bench/gpu.sh --fetch-wheels` where there is internet and carry {dest}/ along")
    return found[0]


def fetch(dest: Path):
    dest.mkdir(exist_ok=True)
    platforms = [a for p in PLATFORMS for a in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(dest),
                    *(f"{d}=={v}" for d, v in PINNED.items())], check=True)
    files = sorted(dest.glob("*.whl"))
    print(f"{len(files)} wheels in {dest}/, {sum(f.stat().st_size for f in files) / 2**20:.1f} MiB")


def install(dest: Path, target: Path):
    missing = needed()
    if not missing:
        print("wheels: every pinned package is here")
        return
    files = [wheel_file(dest, d) for d in missing]
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--upgrade",
                    "--target", str(target), *map(str, files)], check=True,
                   env={**os.environ, "PIP_ROOT_USER_ACTION": "ignore"})
    print(f"wheels: installed into {target}: {' '.join(f'{d}=={PINNED[d]}' for d in missing)}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["fetch", "install", "needed"])
    p.add_argument("--dest", default=".whl", help="the wheel folder")
    p.add_argument("--target", help="install: the folder the wheels go into")
    a = p.parse_args(argv)
    if a.action == "fetch":
        fetch(Path(a.dest))
    elif a.action == "needed":
        print(" ".join(needed()))
    else:
        if not a.target:
            p.error("install needs --target DIR")
        install(Path(a.dest), Path(a.target))


if __name__ == "__main__":
    main()
