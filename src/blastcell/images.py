"""The pipeline's own images: 8-bit RGB arrays written losslessly, read back, and resized.

Images that users bring, in whatever format, are decoded by `blastcell.ingest` and made square
as `data.square` says (`square`); resizing to the model's input size is the same for the prepare
stage and for `blastcell predict` (`resize`).
"""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import skimage.io
import skimage.transform

from blastcell.files import DataError


def read(path: Path) -> np.ndarray:
    """Read an 8-bit RGB image the pipeline wrote, with an error naming the file if it can't."""
    try:
        image = skimage.io.imread(path)
    except Exception as err:  # decoders raise many types; all mean "unreadable"
        raise DataError(f"{path}: cannot read image: {err}") from err
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise DataError(
            f"{path}: expected 8-bit RGB, got dtype {image.dtype} and shape {image.shape}"
        )
    return image


def write(path: Path, image: np.ndarray) -> None:
    """Write an image losslessly (format by suffix); identical arrays give identical bytes."""
    # PNG at zlib level 1: 2.5x faster to write than the default level, 15 % larger.
    options = {"compress_level": 1} if path.suffix.lower() == ".png" else {}
    iio.imwrite(path, image, **options)


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """Resize an RGB uint8 image to (size, size) with anti-aliasing, keeping uint8."""
    if image.shape[:2] == (size, size):
        return image
    out = skimage.transform.resize(
        image, (size, size), order=1, anti_aliasing=True, preserve_range=True
    )
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def square(image: np.ndarray, how: str) -> np.ndarray:
    """Make an (H, W, C) image square: `stretch` leaves it as it is (`resize` stretches it),
    `pad` pads the short side equally on both sides (the odd pixel after) with the per-channel
    median colour of the image's outermost pixels, the slide's background; `center_crop` keeps
    the centred square (the odd pixel before it is dropped)."""
    height, width = image.shape[:2]
    if how == "stretch" or height == width:
        return image
    if how == "center_crop":
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        return np.ascontiguousarray(image[top : top + side, left : left + side])
    if how == "pad":
        side = max(height, width)
        border = np.concatenate([image[0], image[-1], image[1:-1, 0], image[1:-1, -1]])  # (N, C)
        background = np.rint(np.median(border, axis=0)).astype(image.dtype)
        out = np.empty((side, side, *image.shape[2:]), image.dtype)
        out[...] = background
        top, left = (side - height) // 2, (side - width) // 2
        out[top : top + height, left : left + width] = image
        return out
    raise ValueError(f"square must be stretch, pad or center_crop, got {how!r}")
