"""src/model/backbones.py: timm backbones of every family, their weights and the sizes they take."""
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from src.engine import builders
from src.errors import ModelError, PretrainedError
from src.model.backbones import convert_lite_weights, create_backbone, lite_package_file
from src.model.network import GeM
from tests.helpers import TINY, cli, run_py, tiny_cfg

PROBS = [f"p{k}" for k in range(18)]


def backbone_of(cfg):
    return create_backbone(cfg.model, (cfg.img_height, cfg.img_width), cfg.pretrained, cfg.pretrained_path)


def test_packaged_lite0_weights_classify_imagenet_images():
    skimage_data = pytest.importorskip("skimage.data")
    cfg = tiny_cfg(model="tf_efficientnet_lite0", pretrained="true", pretrained_path="package")
    backbone = backbone_of(cfg)
    import timm

    full = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    full.load_state_dict({**full.state_dict(), **{k: v for k, v in backbone.state_dict().items()}})
    fc = torch.load(lite_package_file("tf_efficientnet_lite0"), weights_only=True)
    full.classifier.load_state_dict({"weight": fc["_fc.weight"], "bias": fc["_fc.bias"]})
    full.eval()
    for name, accepted in (("chelsea", {281, 282, 285}), ("coffee", {967})):
        img = torch.from_numpy(getattr(skimage_data, name)()[..., :3].copy()).permute(2, 0, 1)[None].float() / 255
        x = (F.interpolate(img, size=(224, 224), mode="bilinear", antialias=True) - 0.5) / 0.5
        assert full(x).argmax().item() in accepted, name


def test_lite_weight_mismatch_is_refused():
    good = {"_conv_stem.weight": torch.zeros(32, 3, 3, 3), "_fc.weight": torch.zeros(10, 4)}
    target = {"conv_stem.weight": torch.zeros(16, 3, 3, 3)}
    with pytest.raises(PretrainedError, match="_conv_stem.weight has shape \\(32, 3, 3, 3\\).*\\(16, 3, 3, 3\\)"):
        convert_lite_weights(good, target)
    with pytest.raises(PretrainedError, match="2 tensors in the file, 1 expected"):
        convert_lite_weights({"a": torch.zeros(1), "b": torch.zeros(1)}, {"x": torch.zeros(1)})
    with pytest.raises(PretrainedError, match="weights for tf_efficientnet_lite0"):
        backbone_of(tiny_cfg(model="resnet18", pretrained="true", pretrained_path="package"))


def test_local_weights_file_loads_and_mismatch_is_refused(tmp_path):
    source = backbone_of(tiny_cfg())
    path = tmp_path / "w.pt"
    torch.save(source.state_dict(), path)
    loaded = backbone_of(tiny_cfg(pretrained="true", pretrained_path=path))
    for (k, a), b in zip(source.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k
    torch.save({"conv_stem.weight": torch.zeros(1)}, path)
    with pytest.raises(PretrainedError, match="does not fit"):
        backbone_of(tiny_cfg(pretrained="true", pretrained_path=path))
    with pytest.raises(PretrainedError, match="file not found"):
        backbone_of(tiny_cfg(pretrained="true", pretrained_path=tmp_path / "none.pt"))


def test_unfetchable_weights_give_one_clear_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PretrainedError) as e:
        backbone_of(tiny_cfg(model="resnet18", pretrained="true"))
    assert "resnet18" in str(e.value) and "pretrained=false" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ModelError, match="unknown timm model"):
        backbone_of(tiny_cfg(model="resnet_nonexistent"))


def test_weights_file_at_another_size_is_resampled_by_timm(tmp_path):
    source = backbone_of(tiny_cfg(model="vit_tiny_patch16_224", img_height=224, img_width=224))
    path = tmp_path / "vit.pt"
    torch.save(source.state_dict(), path)
    loaded = backbone_of(tiny_cfg(model="vit_tiny_patch16_224", img_height=128, img_width=96, pretrained="true",
                                      pretrained_path=path))
    assert loaded.pos_embed.shape == (1, 1 + 8 * 6, 192)  # class token + an 8x6 patch grid
    assert torch.equal(loaded.pos_embed[:, 0], source.pos_embed[:, 0])
    assert torch.equal(loaded.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)


# (model, input height, width, layout of its features): one of each family at a non-square size.
FAMILIES = [
    ("resnet18", 128, 96, "NCHW"),  # CNN
    ("convnext_atto", 128, 96, "NCHW"),  # CNN whose head norm comes after timm's pooling (left unused)
    ("tf_efficientnetv2_b0", 128, 96, "NCHW"),
    ("vit_tiny_patch16_224", 128, 96, "pooled"),  # tokens with a class token; built with img_size=(128, 96)
    ("deit_tiny_patch16_224", 128, 96, "pooled"),
    ("swin_tiny_patch4_window7_224", 128, 96, "NHWC"),  # an NHWC map, GeM after a permute
    ("efficientvit_b0", 128, 96, "NCHW"),  # hybrid whose head cannot drop its pooling
    ("nf_resnet26", 128, 96, "NCHW"),  # NFNet (no BatchNorm)
]


@pytest.mark.parametrize("name, height, width, layout", FAMILIES)
def test_every_family_trains_at_a_non_square_size(name, height, width, layout):
    torch.manual_seed(0)
    model = builders.model(tiny_cfg(model=name, img_height=height, img_width=width, pooling="gem")).train()
    assert model.layout == layout
    assert isinstance(model.pool, GeM) == (layout != "pooled")  # GeM wherever there is a spatial map
    conv = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) == (layout == "NCHW")
    x = torch.randint(0, 256, (2, 3, height, width), dtype=torch.uint8)
    logits = model(x)
    assert logits.shape == (2, 18) and torch.isfinite(logits).all()
    F.cross_entropy(logits, torch.tensor([0, 17])).backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert [n for n, p in trainable if p.grad is None] == []  # DDP needs a gradient for every trainable tensor
    assert sum(p.grad.abs().sum() for n, p in trainable if n.startswith("backbone.")) > 0
    assert model.eval()(x).shape == (2, 18)


def test_a_size_the_architecture_cannot_take_is_a_clear_error():
    # CoAtNet partitions its stage maps into fixed windows: 130x98 does not tile, 128x96 does.
    with pytest.raises(ModelError) as e:
        builders.model(tiny_cfg(model="coatnet_nano_rw_224", img_height=130, img_width=98))
    message = str(e.value)
    assert "coatnet_nano_rw_224 cannot take 130x98 input" in message and "stride is 32" in message
    assert "sizes it takes: 128x96" in message


def train_and_infer(dataset, log_dir, name, *args, capsys) -> str:
    """train.py then infer.py, in this process; train.py's stderr."""
    import infer
    import train

    code, err = cli(train.main, "--data_dir", dataset, "--log_dir", log_dir, "--name", name, *TINY, "--fold", "0",
                    "--epochs", "1", *args, capsys=capsys)
    assert code == 0, err
    assert cli(infer.main, "--data_dir", dataset, "--log_dir", log_dir, "--run", name, capsys=capsys)[0] == 0
    info = pd.read_csv(dataset / "eval" / "info.csv")
    submission = pd.read_csv(log_dir / name / "submission.csv")
    assert list(submission["ImageID"]) == list(info["ImageID"]) and submission["ans"].between(0, 17).all()
    return err


@pytest.mark.slow
def test_vit_joint_and_swin_per_task_runs_train_infer_and_ensemble(dataset, tmp_path, capsys):
    import infer

    vit = train_and_infer(dataset, tmp_path, "vit", "--model", "vit_tiny_patch16_224", "--pooling", "gem",
                          capsys=capsys)
    assert "gives no spatial map at 64x48: pooling=gem does not apply" in vit
    train_and_infer(dataset, tmp_path, "swin", "--model", "swin_tiny_patch4_window7_224", "--heads", "per_task",
                    "--mix_prob", "1", "--mix_mode", "halves", capsys=capsys)
    assert (tmp_path / "swin" / "fold0" / "oof.csv").is_file()
    assert cli(infer.main, "--data_dir", dataset, "--log_dir", tmp_path, "--runs", "vit", "swin", capsys=capsys)[0] == 0
    singles = [pd.read_csv(tmp_path / run / "eval_probs.csv")[PROBS].to_numpy() for run in ("vit", "swin")]
    both = pd.read_csv(tmp_path / "ensemble_vit-swin" / "eval_probs.csv")[PROBS].to_numpy()
    assert np.allclose(singles[1].sum(1), 1, atol=1e-4)  # the per-task run's 18 classes are a distribution
    assert np.allclose(both, (singles[0] + singles[1]) / 2, atol=2e-5)


@pytest.mark.slow
def test_ddp_trains_a_model_whose_head_stage_is_unused(dataset, tmp_path):
    # efficientvit_b0's timm head (conv + pooling) sits after the map we pool: frozen, so DDP's reducer
    # does not wait for gradients that never come.
    proc = run_py("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "train.py",
                  "--data_dir", dataset, "--log_dir", tmp_path, "--name", "ddp", *TINY, "--model", "efficientvit_b0",
                  "--heads", "per_task", "--fold", "0", "--epochs", "1", "--dist_backend", "gloo",
                  env={"OMP_NUM_THREADS": "1"})
    assert "world 2" in proc.stderr and "unused and frozen" in proc.stderr
    assert (tmp_path / "ddp" / "fold0" / "oof.csv").is_file()


@pytest.mark.slow
def test_a_size_the_architecture_refuses_stops_train_py_before_the_run_starts(dataset, tmp_path):
    proc = run_py("train.py", "--data_dir", dataset, "--log_dir", tmp_path, "--name", "bad", *TINY,
                  "--model", "coatnet_nano_rw_224", "--img_height", "130", "--img_width", "98", check=False)
    assert proc.returncode == 1
    assert "error: coatnet_nano_rw_224 cannot take 130x98 input" in proc.stderr and "128x96" in proc.stderr
    assert not (tmp_path / "bad").exists()  # no run folder, no cache


def test_a_weights_file_of_other_objects_is_not_loaded_for_safety(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("unpickled!",))

    path = tmp_path / "w.pt"
    torch.save({"model": Payload()}, path)
    with pytest.raises(PretrainedError) as caught:
        backbone_of(tiny_cfg(pretrained="true", pretrained_path=path))
    message = str(caught.value)
    assert "holds objects other than tensors and plain values, so it was not loaded, for safety" in message
    assert "weights_only" not in message and "does not fit" not in message
