"""src/data/dataset.py: the dataset's items."""
import numpy as np

from src.data.dataset import FaceDataset
from src.data.images import FileImages
from src.data.tables import load_train


def test_dataset_returns_rgb_uint8_label_and_index(dataset):
    table = load_train(dataset, "none", 60, None, 42)
    ds = FaceDataset(FileImages(table["path"][:3]), table["label"][:3])
    img, label, idx = ds[2]
    assert img.dtype == np.uint8 and img.shape == (128, 96, 3) and idx == 2 and label == table["label"][2]
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 255
    path = dataset.parent / "red.png"
    import cv2

    cv2.imwrite(str(path), red[..., ::-1])
    assert FileImages([path])[0][0, 0].tolist() == [255, 0, 0]
