"""Image files: decoding to RGB after header checks (size, truncation, decompression bombs), and the path
rules that keep names from data files inside the data."""
from __future__ import annotations

import io
import re
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

from src.config.schema import MAX_IMAGE_PIXELS
from src.errors import DataError
from src.files import read_regular, shown, within

IMAGE_EXTS = (".jpg", ".jpeg", ".png")

cv2.setNumThreads(1)  # loader workers parallelise across images; OpenCV threads would only contend


def header_size(data: bytes) -> tuple[int, int]:
    """(width, height) from an image file's header, nothing decoded. PIL keeps a pixel limit of its own (a warning
    above 89 MP, an error above twice that) that would override max_image_pixels either way; ours is the one limit,
    checked on every header before any decode, so PIL's is lifted (here, where something else may have set it)."""
    Image.MAX_IMAGE_PIXELS = None
    with Image.open(io.BytesIO(data)) as im:
        return im.size


def image_header(data: bytes, path, max_pixels: int) -> str | None:
    """Problems visible without decoding: an empty file, unreadable header, too many pixels, a JPEG cut short."""
    if not data:
        return f"{path}: unreadable or corrupt image (an empty file: 0 bytes)"
    try:
        width, height = header_size(data)
    except Image.UnidentifiedImageError:  # its message shows a BytesIO's address, which helps nobody
        return f"{path}: unreadable or corrupt image (not an image format PIL knows)"
    except Exception as e:  # PIL raises many types for bad headers
        return f"{path}: unreadable or corrupt image ({type(e).__name__}: {e})"
    if width * height > max_pixels:
        return (f"{path}: {width}x{height} is {width * height:,} pixels, more than max_image_pixels "
                f"{max_pixels:,}; refused before decoding")
    if width < 8 or height < 8:
        return f"{path}: image is only {width}x{height}"
    if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-65536:]:  # phones may append data after the marker
        return f"{path}: truncated JPEG (no end-of-image marker)"
    return None


REDUCED = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
           8: cv2.IMREAD_REDUCED_COLOR_8}  # 1/2, 1/4 or 1/8 size: OpenCV scales a JPEG inside its decoder, less work


def fitting_reduction(path, max_pixels: int) -> tuple[int, tuple[int, int]] | None:
    """(the least of 2, 4 or 8 at which a JPEG over max_pixels fits it when decoded at that fraction, its full width
    and height), or None for a photo that fits as it is, is no readable JPEG, or does not fit even at an eighth."""
    try:
        data = read_regular(path)
        if data[:2] != b"\xff\xd8":
            return None
        width, height = header_size(data)
    except Exception:  # PIL and the file system raise many types: read_rgb's own checks name the problem
        return None
    if width * height <= max_pixels:
        return None
    scale = next((s for s in (2, 4, 8) if -(-width // s) * -(-height // s) <= max_pixels), None)
    return None if scale is None else (scale, (width, height))


def read_rgb(path, max_pixels: int = MAX_IMAGE_PIXELS, reduce: int = 1) -> np.ndarray:
    """Decode an image file to RGB uint8 HxWx3 after checking its header, or raise DataError naming it; `reduce`
    (2, 4 or 8) decodes it at that fraction of its size."""
    try:
        data = read_regular(path)
    except OSError as e:
        raise DataError([f"{shown(path)}: cannot be read ({e.strerror})"]) from None
    except ValueError as e:
        raise DataError([f"{shown(path)}: {e}"]) from None
    problem = image_header(data, path, max_pixels)
    if problem:
        raise DataError([problem])
    img = cv2.imdecode(np.frombuffer(data, np.uint8), REDUCED[reduce])  # applies EXIF orientation, drops alpha
    if img is None:
        return pil_rgb(data, path)  # formats OpenCV does not decode (GIF, some TIFF) but PIL does
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def pil_rgb(data: bytes, path) -> np.ndarray:
    """PIL's decode with OpenCV's conventions: EXIF orientation applied, gray repeated, alpha dropped."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    except Exception as e:  # PIL raises many types for bad files
        raise DataError([f"{path}: unreadable or corrupt image ({type(e).__name__}: {e})"]) from None


def verify_image(path: Path, max_pixels: int = MAX_IMAGE_PIXELS) -> str | None:
    """Header checks, then a full PIL decode (strict about truncation); a problem or None."""
    try:
        data = read_regular(path)
    except OSError as e:
        return f"{shown(path)}: cannot be read ({e.strerror})"
    except ValueError as e:
        return f"{shown(path)}: {e}"
    problem = image_header(data, path, max_pixels)
    if problem:
        return problem
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
    except Exception as e:  # PIL raises many types for bad files
        return f"{path}: unreadable or corrupt image ({type(e).__name__}: {e})"
    return None


def relative_name_problem(name: str) -> str | None:
    """Why a name from a data file is not a plain relative path (absolute, '..', empty part), or None."""
    parts = re.split(r"[\\/]", name)
    if not name or name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "must be a relative name, not absolute or empty"
    if "\x00" in name:
        return "must not contain a NUL character"
    if any(p in ("", ".", "..") for p in parts):
        return "must not contain '..', '.' or an empty part"
    return None


def inside(root: Path, name: str) -> tuple[Path | None, str | None]:
    """root/name if it is a plain relative name that resolves (symlinks followed) inside root."""
    problem = relative_name_problem(name)
    if problem:
        return None, problem
    path = root / name
    if not within(path, root):
        return None, f"resolves outside {root}"
    return path, None


def cut(img: np.ndarray, box) -> np.ndarray:
    """The part of img inside box (x0 y0 x1 y1 as fractions of the frame), at least one pixel each way."""
    h, w = img.shape[:2]
    x0, x1 = pixel_span(box[0], box[2], w)
    y0, y1 = pixel_span(box[1], box[3], h)
    return img[y0:y1, x0:x1]


def pixel_span(lo: float, hi: float, n: int) -> tuple[int, int]:
    a = min(int(round(lo * n)), n - 1)
    return a, max(int(round(hi * n)), a + 1)


class FileImages:
    """Images decoded from disk on demand (header checked first), cut to their box (fractions of the frame, see
    crops.py) when boxes are given, then resized to `size` (H, W) when given."""

    def __init__(self, paths, size: tuple[int, int] | None = None, max_pixels: int = MAX_IMAGE_PIXELS, boxes=None):
        self.paths, self.size, self.max_pixels, self.boxes = list(paths), size, max_pixels, boxes

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i) -> np.ndarray:
        img = read_rgb(self.paths[i], self.max_pixels)
        if self.boxes is not None:
            img = cut(img, self.boxes[i])
        if self.size is not None and img.shape[:2] != tuple(self.size):
            img = cv2.resize(img, (self.size[1], self.size[0]), interpolation=cv2.INTER_AREA)
        return img
