"""bench/feed.py's fixed-cost table runs end to end: every part of an epoch's writes and records is timed through
the trainer's own FoldSaver and RunRecords, and the before/after line follows (the figures themselves are not
asserted: tests never assert timings)."""
import re

import pytest

from bench import feed


@pytest.mark.slow  # saves a B3's checkpoints three times
def test_the_fixed_cost_table_times_every_part_of_an_epochs_writes(dataset, capsys):
    feed.main(["--data_dir", str(dataset), "--quick", "--skip", "steps", "loader", "fog", "--workers", "0", "1"])
    out = capsys.readouterr().out
    parts = ["console and train.log lines", "best_*.pt (3 when every metric improves)", "oof.csv and the fold's",
             "confusion.png", "the run's metrics.csv", "last.pt (model and SGD state)", "TensorBoard (scalars",
             "save_epoch: what the training loop waits for now", "first batch of an epoch", "first batch of a valid"]
    rows = {p: re.search(rf"^\| {re.escape(p)}[^|]* \| ([0-9.]+)", out, re.M) for p in parts}
    assert all(rows.values()), [p for p, m in rows.items() if not m]
    assert re.search(r"Outside its steps before: [0-9.]+ s = [0-9.]+% of an epoch; now: [0-9.]+ s = [0-9.]+%", out)
