"""src/model/losses.py: ArcFace margin, focal loss, class weights, UDA consistency and per-task losses."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from src.config.schema import TrainConfig as Config
from src.engine import builders
from src.labels import decode_label
from src.model.losses import ArcMargin, Criterion, FocalLoss, HeadLoss, SoftF1Loss, class_weights, uda_consistency


def test_arcface_margin_against_hand_computation():
    s, m = 45.0, 0.5
    arc = ArcMargin(s, m)
    cos = torch.tensor([[0.8, 0.1, -0.3], [-0.95, 0.2, 0.4]])
    out = arc(s * cos, torch.tensor([0, 0]))
    theta = math.acos(0.8)
    assert math.isclose(out[0, 0].item(), s * math.cos(theta + m), rel_tol=1e-5)  # with margin
    # theta = acos(-0.95) > pi - m: the fallback s * (cos - m * sin(m)) keeps it monotonic
    assert math.isclose(out[1, 0].item(), s * (-0.95 - math.sin(math.pi - m) * m), rel_tol=1e-5)
    assert torch.allclose(out[:, 1:], s * cos[:, 1:])  # non-target logits unchanged


def test_focal_is_ce_when_gamma_0_and_alpha_1():
    logits, target = torch.randn(16, 18), torch.randint(0, 18, (16,))
    w = torch.rand(18) + 0.5
    assert torch.allclose(FocalLoss(0.0, 1.0)(logits, target), F.cross_entropy(logits, target), atol=1e-6)
    assert torch.allclose(FocalLoss(0.0, 1.0, w)(logits, target), F.cross_entropy(logits, target, weight=w), atol=1e-6)
    p_t = F.softmax(logits, 1).gather(1, target[:, None]).squeeze(1)
    hand = (-0.25 * (1 - p_t) ** 2 * p_t.log()).mean()
    assert torch.allclose(FocalLoss(2.0, 0.25)(logits, target), hand, atol=1e-6)


def test_class_weights_on_known_counts():
    labels = [0] * 10 + [1] * 100 + [2]
    w = class_weights(labels, num_classes=4)
    raw = torch.tensor([1 / math.log1p(10), 1 / math.log1p(100), 1 / math.log1p(1), 1 / math.log1p(1)])
    assert torch.allclose(w, raw * 4 / raw.sum())
    assert math.isclose(class_weights(labels).sum().item(), 18, rel_tol=1e-6)


def test_criterion_composes_margin_and_inner_loss():
    logits, target = torch.randn(8, 18) * 10, torch.randint(0, 18, (8,))
    ce = builders.criterion(Config(head="linear", loss="ce", label_smoothing=0.1))
    assert torch.allclose(ce(logits, target), F.cross_entropy(logits, target, label_smoothing=0.1))
    arc = builders.criterion(Config(head="arcface", loss="ce", arc_s=45, arc_m=0.5))
    assert torch.allclose(arc(logits, target), F.cross_entropy(ArcMargin(45, 0.5)(logits, target), target))
    s, m = 45.0, 0.5
    hand = logits.clone()
    for i, t in enumerate(target.tolist()):  # the target logit moves from s*cos(theta) to s*cos(theta + m)
        c = max(-1.0, min(1.0, logits[i, t].item() / s))
        theta = math.acos(c)
        hand[i, t] = s * math.cos(theta + m) if theta + m < math.pi else s * (c - math.sin(math.pi - m) * m)
    assert torch.allclose(arc(logits, target), F.cross_entropy(hand, target), atol=1e-5)
    no_margin = builders.criterion(Config(head="arcface", loss="ce", arc_s=45, arc_m=0.0))
    assert torch.allclose(no_margin(logits, target), F.cross_entropy(logits, target))
    assert arc(logits, target) > no_margin(logits, target)  # the margin only ever lowers the target logit


def test_uda_consistency():
    a, b = torch.randn(6, 18), torch.randn(6, 18)
    assert uda_consistency(a, a).abs().item() < 1e-6
    loss = uda_consistency(a, b)
    assert torch.isfinite(loss) and loss > 0
    assert uda_consistency(a, b, threshold=1.0).item() == 0.0  # every sample masked
    b.requires_grad_(True)
    w = a.clone().requires_grad_(True)
    uda_consistency(w, b).backward()
    assert w.grad is None and b.grad is not None  # the weak view is a detached target


def per_task_cfg(**overrides):
    return Config(**{"heads": "per_task", "head": "linear", "loss": "ce", "class_weights": False, **overrides})


def test_per_task_loss_matches_a_hand_computation():
    torch.manual_seed(0)
    labels = torch.tensor([0, 5, 7, 12, 17, 9])  # 6*mask + 3*gender + age
    m, g, a = labels // 6, (labels // 3) % 2, labels % 3
    heads = (torch.randn(6, 3) * 3, torch.randn(6, 2) * 3, torch.randn(6, 3) * 3)
    train = [0, 0, 1, 3, 3, 3, 5, 8, 12, 13, 17, 17]
    crit = builders.criterion(per_task_cfg(task_weights=[0.5, 2.0, 1.0], class_weights=True, label_smoothing=0.1), train)
    w = [class_weights([t // 6 for t in train], 3), class_weights([(t // 3) % 2 for t in train], 2),
         class_weights([t % 3 for t in train], 3)]
    hand = sum(k * F.cross_entropy(z, t, weight=wt, label_smoothing=0.1)
               for k, z, t, wt in zip([0.5, 2.0, 1.0], heads, (m, g, a), w))
    assert torch.allclose(crit(heads, labels), hand, atol=1e-6)

    # ArcFace heads: each head's target cosine gets its own margin before the focal loss
    s, margin = 30.0, 0.4
    cos = tuple(torch.rand(6, n) * 2 - 1 for n in (3, 2, 3))
    arc = builders.criterion(per_task_cfg(head="arcface", loss="focal", arc_s=s, arc_m=margin, focal_gamma=2.0,
                                 focal_alpha=0.25))
    hand = 0
    for c, t in zip(cos, (m, g, a)):
        z = s * c.clone()
        theta = torch.acos(c[torch.arange(6), t])
        z[torch.arange(6), t] = torch.where(theta + margin < math.pi, s * torch.cos(theta + margin),
                                            s * (c[torch.arange(6), t] - math.sin(math.pi - margin) * margin))
        p_t = F.softmax(z, 1)[torch.arange(6), t]
        hand = hand + (-0.25 * (1 - p_t) ** 2 * p_t.log()).mean()
    assert torch.allclose(arc(tuple(s * c for c in cos), labels), hand, atol=1e-5)


def test_per_task_loss_on_18_class_logits_marginalises_exactly():
    from src.model.network import joint_logits

    heads = (torch.randn(5, 3) * 4, torch.randn(5, 2) * 4, torch.randn(5, 3) * 4)
    labels = torch.tensor([1, 6, 11, 14, 16])
    crit = builders.criterion(per_task_cfg(task_weights=[1.0, 0.3, 2.0]))
    assert torch.allclose(crit(joint_logits(heads), labels), crit(heads, labels), atol=1e-5)


def test_the_age_filter_reaches_only_the_age_head():
    # two people aged 59: true band 30-59 (1), filtered band 60+ (2); the same masks and genders
    true_labels = np.array([1, 4, 7, 10, 13, 16, 0, 3])
    filtered = true_labels.copy()
    filtered[:6] += 1
    crit_true, crit_filtered = builders.criterion(per_task_cfg(class_weights=True), true_labels), \
        builders.criterion(per_task_cfg(class_weights=True), filtered)
    for task in (0, 1):  # mask and gender heads: same class weights
        assert torch.equal(crit_true.losses[task].inner.weight, crit_filtered.losses[task].inner.weight)
    assert not torch.equal(crit_true.losses[2].inner.weight, crit_filtered.losses[2].inner.weight)
    heads = (torch.randn(8, 3), torch.randn(8, 2), torch.randn(8, 3))
    only = {task: builders.criterion(per_task_cfg(task_weights=[float(i == task) for i in range(3)])) for task in range(3)}
    for task in (0, 1):
        assert torch.equal(only[task](heads, torch.tensor(true_labels)), only[task](heads, torch.tensor(filtered)))
    assert not torch.allclose(only[2](heads, torch.tensor(true_labels)), only[2](heads, torch.tensor(filtered)))


P = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.6, 0.3, 0.1]])
Y = torch.tensor([0, 1, 2, 1])


def test_soft_f1_loss_matches_a_hand_computation():
    # class 0: tp .7, fp .1+.3+.6, fn .3 -> 1.4/2.7; class 1: tp .8+.3, fp .2+.3, fn .2+.7 -> 2.2/3.6;
    # class 2: tp .4, fp .3, fn .6 -> .8/1.7
    f1 = [1.4 / 2.7, 2.2 / 3.6, 0.8 / 1.7]
    assert SoftF1Loss()(P.log(), Y).item() == pytest.approx(1 - sum(f1) / 3, abs=1e-6)
    weighted = SoftF1Loss(torch.tensor([1.0, 2.0, 1.0]))(P.log(), Y).item()
    assert weighted == pytest.approx(1 - (f1[0] + 2 * f1[1] + f1[2]) / 4, abs=1e-6)
    perfect = SoftF1Loss()(torch.eye(3)[[0, 1, 2, 1]] * 50, Y).item()
    assert perfect == pytest.approx(0, abs=1e-6)


def test_soft_f1_gradient_is_finite_even_for_an_absent_class_and_saturated_logits():
    logits = torch.tensor([[80.0, -80.0, 0.0, -5.0], [-80.0, 80.0, 0.0, 3.0]], requires_grad=True)
    loss = SoftF1Loss()(logits, torch.tensor([0, 1]))  # class 2 and 3 are absent from the batch
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_ce_f1_is_ce_plus_the_weighted_f1_term():
    ce = torch.nn.functional.cross_entropy(P.log(), Y, label_smoothing=0.1)
    expected = ce + 0.5 * SoftF1Loss()(P.log(), Y)
    got = HeadLoss("linear", "ce_f1", label_smoothing=0.1, f1_weight=0.5)(P.log(), Y)
    assert got.item() == pytest.approx(expected.item(), abs=1e-6)


def test_f1_losses_work_with_per_task_heads_and_class_weights():
    labels = np.array([0, 4, 7, 13, 17, 0, 3, 9])
    target = torch.tensor(labels)
    torch.manual_seed(0)
    heads = (torch.randn(8, 3, requires_grad=True), torch.randn(8, 2, requires_grad=True),
             torch.randn(8, 3, requires_grad=True))
    crit = Criterion("per_task", "linear", "f1", labels, class_weighted=True, task_weights=(1.0, 0.5, 2.0))
    by_hand = sum(w * SoftF1Loss(class_weights(t, n))(z, torch.tensor(t))
                  for w, z, t, n in zip((1.0, 0.5, 2.0), heads, decode_label(labels), (3, 2, 3)))
    loss = crit(heads, target)
    assert loss.item() == pytest.approx(by_hand.item(), abs=1e-6)
    loss.backward()
    assert all(torch.isfinite(z.grad).all() for z in heads)
