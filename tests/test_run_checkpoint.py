"""src/run/checkpoint.py: damaged or unsafe checkpoints give one line saying what to do."""
import os

import pytest
import torch

import infer
import train
from src.run.rundir import RunDir
from tests.helpers import TINY, cli, one_line


@pytest.mark.slow
def test_damaged_checkpoints_give_one_line_with_what_to_do(own_run, dataset, tmp_path, capsys):
    logs, name = own_run
    run = RunDir(logs, name)
    blob = run.checkpoint(0, "best_f1").read_bytes()
    run.checkpoint(0, "best_f1").write_bytes(blob[: len(blob) // 3])
    code, err = cli(infer.main, "--data_dir", dataset, "--log_dir", logs, "--run", name, capsys=capsys)
    line = one_line(err)
    assert code == 1 and "best_f1.pt: unreadable or truncated checkpoint" in line and "another --checkpoint" in line

    class Payload:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    torch.save({"model": Payload()}, run.checkpoint(1, "best_f1"))
    run.checkpoint(0, "best_f1").write_bytes(blob)
    code, err = cli(infer.main, "--data_dir", dataset, "--log_dir", logs, "--run", name, capsys=capsys)
    line = one_line(err)
    assert "holds objects other than tensors" in line and "for safety" in line and "weights_only" not in err
    assert not (tmp_path / "pwned").exists()

    last = run.last(1).read_bytes()
    run.last(1).write_bytes(last[:100])
    code, err = cli(train.main, "--data_dir", dataset, "--log_dir", logs, "--name", name, *TINY, "--resume",
                    capsys=capsys)
    assert code == 1 and "last.pt: unreadable or truncated checkpoint" in one_line(err) and "delete it" in err
