"""src/config/policy.py: the saved settings (dump, from_saved) and the changes a run made."""
import dataclasses

import pytest
import yaml

from src.config import parsing, policy
from src.config.parsing import parse
from src.config.policy import dump, from_saved, pointless
from src.config.schema import PseudoConfig, TrainConfig
from src.errors import ConfigError


def test_saved_config_round_trips_with_git_commit(tmp_path):
    c = parse(["--lr", "0.3", "--resume", "--mean", "0.1", "0.2", "0.3", "--gridshuffle_classes", "1,2"])
    text = dump(c)
    data = yaml.safe_load(text)
    assert "git_commit" in data and data["lr"] == 0.3
    assert "resume" not in data and "overwrite" not in data and "check_data" not in data  # switches, not settings
    (tmp_path / "config.yaml").write_text(text)
    back = from_saved(tmp_path / "config.yaml")
    assert dataclasses.replace(back, resume=True) == c


def test_a_pseudo_runs_saved_config_holds_training_keys_only():
    c = parse(["--run", "teacher", "--tta", "none", "--lr", "0.3"], PseudoConfig)
    data = yaml.safe_load(dump(c, TrainConfig))
    assert "run" not in data and "tta" not in data and data["lr"] == 0.3


def test_changes_from_the_defaults_and_from_a_recipe(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: tf_efficientnet_lite0\nepochs: 6\nlr: 0.01\n")
    cfg = parsing.parse(["--config", str(recipe), "--lr", "0.001", "--batch_size", "16"])
    assert cfg.recipes == [str(recipe)]
    assert policy.changes(cfg, cfg.recipes) == [
        "differs from the defaults: 4 key(s)",
        "  model: tf_efficientnet_b3_ns -> tf_efficientnet_lite0",
        "  epochs: 30 -> 6",
        "  batch_size: 32 -> 16",
        "  lr: 0.002 -> 0.001",
        f"set by {recipe}: 3 key(s)",
        "  model: tf_efficientnet_b3_ns -> tf_efficientnet_lite0",
        "  epochs: 30 -> 6",
        "  lr: 0.002 -> 0.01",
        "set by the command line: 2 key(s)",
        "  batch_size: 32 -> 16",
        "  lr: 0.01 -> 0.001",
    ]
    assert policy.changes(parsing.parse([])) == ["differs from the defaults: 0 key(s)"]
    assert f"recipes:\n- {recipe}\n" in policy.dump(cfg)
    assert policy.from_saved(_saved(tmp_path, cfg)).recipes == []  # a note beside the settings, not read back


def _saved(tmp_path, cfg):
    path = tmp_path / "config.yaml"
    path.write_text(policy.dump(cfg))
    return path


def test_a_setting_made_pointless_by_another_is_a_warning_naming_both():
    assert pointless(parse([])) == []
    assert pointless(parse(["--pooling", "avg"])) == []  # gem_p left alone: nothing to warn about
    assert pointless(parse(["--pretrained", "false", "--pretrained_path", "w.pt"])) == [
        "--pretrained_path w.pt has no effect with --pretrained false (it applies with --pretrained true)"]
    warned = pointless(parse(["--head", "linear", "--arc_m", "0.3", "--loss", "ce", "--focal_gamma", "2",
                              "--pooling", "avg", "--gem_p", "4", "--ema_decay", "0.99"]))
    assert warned == ["--gem_p 4.0 has no effect with --pooling avg (it applies with --pooling gem)",
                      "--arc_m 0.3 has no effect with --head linear (it applies with --head arcface)",
                      "--focal_gamma 2.0 has no effect with --loss ce (it applies with --loss focal)",
                      "--ema_decay 0.99 has no effect with --ema false (it applies with --ema true)"]


def test_distillation_settings_without_a_teacher_warn_and_any_teacher_makes_them_matter():
    assert pointless(parse(["--distill_alpha", "0.7", "--distill_unlabeled_share", "0.2"])) == [
        "--distill_alpha 0.7 has no effect with --teacher [] (it applies with --teacher ...)",
        "--distill_unlabeled_share 0.2 has no effect with --teacher [] (it applies with --teacher ...)"]
    assert pointless(parse(["--distill_alpha", "0.7", "--teacher", "a", "--fold", "full"])) == []


def test_a_hand_edited_saved_config_is_named_with_its_key_and_line(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(dump(parse([])).replace("lr: 0.002", "lr: fast"))
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if text.startswith("lr:"))
    with pytest.raises(ConfigError) as caught:
        from_saved(path)
    assert str(caught.value) == f"{path} line {line}: lr expects a number, got 'fast'"
    path.write_text(dump(parse([])).replace("heads: joint", "heads: many"))
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if text.startswith("heads:"))
    with pytest.raises(ConfigError, match=rf"config\.yaml line {line}: heads 'many' is not supported; choose one of"):
        from_saved(path)


def test_a_setting_with_two_ways_to_matter_warns_only_when_neither_holds():
    """fog shapes the original pipeline and UDA's strong view: pointless with aug light and UDA off only."""
    assert pointless(parse(["--fog", "albumentations", "--aug", "light"])) == [
        "--fog albumentations has no effect with --aug light and --uda false (it applies with --aug original, or "
        "--uda true)"]
    assert pointless(parse(["--fog", "albumentations"])) == []
    assert pointless(parse(["--fog", "albumentations", "--aug", "light", "--uda", "true"])) == []
