"""Figures: matplotlib drawing off-screen, saved atomically as PNG or returned as PNG bytes, and the confusion
matrix figure that train, TensorBoard and the report share."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from src.labels import CLASS_NAMES, NUM_CLASSES
from src.run.atomic import replace_with


def pyplot():
    """matplotlib.pyplot on the Agg backend: servers have no display, and nothing here is shown on screen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: Path, dpi: int = 80):
    """Write the figure atomically as a PNG and close it."""
    replace_with(path, png_writer(fig, dpi))


def save_rgb(image: np.ndarray, path: Path):
    """An RGB uint8 image written atomically as a PNG."""
    import cv2

    ok, data = cv2.imencode(".png", np.ascontiguousarray(image[..., ::-1]))
    replace_with(path, lambda tmp: Path(tmp).write_bytes(data.tobytes()))


def png_writer(fig, dpi: int = 80):
    """A writer (for the atomic writes) of the figure as a PNG; the figure is closed once written."""
    def write(tmp):
        try:
            fig.savefig(tmp, dpi=dpi, format="png")
        finally:
            pyplot().close(fig)
    return write


def png_bytes(fig, dpi: int = 70) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, dpi=dpi, format="png")
    finally:
        pyplot().close(fig)
    return buf.getvalue()


def confusion_figure(cm: np.ndarray, title: str):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(11, 10))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(NUM_CLASSES), CLASS_NAMES, rotation=90, fontsize=7)
    ax.set_yticks(range(NUM_CLASSES), CLASS_NAMES, fontsize=7)
    for (i, j), v in np.ndenumerate(cm):
        if v:
            ax.text(j, i, str(v), ha="center", va="center", fontsize=6,
                    color="white" if v > cm.max() / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    return fig
