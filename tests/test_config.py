import pytest
import yaml

from conftest import run_py
from src.config import CHOICES, Config, ConfigError, dump, from_saved, parse


def test_defaults_reproduce_the_original_entry():
    c = Config()
    assert (c.model, c.img_height, c.img_width, c.batch_size, c.n_folds) == ("tf_efficientnet_b3_ns", 384, 288, 32, 4)
    assert (c.arc_s, c.arc_m, c.focal_gamma, c.focal_alpha, c.age_filter) == (45.0, 0.5, 5.0, 0.25, 59)
    assert (c.optimizer, c.lr, c.momentum, c.nesterov, c.scheduler, c.cosine_t_max, c.eta_min) == \
        ("sgd", 2e-3, 0.9, True, "cosine", 70, 7e-5)
    assert (c.early_stop_monitor, c.early_stop_patience, c.msd_count, c.msd_p, c.gem_p) == ("val_loss", 5, 16, 0.2, 3.0)


def test_override_forms_and_types():
    c = parse(["--lr", "0.01", "--epochs=3", "--pretrained", "0", "--resume", "--mean", "0.5", "0.4", "0.3",
               "--gridshuffle_classes=12,13", "--fold", "1", "--name", "x"])
    assert c.lr == 0.01 and c.epochs == 3 and c.pretrained is False and c.resume is True
    assert c.mean == [0.5, 0.4, 0.3] and c.gridshuffle_classes == [12, 13] and c.fold == "1" and c.name == "x"
    for text, value in (("true", True), ("1", True), ("false", False), ("0", False)):
        assert parse(["--deterministic", text]).deterministic is value


@pytest.mark.parametrize("argv, message", [
    (["--lr", "fast"], "--lr expects a number"),
    (["--epochs", "2.5"], "--epochs expects an integer"),
    (["--pretrained", "maybe"], "expects a boolean"),
    (["--learning_rate", "1"], "unknown option --learning_rate"),
    (["--scheduler", "cosinee"], "choose one of: cosine, onecycle, plateau, none"),
    (["--fold", "7"], "integer from 0 to 3"),
    (["--loss", "focal", "--label_smoothing", "0.1"], "applies to --loss ce only"),
    (["--lr", "1", "2"], "takes exactly one value"),
    (["lr", "1"], "options look like --key value"),
])
def test_errors_name_the_problem(argv, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        parse(argv)


def test_unknown_key_lists_valid_options():
    with pytest.raises(ConfigError) as e:
        parse(["--sheduler", "cosine"])
    assert "Did you mean: scheduler" in str(e.value) and "early_stop_patience" in str(e.value)


def test_every_choice_is_accepted():
    for key, allowed in CHOICES.items():
        for value in allowed:
            assert getattr(parse([f"--{key}", value]), key) == value


def test_experiment_file_then_command_line(tmp_path):
    exp = tmp_path / "x.yaml"
    exp.write_text("lr: 0.5\nepochs: 9\nmodel: resnet18\n")
    c = parse(["--config", str(exp), "--lr", "0.1"])
    assert (c.lr, c.epochs, c.model) == (0.1, 9, "resnet18")
    exp.write_text("lr: 0.5\nbogus: 1\n")
    with pytest.raises(ConfigError, match="x.yaml.*unknown option --bogus"):
        parse(["--config", str(exp)])
    with pytest.raises(ConfigError, match="file not found"):
        parse(["--config", str(tmp_path / "none.yaml")])


def test_saved_config_round_trips_with_git_commit(tmp_path):
    c = parse(["--lr", "0.3", "--runs", "a", "b", "--mean", "0.1", "0.2", "0.3"])
    text = dump(c)
    data = yaml.safe_load(text)
    assert "git_commit" in data and data["lr"] == 0.3
    (tmp_path / "config.yaml").write_text(text)
    back = from_saved(tmp_path / "config.yaml")
    assert back.runs == ["a", "b"] and back.lr == 0.3 and back.mean == [0.1, 0.2, 0.3]


def test_entry_point_rejects_bad_scheduler_with_choices(tmp_path):
    proc = run_py("train.py", "--data_dir", tmp_path, "--name", "x", "--scheduler", "cosinee", check=False)
    assert proc.returncode == 2
    assert "cosine, onecycle, plateau, none" in proc.stderr


def test_help_lists_every_option_with_its_comment():
    proc = run_py("train.py", "--help")
    assert "--early_stop_patience" in proc.stdout and "epochs without improvement" in proc.stdout
