"""The settings a run changed, as train.log and the report list them."""
from src.config import parsing, policy


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
