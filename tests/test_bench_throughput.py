"""bench/throughput.py: the quick benchmark prints every row, and flags a pipeline the data holds back."""
import pytest

from bench.throughput import keep_up_table
from tests.helpers import run_py


def test_the_keep_up_table_flags_each_pipeline_under_the_threshold():
    lines = keep_up_table({(0, False): 45.0, (0, True): 95.0, (8, False): 99.0, (8, True): 120.0}, 100.0, 0.9)
    assert lines[2] == "| 0 | 0.45 **under 0.9: data-bound** | 0.95 |"
    assert lines[3] == "| 8 | 0.99 | 1.20 |"
    assert lines[-1].startswith("data_bound_rows=1 of 4")


@pytest.mark.slow  # benchmarks for real
def test_throughput_quick_prints_every_row(dataset):
    proc = run_py("-m", "bench.throughput", "--quick", "--data_dir", dataset, "--model", "test_efficientnet",
                  "--img_height", "64", "--img_width", "48", "--batch_size", "8", "--workers", "0", "--steps", "1",
                  "--windows", "2")
    out = proc.stdout
    for row in ("| a |", "cache off", "cache on", "| c |", "| d |", "| ref |", "| e |", "| workers |", "| 0 | ",
                "data_bound_rows="):
        assert row in out, row
    last = out.strip().splitlines()[-1]
    assert last.startswith("ratio_pipeline_to_limit=") and float(last.split("=")[1]) > 0
