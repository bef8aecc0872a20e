"""src/insight/cam.py: Grad-CAM per task through pytorch-grad-cam, for each feature layout the project builds, and the
face share. Maps of trained tiny models on photos of noise whose mask state only a painted patch tells: a model that
can only read a patch in a corner looks at that corner; one that reads a patch inside the face box has a higher face
share than one trained with the face box blacked out and its patch in a corner."""
import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from src.engine import builders, trainer
from src.insight.cam import Explainer, FoldExplainers, TaskTarget, face_box, face_share, mass_inside, strip
from src.labels import PHOTO_MASK, encode_label
from src.predict.plans import plan_run
from src.run.rundir import RunDir
from tests.helpers import make_data, tiny_cfg

COLOURS = {0: (230, 30, 30), 1: (30, 200, 30), 2: (40, 60, 230)}  # RGB of each mask state's patch
FACE = (0.1667, 0.1406, 0.8333, 0.8066)  # the default crop_box: face, hair and neck


@pytest.mark.parametrize("name, size", [("resnet10t", (64, 48)), ("swin_tiny_patch4_window7_224", (224, 224)),
                                        ("vit_tiny_patch16_224", (224, 224))])
def test_every_layout_gives_three_maps_in_zero_to_one(name, size):
    """NCHW maps, NHWC maps (Swin) and class-token models (ViT) alike."""
    torch.manual_seed(0)
    model = builders.model(tiny_cfg(model=name, img_height=size[0], img_width=size[1], heads="per_task"))
    x = torch.randint(0, 256, (2, 3, *size), dtype=torch.uint8)
    maps = Explainer(model).maps(x, [encode_label(0, 1, 2), encode_label(2, 0, 0)])
    assert maps.shape == (2, 3, *size) and maps.min() >= 0 and maps.max() <= 1 + 1e-6
    assert (maps.reshape(6, -1).max(1) > 0).any()  # not every map empty
    assert strip(x[0].permute(1, 2, 0).numpy(), maps[0]).shape == (size[0], 4 * size[1], 3)


def test_the_target_is_the_log_odds_of_the_task_value():
    logits = torch.randn(18)
    cube = logits.reshape(3, 2, 3)
    gender = cube.logsumexp((0, 2))  # per gender value
    assert TaskTarget(1, 1)(logits).item() == pytest.approx((gender[1] - gender[0]).item(), abs=1e-5)
    mask = cube.logsumexp((1, 2))
    assert TaskTarget(0, 2)(logits).item() == pytest.approx((mask[2] - mask[:2].logsumexp(0)).item(), abs=1e-5)


def test_the_face_box_follows_the_crop_and_the_mass_inside_it():
    assert face_box(FACE) == pytest.approx(FACE)
    assert face_box(FACE, FACE) == pytest.approx((0, 0, 1, 1))  # a run that crops to the box sees only the box
    cam = np.zeros((100, 80), np.float32)
    cam[:50, :40] = 1.0
    assert mass_inside(cam, (0, 0, 0.5, 0.5)) == 1.0 and mass_inside(cam, (0.5, 0.5, 1, 1)) == 0.0
    assert np.isnan(mass_inside(np.zeros((4, 4)), (0, 0, 1, 1)))


def painted(root, people: int, patch, black_face: bool = False):
    """The generator's layout with every photo replaced by noise and its mask state painted as a coloured patch at
    `patch` (fractions x0 y0 x1 y1); `black_face`: the face box blacked out first."""
    data = make_data(root, train_people=people, eval_people=1, seed=4, size="96x128")
    rng = np.random.default_rng(0)
    for f in [f for f in (data / "train" / "images").rglob("*") if f.is_file() and not f.name.startswith(".")]:
        img = rng.integers(0, 256, (128, 96, 3), dtype=np.uint8)
        h, w = img.shape[:2]
        box = lambda b: (slice(round(b[1] * h), round(b[3] * h)), slice(round(b[0] * w), round(b[2] * w)))  # noqa
        if black_face:
            img[box(FACE)] = 0
        img[box(patch)] = COLOURS[PHOTO_MASK[f.stem]][::-1]
        cv2.imwrite(str(f.with_suffix(".png")), img)
        if f.suffix != ".png":
            f.unlink()
    return data


def trained(data, log_dir, name: str):
    """resnet10t at 96x72, fold 0 of 2, three epochs: enough to read a painted patch."""
    trainer.train(tiny_cfg(data_dir=data, log_dir=log_dir, name=name, model="resnet10t", heads="per_task",
                           aug="none", epochs=3, n_folds=2, fold=0, gridshuffle_p=0, corrections="none",
                           img_height=96, img_width=72))
    plan = plan_run(log_dir, name, "auto")
    return plan, pd.read_csv(RunDir(log_dir, name).oof(0))


@pytest.mark.slow
def test_a_model_that_reads_a_corner_looks_at_that_corner(tmp_path):
    data = painted(tmp_path / "d", 12, (0.0, 0.0, 0.25, 0.25))
    plan, oof = trained(data, tmp_path / "logs", "corner")
    explainers = FoldExplainers(plan, tmp_path / "logs", 10**8)
    _, maps, _ = explainers.explain(oof["path"].tolist(), oof["fold"].to_numpy(), oof["label"].to_numpy())
    corner = np.nanmean([mass_inside(m[0], (0, 0, 0.5, 0.5)) for m in maps])
    untrained = Explainer(builders.model(plan.cfg, pretrained=False))
    x = torch.stack([builders.eval_transform(plan.cfg)(img) for img in
                     builders.file_images(plan.cfg, oof["path"].tolist(), tmp_path / "logs", 10**8)])
    before = np.nanmean([mass_inside(m[0], (0, 0, 0.5, 0.5)) for m in untrained.maps(x, oof["label"].to_numpy())])
    assert corner > 0.6 and corner > before + 0.2, (corner, before)


@pytest.mark.slow
def test_a_model_that_reads_the_face_has_a_higher_face_share_than_one_trained_with_the_face_blacked_out(tmp_path):
    """Both learn the mask state from a painted patch: one over the mouth, where the generator draws the mask; the
    other in a corner, the face box blacked out. The face share of the mask maps tells them apart."""
    face = painted(tmp_path / "face", 12, (0.3, 0.45, 0.7, 0.75))
    blacked = painted(tmp_path / "blacked", 12, (0.0, 0.88, 0.15, 1.0), black_face=True)
    shares = {}
    for name, data in (("face", face), ("blacked", blacked)):
        plan, oof = trained(data, tmp_path / "logs", name)
        shares[name] = face_share(FoldExplainers(plan, tmp_path / "logs", 10**8), oof, 64)
    assert shares["face"]["mask"] > shares["blacked"]["mask"] + 0.1, shares
