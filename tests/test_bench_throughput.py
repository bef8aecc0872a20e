"""bench/throughput.py: the quick benchmark prints every row."""
import pytest

from tests.helpers import run_py

pytestmark = pytest.mark.slow  # trains or benchmarks for real


def test_throughput_quick_prints_every_row(dataset):
    proc = run_py("-m", "bench.throughput", "--quick", "--data_dir", dataset, "--model", "test_efficientnet",
                  "--img_height", "64", "--img_width", "48", "--batch_size", "8", "--workers", "0", "--steps", "1",
                  "--windows", "2")
    out = proc.stdout
    for row in ("| a |", "cache off", "cache on", "| c |", "| d |", "| ref |", "| e |"):
        assert row in out, row
    last = out.strip().splitlines()[-1]
    assert last.startswith("ratio_pipeline_to_limit=") and float(last.split("=")[1]) > 0
