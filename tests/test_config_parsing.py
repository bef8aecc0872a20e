"""src/config/parsing.py and schema.py: defaults, parsing, choices, ranges, unknown keys, YAML files, --help."""
import pytest
import yaml

import infer
import train
from src.config.parsing import NOT_OPTIONS, choices, fields_of, parse
from src.config.policy import changes, dump
from src.config.schema import ExportConfig, InferConfig, PredictConfig, PseudoConfig, TrainConfig
from src.errors import ConfigError
from tests.helpers import ROOT, TINY, cli, run_py

Config = TrainConfig


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
    (["--loss", "focal", "--label_smoothing", "0.1"], "applies to --loss ce and ce_f1, not focal"),
    (["--loss", "f1", "--label_smoothing", "0.1"], "applies to --loss ce and ce_f1, not f1"),
    (["--lr", "1", "2"], "unexpected argument '2'"),
    (["lr", "1"], "options look like --key value"),
    (["--lr", "0"], "--lr must be > 0, got 0.0"),
    (["--lr", "nan"], "--lr must be > 0, got nan"),
    (["--weight_decay", "-0.1"], "--weight_decay must be >= 0"),
    (["--msd_p", "1.5"], "--msd_p must be >= 0 and <= 1"),
    (["--n_folds", "1"], "--n_folds must be >= 2"),
    (["--mean", "0.5", "0.5"], "--mean and --std take three values"),
    (["--task_weights", "1", "1"], "--task_weights takes three weights"),
    (["--task_weights", "1,-1,1"], "--task_weights takes three weights"),
    (["--heads", "mask"], "choose one of: joint, per_task"),
    (["--mix_mode", "halfs"], "choose one of: cutmix, mixup, halves"),
    (["--mix_prob", "1.5"], "--mix_prob must be >= 0 and <= 1"),
    (["--cutmix_alpha", "0"], "--cutmix_alpha must be > 0"),
])
def test_errors_name_the_problem(argv, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        parse(argv)


def test_unknown_key_lists_valid_options():
    with pytest.raises(ConfigError) as e:
        parse(["--sheduler", "cosine"])
    assert "Did you mean: scheduler" in str(e.value) and "early_stop_patience" in str(e.value)


@pytest.mark.parametrize("cls", [TrainConfig, InferConfig, PseudoConfig, PredictConfig, ExportConfig])
def test_every_choice_is_accepted_and_others_refused(cls):
    declared = {k: choices(cls, k) for k in fields_of(cls) if choices(cls, k)}
    assert len(declared) == {TrainConfig: 20, InferConfig: 6, PseudoConfig: 25, PredictConfig: 7, ExportConfig: 3}[cls]
    companions = {"age_head": ["--heads", "per_task"]}  # a number age head is per_task's
    for key, allowed in declared.items():
        for value in allowed:
            assert getattr(parse([f"--{key}", value, *companions.get(key, [])], cls), key) == value
        with pytest.raises(ConfigError, match=f"--{key} 'bogus' is not supported; choose one of: {', '.join(allowed)}"):
            parse([f"--{key}", "bogus"], cls)


def test_checkpoint_choices_are_the_run_folders_checkpoint_kinds():
    from src.config.schema import CHECKPOINT_KINDS
    from src.run.rundir import RunDir

    assert choices(InferConfig, "checkpoint") == ("auto",) + CHECKPOINT_KINDS  # auto: the run's oof_from
    assert choices(TrainConfig, "oof_from") == ("best_f1", "last") and set(("best_f1", "last")) <= set(CHECKPOINT_KINDS)
    assert [RunDir("l", "r").checkpoint(0, k).name for k in CHECKPOINT_KINDS] == [
        "best_f1.pt", "best_loss.pt", "best_acc.pt", "last.pt"]


def test_each_entry_point_takes_only_its_keys():
    with pytest.raises(ConfigError, match="--lr is a setting of train.py and pseudo_train.py; infer.py does not"):
        parse(["--lr", "0.1"], InferConfig)
    with pytest.raises(ConfigError, match="--tta is a setting of infer.py, pseudo_train.py, predict.py, export.py and app.py; train.py does not"):
        parse(["--tta", "none"])
    with pytest.raises(ConfigError, match="--out is a setting of infer.py, predict.py and export.py; pseudo_train.py does not"):
        parse(["--out", "x.csv"], PseudoConfig)
    assert parse(["--run", "a", "--lr", "0.1"], PseudoConfig).lr == 0.1


def test_infer_cli_refuses_a_training_key():
    proc = run_py("infer.py", "--run", "x", "--lr", "0.1", check=False)
    assert proc.returncode == 2 and "lr is a setting of train.py" in proc.stderr


def test_experiment_file_then_command_line(tmp_path):
    exp = tmp_path / "x.yaml"
    exp.write_text("lr: 0.5\nepochs: 9\nmodel: resnet18\n")
    c = parse(["--config", str(exp), "--lr", "0.1"])
    assert (c.lr, c.epochs, c.model) == (0.1, 9, "resnet18")
    second = tmp_path / "y.yaml"
    second.write_text("epochs: 4\nimg_height: 96\n")
    c = parse(["--config", str(exp), "--config", str(second), "--img_height", "64"])
    assert (c.lr, c.epochs, c.model, c.img_height) == (0.5, 4, "resnet18", 64)  # in order, command line last
    c = parse(["--config", str(second), "--config", str(exp)])
    assert c.epochs == 9
    exp.write_text("lr: 0.5\nbogus: 1\n")
    with pytest.raises(ConfigError, match="x.yaml.*unknown option --bogus"):
        parse(["--config", str(exp)])
    with pytest.raises(ConfigError, match="file not found"):
        parse(["--config", str(tmp_path / "none.yaml")])


def test_invalid_yaml_names_file_line_and_column(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: 0.1\nepochs: [3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: line 3 column 1: invalid YAML"):
        parse(["--config", str(bad)])


def test_entry_point_rejects_bad_scheduler_with_choices(tmp_path):
    proc = run_py("train.py", "--data_dir", tmp_path, "--name", "x", "--scheduler", "cosinee", check=False)
    assert proc.returncode == 2
    assert "cosine, onecycle, plateau, none" in proc.stderr


def test_help_lists_every_option_with_its_comment():
    proc = run_py("train.py", "--help")
    assert "--early_stop_patience" in proc.stdout and "epochs without improvement" in proc.stdout
    assert "[default: 5]" in proc.stdout and "{cosine|onecycle|plateau|none}" in proc.stdout
    for key in fields_of(TrainConfig):
        assert f"--{key} " in proc.stdout or key in NOT_OPTIONS, key
    assert "--config FILE" in proc.stdout and "--recipes" not in proc.stdout  # recipes records --config
    infer_help = run_py("infer.py", "--help").stdout
    assert "--checkpoint" in infer_help and "--lr " not in infer_help


@pytest.mark.parametrize("name", ["..", "", "a/b", "/tmp/x", ".hidden"])
def test_unsafe_run_names_are_refused_and_delete_nothing(dataset, tmp_path, capsys, name):
    logs = tmp_path / "logs"
    (logs / "keep").mkdir(parents=True)
    (logs / "keep" / "config.yaml").write_text("x: 1\n")
    (tmp_path / "unrelated.txt").write_text("mine")
    code, err = cli(train.main, "--data_dir", dataset, "--log_dir", logs, f"--name={name}", "--overwrite", *TINY,
                    capsys=capsys)
    assert code == 2 and "is not a run name: use letters, digits" in err
    assert (logs / "keep" / "config.yaml").is_file() and (tmp_path / "unrelated.txt").is_file()
    code, err = cli(infer.main, "--data_dir", dataset, "--log_dir", logs, "--runs", "keep", name or "''",
                    capsys=capsys)
    assert code == 2


def test_a_recipe_extends_its_base_and_the_diff_names_each_layer(tmp_path):
    (tmp_path / "base.yaml").write_text("model: tf_efficientnet_lite0\nepochs: 6\nlr: 0.01\n")
    (tmp_path / "sub").mkdir()
    child = tmp_path / "sub" / "child.yaml"
    child.write_text("extends: ../base.yaml\nepochs: 8\nheads: per_task\n")  # relative to the recipe's folder
    cfg = parse(["--config", str(child), "--lr", "0.001"])
    assert (cfg.model, cfg.epochs, cfg.heads, cfg.lr) == ("tf_efficientnet_lite0", 8, "per_task", 0.001)
    assert cfg.recipes == [str(child)]
    lines = changes(cfg, cfg.recipes)
    base_at = lines.index(f"set by {child.parent / '../base.yaml'} (base of {child}): 3 key(s)")
    child_at = lines.index(f"set by {child}: 2 key(s)")
    line_at = lines.index("set by the command line: 1 key(s)")
    assert base_at < child_at < line_at
    assert lines[child_at + 1:line_at] == ["  heads: joint -> per_task", "  epochs: 6 -> 8"]
    assert lines[line_at + 1:] == ["  lr: 0.01 -> 0.001"]
    saved = yaml.safe_load(dump(cfg))  # config.yaml holds the resolved settings, not the extends chain
    assert saved["epochs"] == 8 and saved["model"] == "tf_efficientnet_lite0" and "extends" not in saved


def test_recipe_chains_that_loop_or_miss_their_base_are_refused(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\nepochs: 3\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="recipes extend each other in a loop"):
        parse(["--config", str(tmp_path / "a.yaml")])
    (tmp_path / "c.yaml").write_text("extends: gone.yaml\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: extends: .*gone\.yaml not found"):
        parse(["--config", str(tmp_path / "c.yaml")])
    (tmp_path / "d.yaml").write_text("extends: [a.yaml, b.yaml]\n")
    with pytest.raises(ConfigError, match="extends must name one recipe file"):
        parse(["--config", str(tmp_path / "d.yaml")])
    (tmp_path / "u.yaml").write_text("extends: http://host/x.yaml\n")  # not read as the path http:/host/x.yaml
    with pytest.raises(ConfigError, match=r"u\.yaml: extends takes a file path, got 'http://host/x\.yaml'; URLs are "
                                          r"not fetched"):
        parse(["--config", str(tmp_path / "u.yaml")])
    (tmp_path / "e.yaml").write_text("extends: f.yaml\n")
    (tmp_path / "f.yaml").write_text("lrr: 0.1\n")
    with pytest.raises(ConfigError, match=r"f\.yaml line 1: unknown option --lrr\. Did you mean: lr"):
        parse(["--config", str(tmp_path / "e.yaml")])


def test_cpu15_holds_only_what_differs_from_quick():
    quick = yaml.safe_load((ROOT / "experiments" / "quick.yaml").read_text())
    cpu15 = yaml.safe_load((ROOT / "experiments" / "cpu15.yaml").read_text())
    assert cpu15.pop("extends") == "quick.yaml"
    assert all(quick.get(k) != v for k, v in cpu15.items())
    cfg = parse(["--config", str(ROOT / "experiments" / "cpu15.yaml")])
    assert (cfg.model, cfg.heads, cfg.fold, cfg.optimizer, cfg.scheduler) == ("tf_efficientnet_lite1", "per_task",
                                                                               "all", "adamw", "onecycle")


def test_bare_words_are_the_photos_of_predict_anywhere_among_the_options():
    cfg = parse(["a,b.jpg", "--run", "r", "photos/", "--out", "x.csv", "c.png"], PredictConfig)
    assert cfg.inputs == ["a,b.jpg", "photos/", "c.png"] and cfg.run == "r" and cfg.out == "x.csv"  # commas stay
    cfg = parse(["--runs", "a", "b", "--", "p.jpg", "q.jpg"], PredictConfig)  # '--' ends the list of runs
    assert cfg.runs == ["a", "b"] and cfg.inputs == ["p.jpg", "q.jpg"]
    with pytest.raises(ConfigError, match="unknown option --inputs") as e:
        parse(["--inputs", "p.jpg"], PredictConfig)
    assert "--inputs" not in str(e.value).split("Valid options:")[1]
    with pytest.raises(ConfigError, match="unexpected argument 'p.jpg': options look like --key value"):
        parse(["--run", "r", "p.jpg"], InferConfig)  # only predict.py takes bare words


LAUGHS = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}' if i else 'ha'] * 9)}]\n" for i in range(9))


@pytest.mark.parametrize("text", [
    LAUGHS + "pretrained_path: *l8\n",  # an alias under an allowed key: 9^9 items if it were expanded
    "crop_box: &b [0.1, 0.1, 0.9, 0.9]\ncrop: center\nmean: *b\n",
])
def test_a_yaml_alias_is_refused_before_anything_expands(tmp_path, text):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(text)
    with pytest.raises(ConfigError) as e:
        parse(["--config", str(recipe)])
    assert "uses the YAML alias" in str(e.value) and len(str(e.value)) < 300


def test_deep_nesting_is_refused_in_one_line(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("crop_box: " + "[" * 200000 + "\n")
    with pytest.raises(ConfigError, match="nests lists or mappings more than 64 deep"):
        parse(["--config", str(recipe)])
    saved = tmp_path / "run"
    saved.mkdir()
    (saved / "config.yaml").write_text("lr: " + "[" * 5000 + "]" * 5000 + "\n")
    from src.config.policy import from_saved

    with pytest.raises(ConfigError, match="more than 64 deep"):
        from_saved(saved / "config.yaml")


def test_an_error_never_shows_the_content_of_a_file_that_is_no_recipe(tmp_path):
    """extends may only name a recipe, and a key that is no option name is never echoed: a recipe aimed at a
    secret file cannot print it."""
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$saltsalt$hashhashhash:19000:0:99999:7:::\n")
    (tmp_path / "a.yaml").write_text(f"extends: {secret}\n")
    with pytest.raises(ConfigError, match=r"extends must name a recipe file ending in \.yaml or \.yml") as e:
        parse(["--config", str(tmp_path / "a.yaml")])
    named = tmp_path / "shadow.yaml"
    named.write_text(secret.read_text())
    for argv in (["--config", str(named)], ["--config", str(secret)]):
        with pytest.raises(ConfigError, match="a key that is not an option name") as e:
            parse(argv)
        assert "saltsalt" not in str(e.value) and "19000" not in str(e.value)


def test_a_long_value_is_cut_in_the_error():
    with pytest.raises(ConfigError) as e:
        parse(["--lr", "x" * 100000])
    assert len(str(e.value)) < 200 and "100,002 characters" in str(e.value)


def test_after_a_double_dash_every_word_is_a_photo_even_one_starting_with_a_dash():
    assert parse(["--run", "r", "--", "-dash.jpg", "--out"], PredictConfig).inputs == ["-dash.jpg", "--out"]
    assert parse(["a.jpg", "--runs", "r1", "r2", "--", "-b.jpg"], PredictConfig).inputs == ["a.jpg", "-b.jpg"]
    with pytest.raises(ConfigError, match=r"unexpected argument '-dash.jpg'.*goes after -- or as ./-dash.jpg"):
        parse(["--run", "r", "-dash.jpg"], PredictConfig)
    with pytest.raises(ConfigError, match="unexpected argument 'x': options look like --key value$"):
        parse(["--epochs", "2", "--", "x"], TrainConfig)
