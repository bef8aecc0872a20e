"""src/model/network.py: pooling, neck, heads, normalisation and the per-task softmax."""
import pytest
import torch
import torch.nn.functional as F

from src.engine import builders
from src.model.network import GeM, MaskClassifier
from tests.helpers import tiny_cfg


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


def test_model_options_arrive():
    model = builders.model(tiny_cfg(gem_p=2.5, neck="prelu_dropout", neck_dropout=0.3, neck_dim=24, msd_p=0.4,
                                 msd_count=3))
    assert model.pool.p.item() == pytest.approx(2.5) and model.neck[-1].p == 0.3
    assert model.neck[0].out_features == 24 and [d.p for d in model.dropouts] == [0.4] * 3


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
