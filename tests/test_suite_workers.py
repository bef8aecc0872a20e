"""make test runs the suite on pytest-xdist workers: each must take its share of the cores, not all of them."""
import os
import subprocess
import sys

import pytest
import torch


def test_a_worker_and_the_processes_it_starts_take_their_share_of_the_cores():
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if not workers:
        pytest.skip("a serial run (not under pytest-xdist): every core is this process's")
    share = max(1, len(os.sched_getaffinity(0)) // workers)
    assert torch.get_num_threads() == share
    child = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                           capture_output=True, text=True, check=True)
    assert int(child.stdout) == share
