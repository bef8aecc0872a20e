"""src/sweep/space.py: a sweep file is checked against the train.py schema before any trial starts."""
import pytest

from src.errors import ConfigError
from src.sweep.space import load_spec, option_args

BASE = "experiments/quick.yaml"


def spec_file(tmp_path, text: str):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return path


def refused(tmp_path, text: str, fixed=()) -> str:
    with pytest.raises(ConfigError) as e:
        load_spec(spec_file(tmp_path, text), list(fixed))
    return str(e.value)


def test_a_valid_sweep_file_becomes_its_parameters(tmp_path):
    spec = load_spec(spec_file(tmp_path, f"""
base: {BASE}
objective: {{folds: "1"}}
space:
  lr: {{low: 1.0e-4, high: 1.0e-2, log: true}}
  epochs: {{low: 2, high: 6, step: 2}}
  head: {{choices: [linear, arcface]}}
  task_weights: {{choices: [[1, 1, 1], [1, 1, 2]]}}
n_trials: 5
sampler: {{name: random, seed: 3}}
pruner: hyperband
"""), ["--data_dir", "/x"])
    assert spec.folds == "1" and spec.n_trials == 5 and spec.timeout is None
    lr, epochs, head, weights = spec.space
    assert (lr.low, lr.high, lr.log, lr.integer) == (1e-4, 1e-2, True, False)
    assert (epochs.low, epochs.high, epochs.step, epochs.integer) == (2, 6, 2, True)
    assert head.choices == ["linear", "arcface"] and weights.choices == ["1,1,1", "1,1,2"]
    assert spec.make_sampler().__class__.__name__ == "RandomSampler"
    assert spec.make_pruner().__class__.__name__ == "HyperbandPruner"
    assert option_args({"lr": 0.001, "ema": True, "task_weights": "1,1,2"}) == [
        "--lr", "0.001", "--ema", "true", "--task_weights", "1,1,2"]


@pytest.mark.parametrize("space, fixed, message", [
    ("lrr: {low: 0.1, high: 1}", (), "space lrr: unknown train.py key. Did you mean: lr"),
    ("lr: {low: 0.0, high: 1}", (), "space lr: --lr must be > 0, got 0.0"),
    ("age_filter: {low: 30, high: 59}", (), "--age_filter must be >= 31 and <= 60, got 30"),
    ("head: {choices: [linear, arcfce]}", (), "--head 'arcfce' is not supported; choose one of: arcface, linear"),
    ("head: {low: 1, high: 2}", (), "a range needs a number key; head is one of: arcface, linear: use choices"),
    ("epochs: {low: 2.5, high: 6}", (), "low must be a whole number, got 2.5"),
    ("lr: {low: 0.1, high: 0.01}", (), "low 0.1 must be below high 0.01"),
    ("lr: {low: 0.01, high: 0.1, log: true, step: 0.01}", (), "a log range needs low > 0 and no step"),
    ("lr: {low: 0.01, hihg: 0.1}", (), "key 'hihg' is not supported. Did you mean: high?"),
    ("lr: {choices: []}", (), "choices must be a non-empty list"),
    ("lr: {low: 0.01, high: 0.1}", ("--lr", "0.01"), "--lr is also fixed on the command line"),
    ("name: {choices: [a, b]}", (), "the sweep sets name itself"),
])
def test_a_bad_search_space_is_refused_naming_the_key(tmp_path, space, fixed, message):
    assert message in refused(tmp_path, f"base: {BASE}\nspace:\n  {space}\n", fixed)


@pytest.mark.parametrize("text, message", [
    ("base: experiments/none.yaml\nspace: {lr: {low: 0.1, high: 1}}", "base recipe experiments/none.yaml not found"),
    (f"base: {BASE}\nspace: {{lr: {{low: 0.1, high: 1}}}}\nn_trails: 3", "key 'n_trails' is not supported. Did you mean: n_trials?"),
    (f"base: {BASE}\nspace: {{lr: {{low: 0.1, high: 1}}}}\nsampler: tpf", "sampler 'tpf' is not supported. Did you mean: tpe?"),
    (f"base: {BASE}\nspace: {{lr: {{low: 0.1, high: 1}}}}\npruner: {{name: median, warmup: 1}}", "pruner median option 'warmup' is not supported"),
    (f"base: {BASE}\nspace: {{lr: {{low: 0.1, high: 1}}}}\nobjective: {{folds: 9}}", "objective folds: --fold must be 'all', 'full' or an integer from 0 to 3"),
    (f"base: {BASE}\nspace: {{lr: {{low: 0.1, high: 1}}}}\nobjective: {{folds: full}}", "--fold full and --teacher runs have none"),
    (f"base: {BASE}\nspace: {{lr: {{low: 0.1, high: 1}}}}\nn_trials: 0", "n_trials must be a whole number >= 1"),
    (f"base: {BASE}\nspace: {{}}", "'space' maps each searched train.py key"),
])
def test_a_bad_sweep_file_is_refused(tmp_path, text, message):
    assert message in refused(tmp_path, text)


def test_fixed_keys_are_checked_and_fold_belongs_to_the_sweep_file(tmp_path):
    text = f"base: {BASE}\nspace: {{lr: {{low: 0.1, high: 1}}}}"
    assert "--fold is the sweep file's to set" in refused(tmp_path, text, ("--fold", "1"))
    assert "unknown option --epoch" in refused(tmp_path, text, ("--epoch", "3"))
    assert "--overwrite is set by the sweep for each trial" in refused(tmp_path, text, ("--overwrite", "true"))
    assert "--name is set by the sweep" in refused(tmp_path, text, ("--name", "x"))


@pytest.mark.parametrize("argv, message", [
    (["--study", "s", "--lrr", "1"], "unknown option --lrr. Did you mean: lr?"),
    (["--sweep", "x.yaml"], "--study names the study"),
    (["--study", "s", "--log_dir", "{tmp}"], "--sweep names the sweep file"),
    (["--study", "s", "--log_dir", "{tmp}", "--show"], "no study storage {tmp}/sweeps.db"),
    (["--study", "s", "--storage", "nosuchdb://x", "--show"], "--storage nosuchdb://x: cannot open the study storage"),
    (["--study", "s", "--storage", "postgresql://u:secret@127.0.0.1:1/db", "--show"], "postgresql://u:***@127.0.0.1:1/db"),
])
def test_the_sweep_command_line_refuses_in_one_line(tmp_path, capsys, argv, message):
    import sweep

    with pytest.raises(SystemExit) as e:
        sweep.main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err
    message = message.replace("{tmp}", str(tmp_path))
    assert e.value.code == 2 and message in err and "secret" not in err, err
    assert not (tmp_path / "sweeps.db").exists()  # reading a study never creates one


def test_a_pruner_over_a_base_that_validates_only_the_last_epoch_is_refused(tmp_path):
    text = f"base: {BASE}\nspace:\n  lr: {{low: 1.0e-4, high: 1.0e-2}}\npruner: median\n"
    message = refused(tmp_path, text, ["--val_every", "6"])  # quick.yaml trains 6 epochs
    assert "pruner median would never prune" in message and "val_every 6 >= epochs 6" in message
    assert load_spec(spec_file(tmp_path, text), ["--val_every", "2"]).pruner["name"] == "median"
    assert load_spec(spec_file(tmp_path, text.replace("median", "none")), ["--val_every", "6"]).pruner == {"name": "none"}
    # the shipped sweep's base is cpu15 validated after every epoch
    assert load_spec("experiments/sweeps/cpu.yaml", ["--data_dir", "/x"]).pruner["name"] == "median"
    with pytest.raises(ConfigError, match="would never prune"):
        load_spec(spec_file(tmp_path, "base: experiments/cpu15.yaml\nspace:\n  lr: {low: 1.0e-4, high: 1.0e-2}\n"
                                      "pruner: median\n"), [])


def test_an_alias_in_a_sweep_file_is_refused_before_it_expands(tmp_path):
    laughs = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}' if i else '1'] * 9)}]\n" for i in range(9))
    message = refused(tmp_path, f"base: {BASE}\nspace: {{lr: {{low: 0.1, high: 1}}}}\n{laughs}"
                                f"sampler: {{name: random, seed: *l8}}\n")
    assert "uses the YAML alias" in message and len(message) < 300
