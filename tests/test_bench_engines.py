"""bench/engines.py: both engines' rows, their ratio, and the whole-process infer rows."""
import shutil

import pytest

from tests.helpers import run_py

pytestmark = pytest.mark.slow  # benchmarks a trained run for real


def test_engines_bench_prints_both_engines_and_the_ratios(trained_run, dataset, tmp_path):
    log_dir, name = trained_run
    shutil.copytree(log_dir / name, tmp_path / name)  # the bench rebuilds the run's export: use a copy
    proc = run_py("-m", "bench.engines", "--data_dir", dataset, "--log_dir", tmp_path, "--run", name, "--images", "12",
                  "--infer_batch_size", "8", "--rounds", "1")
    out = proc.stdout
    for row in ("| torch img/s |", "| onnxruntime img/s |", "| onnxruntime / torch |", "| torch / onnxruntime |",
                "first onnxruntime infer with the export"):
        assert row in out, row
    assert "12 eval images" in out and "on 28 eval images" in out
    last = out.strip().splitlines()[-1]
    assert last.startswith("ratio_whole_process=") and float(last.split("=")[1]) > 0
