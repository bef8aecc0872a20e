"""A sweep's trial_minutes: the cost model against hand computations and the trainer's own split, a trial predicted
over the budget pruned before it trains beside one under it, and the option's checks."""
import json

import pytest
import torch
from optuna.trial import TrialState

from bench.cost import main as cost_bench
from src.config.parsing import parse
from src.config.schema import SweepConfig
from src.errors import ConfigError
from src.run.rundir import RunDir
from src.sweep import cost
from src.sweep import study as studies
from src.sweep import worker
from src.sweep.space import load_spec
from tests.helpers import ROOT, TINY


def test_the_prediction_is_photos_times_epochs_times_the_step_plus_the_validation_passes():
    cfg = parse(["--batch_size", "32", "--epochs", "3", "--val_every", "2"])
    # fold 0: 100 photos train in 3 full batches (96, the last batch dropped), 25 validate after epochs 2 and 3
    # fold 1: 20 photos, fewer than a batch: all train (one short batch); 5 validate twice
    times = cost.StepTimes(train=0.5, val=0.25)
    assert cost.predicted_seconds(cfg, [(100, 25), (20, 5)], times) == \
        3 * 96 * 0.5 + 2 * 25 * 0.25 + 3 * 20 * 0.5 + 2 * 5 * 0.25
    assert cost.validations(6, 6) == 1 and cost.validations(6, 1) == 6 and cost.validations(5, 2) == 3


def test_the_calibration_is_the_median_of_measured_over_predicted_and_one_before_any_trial_finished():
    assert cost.calibration([]) == 1.0
    assert cost.calibration([(2.0, 3.0)]) == 1.5
    assert cost.calibration([(1.0, 1.2), (2.0, 2.0), (1.0, 5.0), (0.0, 9.0)]) == 1.2  # 1.2, 1.0, 5.0; none of 0


def test_the_photos_counted_are_the_trainers_split_with_drop_ages_left_out(dataset, tmp_path):
    from src.data.tables import load_train
    from src.engine.fold import fold_datasets

    args = ["--data_dir", str(dataset), "--n_folds", "3", "--drop_ages", "58-60"]
    cfg = parse([*args, "--fold", "all"])
    table = load_train(cfg.data_dir, cfg.corrections, cfg.age_filter, cfg.n_folds, cfg.seed)
    expected = []
    for k in range(3):
        train_ds, _, val_ds, _ = fold_datasets(cfg, table, list(table["path"]), k)
        expected.append((len(train_ds), len(val_ds)))
    assert cost.fold_photos(cfg) == expected
    assert sum(v for _, v in expected) == len(table) and expected[0][0] < len(table) - expected[0][1]  # some dropped
    assert cost.fold_photos(parse([*args, "--fold", "1"])) == [expected[1]]


def test_step_times_are_measured_per_photo_and_keyed_by_what_changes_a_step():
    cfg = parse(TINY)
    times = cost.measure_steps(cfg, torch.device("cpu"), seconds=0.2)
    assert 0 < times.val < times.train  # a training step does a forward pass and more
    key = cost.step_key(cfg, torch.device("cpu"))
    assert cost.step_key(parse([*TINY, "--lr", "0.5"]), torch.device("cpu")) == key  # the lr changes no step time
    assert cost.step_key(parse([*TINY, "--img_height", "96"]), torch.device("cpu")) != key


def epochs_sweep(dataset, tmp_path, study: str, epochs: list[int], n_trials: int, trial_minutes: float):
    """A worker of a sweep over the tiny model's epochs alone, its runs in tmp_path/logs."""
    at = TINY.index("--epochs")
    fixed = [*TINY[:at], *TINY[at + 2:], "--data_dir", str(dataset), "--log_dir", str(tmp_path / "logs")]
    path = tmp_path / f"{study}.yaml"
    path.write_text(f"base: {ROOT / 'experiments/quick.yaml'}\nobjective: {{folds: '0'}}\nspace:\n  epochs: "
                    f"{{choices: {epochs}}}\nn_trials: {n_trials}\ntrial_minutes: {trial_minutes}\npruner: none\n")
    return worker.Worker(parse(["--study", study, "--sweep", str(path)], SweepConfig), load_spec(path, fixed), fixed,
                         studies.open_storage("", tmp_path / "logs", 60))


@pytest.mark.slow
def test_a_trial_predicted_over_trial_minutes_is_pruned_before_it_trains_and_one_under_it_trains(dataset, tmp_path):
    logs = tmp_path / "logs"
    w = epochs_sweep(dataset, tmp_path, "b", [1, 5000], n_trials=2, trial_minutes=1)
    for epochs in (1, 5000, 1):  # 1 epoch: a second on 2 cores, far under the minute; 5000: far over on any machine
        w.study.enqueue_trial({"epochs": epochs})
    w.run()
    first, over, second = w.study.get_trials()  # the over-budget trial spends none of the 2 trials
    assert first.state == second.state == TrialState.COMPLETE and first.user_attrs[studies.PREDICTED] < 1
    assert RunDir(logs, "b-000").cv.is_file() and RunDir(logs, "b-002").cv.is_file()
    assert over.state == TrialState.PRUNED and over.user_attrs[studies.OVER_BUDGET]
    assert over.user_attrs[studies.PREDICTED] > 1 and not over.intermediate_values
    assert not RunDir(logs, "b-001").root.exists()  # never trained: no run folder
    # later predictions are calibrated by what the first trial trained against its own prediction
    ratio = first.user_attrs[studies.TRAINED] / first.user_attrs[studies.STEPS_PREDICTED]
    assert first.user_attrs[studies.PREDICTED] == first.user_attrs[studies.STEPS_PREDICTED]  # nothing finished yet
    for later in (over, second):
        assert later.user_attrs[studies.PREDICTED] == pytest.approx(later.user_attrs[studies.STEPS_PREDICTED] * ratio)
    # the sampler sees how far over each draw was, so TPE ranks the draws over the budget by it
    for t, fits in ((first, True), (over, False), (second, True)):
        excess = t.constraints[studies.MINUTES_OVER]
        assert excess == pytest.approx(t.user_attrs[studies.PREDICTED] - 1) and (excess <= 0) == fits
    measured = [k for k in w.study.user_attrs if k.startswith(worker.STEP_TIMES)]
    assert len(measured) == 1  # the trials share the model, size and batch: one measurement
    shown = studies.show_text(w.study)
    assert "| 1 | over budget |" in shown and "(not trained)" in shown
    assert "over trial_minutes, never trained: 1" in shown


@pytest.mark.slow
def test_a_space_mostly_over_the_budget_stops_drawing(dataset, tmp_path, caplog):
    logs = tmp_path / "logs"
    w = epochs_sweep(dataset, tmp_path, "o", [4000, 5000], n_trials=1, trial_minutes=0.01)
    w.run()
    trials = w.study.get_trials()
    assert len(trials) == studies.OVER_BUDGET_LIMIT and all(t.user_attrs[studies.OVER_BUDGET] for t in trials)
    assert "the space is mostly over the budget" in caplog.text and not list(logs.glob("o-*"))


def test_trial_minutes_is_checked_and_the_command_line_replaces_the_files(tmp_path):
    path = tmp_path / "s.yaml"
    body = f"base: {ROOT / 'experiments/quick.yaml'}\nspace:\n  lr: {{low: 0.001, high: 0.01}}\npruner: none\n"
    for bad in ("-5", "0", "true", "soon"):
        path.write_text(body + f"trial_minutes: {bad}\n")
        with pytest.raises(ConfigError, match="trial_minutes is minutes"):
            load_spec(path, [])
    path.write_text(body + "trial_minutes: 15\n")
    assert load_spec(path, []).trial_minutes == 15
    assert load_spec(path, [], trial_minutes=5).trial_minutes == 5
    assert load_spec(path, []).record()["trial_minutes"] == 15  # workers of one study share it
    path.write_text(body)
    assert load_spec(path, []).trial_minutes is None
    with pytest.raises(ConfigError, match="trial_minutes"):
        parse(["--trial_minutes", "-1"], SweepConfig)
    shipped = load_spec("experiments/sweeps/frontier.yaml", ["--data_dir", "/x"], trial_minutes=60)
    assert shipped.trial_minutes == 60 and shipped.folds == "all" and shipped.pruner == {"name": "none"}
    assert {p.key for p in shipped.space} >= {"model", "img_height", "crop_box", "epochs", "n_folds", "age_head"}


@pytest.mark.slow
def test_the_cost_bench_reports_the_predicted_against_the_measured_training_time(dataset, tmp_path, capsys):
    assert cost_bench(["--data_dir", str(dataset), "--log_dir", str(tmp_path / "logs"), *TINY, "--fold", "0"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| test_efficientnet"))
    predicted, measured, ratio = (float(c) for c in row.strip("|").split("|")[-3:])
    assert predicted > 0 and measured > 0 and ratio == pytest.approx(predicted / measured, rel=0.02)
    print(f"cost model on the tiny run: predicted / measured = {ratio:.2f}")  # reported, never asserted
    assert list(json.loads((tmp_path / "logs" / "cost" / "cv.json").read_text())["fold_f1"]) == ["0"]
