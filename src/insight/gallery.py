"""Photo galleries, for judging predictions and labels by eye: rows of captioned tiles saved as one PNG."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from src.data.images import read_rgb
from src.errors import DataError
from src.run.figures import pyplot, save_png

TILE_IN = (2.3, 3.5)  # inches per tile (width, height incl. caption): at DPI a face is ~180 px wide
DPI = 80


def thumbnail(path, width: int = round(TILE_IN[0] * DPI)) -> np.ndarray | None:
    """The photo resized to `width`, or None when it cannot be read (moved data must not stop a report)."""
    try:
        img = read_rgb(path)
    except (DataError, OSError):
        return None
    return cv2.resize(img, (width, round(img.shape[0] * width / img.shape[1])), interpolation=cv2.INTER_AREA)


def save_gallery(rows: list[tuple[str, list[tuple[str, str]]]], path: Path, cols: int):
    """rows: (heading, [(image path or RGB array, caption), ...]); each row is one line of at most `cols` tiles."""
    wide = any(isinstance(t[0], np.ndarray) and t[0].shape[1] > t[0].shape[0] for _, tiles in rows for t in tiles)
    width = TILE_IN[0] * (1.6 if wide else 1)  # a photo with its map beside it takes a wider tile
    fig = pyplot().figure(figsize=(cols * width, len(rows) * (TILE_IN[1] + 0.3)), layout="constrained")
    subfigs = np.atleast_1d(fig.subfigures(len(rows), 1))
    for sub, (heading, tiles) in zip(subfigs, rows):
        sub.suptitle(heading, x=0.005, ha="left", fontsize=11, fontweight="bold")
        axes = np.atleast_1d(sub.subplots(1, cols))
        for j, ax in enumerate(axes):
            ax.axis("off")
            if j >= len(tiles):
                continue
            image_path, caption = tiles[j]
            img = image_path if isinstance(image_path, np.ndarray) else thumbnail(image_path)
            if img is None:
                ax.text(0.5, 0.5, f"image not found\n{Path(image_path).name}", ha="center", va="center", fontsize=8)
            else:
                ax.imshow(img)
            ax.set_title(caption, fontsize=8)
        if not tiles:
            axes[0].text(0, 0.5, "none", fontsize=10)
    save_png(fig, path, dpi=DPI)
