import pytest
import torch
import torch.nn.functional as F

from tests.helpers import tiny_cfg
from src.model.network import GeM, MaskClassifier
from src.errors import ModelError, PretrainedError
from src.engine import builders
from src.model.backbones import convert_lite_weights, create_backbone, lite_package_file


def backbone_of(cfg):
    return create_backbone(cfg.model, (cfg.img_height, cfg.img_width), cfg.pretrained, cfg.pretrained_path)


def test_gem_with_p_1_is_average_pooling():
    x = torch.rand(2, 5, 4, 3)
    assert torch.allclose(GeM(p=1.0)(x), x.mean((2, 3)), atol=1e-6)
    assert GeM(p=3.0)(x).shape == (2, 5)


@pytest.mark.parametrize("heads", ["joint", "per_task"])
@pytest.mark.parametrize("head", ["arcface", "linear"])
@pytest.mark.parametrize("neck", ["prelu", "prelu_dropout", "bn"])
@pytest.mark.parametrize("pooling", ["gem", "avg"])
def test_output_shape_for_every_head_neck_and_pooling(heads, head, neck, pooling):
    model = builders.model(tiny_cfg(heads=heads, head=head, neck=neck, pooling=pooling, msd_count=3)).train()
    x = torch.randint(0, 256, (4, 3, 64, 48), dtype=torch.uint8)
    assert model(x).shape == (4, 18)
    model.eval()
    out = model(x)
    assert out.shape == (4, 18)
    if heads == "per_task":  # log p(mask) + log p(gender) + log p(age)
        assert torch.allclose(out.exp().sum(1), torch.ones(4), atol=1e-5)
        assert [z.shape[1] for z in model(x, per_head=True)] == [3, 2, 3]
    elif head == "arcface":
        assert out.abs().max() <= 45.0 + 1e-3  # s * cosine
    assert isinstance(model.neck[-1], {"prelu": torch.nn.PReLU, "prelu_dropout": torch.nn.Dropout,
                                       "bn": torch.nn.BatchNorm1d}[neck])


def test_multi_sample_dropout_can_be_turned_off():
    assert len(builders.model(tiny_cfg(msd_count=0)).dropouts) == 0
    model = builders.model(tiny_cfg(msd_count=4, msd_p=0.5)).train()
    x = torch.randint(0, 256, (2, 3, 64, 48), dtype=torch.uint8)
    torch.manual_seed(0)
    assert not torch.allclose(model(x), model(x))  # dropout active in training


def test_model_normalises_uint8_with_dataset_statistics():
    class Recorder(torch.nn.Module):
        def forward_features(self, x):
            self.seen = x
            return x

    cfg = tiny_cfg()
    model = MaskClassifier(Recorder(), "recorder", (4, 4), mean=cfg.mean, std=cfg.std).eval()
    x = (torch.tensor(cfg.mean) * 255).view(1, 3, 1, 1).expand(2, 3, 4, 4)
    model(x + torch.tensor(cfg.std).view(1, 3, 1, 1) * 255)
    assert torch.allclose(model.backbone.seen, torch.ones(2, 3, 4, 4), atol=1e-5)


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


def test_weights_file_at_another_size_is_resampled_by_timm(tmp_path):
    source = backbone_of(tiny_cfg(model="vit_tiny_patch16_224", img_height=224, img_width=224))
    path = tmp_path / "vit.pt"
    torch.save(source.state_dict(), path)
    loaded = backbone_of(tiny_cfg(model="vit_tiny_patch16_224", img_height=128, img_width=96, pretrained="true",
                                      pretrained_path=path))
    assert loaded.pos_embed.shape == (1, 1 + 8 * 6, 192)  # class token + an 8x6 patch grid
    assert torch.equal(loaded.pos_embed[:, 0], source.pos_embed[:, 0])
    assert torch.equal(loaded.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)


@pytest.mark.parametrize("head", ["arcface", "linear"])
def test_per_task_softmax_is_the_product_of_the_task_softmaxes(head):
    torch.manual_seed(0)
    model = builders.model(tiny_cfg(heads="per_task", head=head)).eval()
    x = torch.randint(0, 256, (4, 3, 64, 48), dtype=torch.uint8)
    mask, gender, age = (F.softmax(z, 1) for z in model(x, per_head=True))
    assert [mask.shape[1], gender.shape[1], age.shape[1]] == [3, 2, 3]
    product = (mask[:, :, None, None] * gender[:, None, :, None] * age[:, None, None, :]).reshape(4, 18)
    probs = F.softmax(model(x), 1)
    assert torch.allclose(probs, product, atol=1e-5)
    from src.labels import decode_label, encode_label

    m, g, a = decode_label(torch.arange(18))  # class 6*mask + 3*gender + age gets exactly that product
    assert torch.allclose(probs, mask[:, m] * gender[:, g] * age[:, a], atol=1e-5)
    assert torch.equal(probs.argmax(1), encode_label(mask.argmax(1), gender.argmax(1), age.argmax(1)))
