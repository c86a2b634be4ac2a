"""The pipeline's own images: 8-bit RGB arrays written losslessly, read back, and resized.

Images that users bring, in whatever format, are decoded by `blastcell.ingest` and made square
as `data.square` says (`square`); resizing to the model's input size is the same for the prepare
stage and for `blastcell predict` (`resize`), whatever the image's size: an image too large for
scikit-image's float64 copies is resized by the same arithmetic, a band of lines at a time.
"""

from __future__ import annotations

import math
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import skimage.io
import skimage.transform
from PIL import Image

from blastcell.files import DataError

SKIMAGE_SAMPLES = 2**20  # up to this many samples, `resize` calls scikit-image (16 MiB of copies)
_BAND_BYTES = 4 * 2**20  # the float64 band `_resize_by_bands` filters at a time (fits a cache)


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
    """Resize an RGB uint8 image to (size, size) with anti-aliasing, keeping uint8.

    scikit-image's resize (order 1, anti-aliased, range preserved), rounded: a Gaussian of sigma
    (scale - 1) / 2 along each axis, then linear interpolation. It holds two float64 copies of
    the image (16 bytes a sample: 1.9 GB for 6300 x 6300 RGB), so an image of more than
    SKIMAGE_SAMPLES samples goes through `_resize_by_bands`, which gives the same bytes.
    """
    if image.shape[:2] == (size, size):
        return image
    if image.size > SKIMAGE_SAMPLES:
        out = _resize_by_bands(image, size)
    else:
        out = skimage.transform.resize(
            image, (size, size), order=1, anti_aliasing=True, preserve_range=True
        )
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _resize_by_bands(image: np.ndarray, size: int) -> np.ndarray:
    """`skimage.transform.resize(image, (size, size), order=1, anti_aliasing=True,
    preserve_range=True)` of an (H, W, ...) image, float64, with scipy.ndimage's arithmetic in
    its order (so the same bits, ties included), computed only where the interpolation reads:
    the Gaussian along axis 0 (`gaussian_filter` goes axis by axis) at the two input rows each
    output row reads, a band of columns at a time, then along axis 1 at the columns read, then
    `zoom`'s sum of the four weighted neighbours. Memory: float64 bands of `_BAND_BYTES`, not
    copies of the image."""
    height, width = image.shape[:2]
    rows, row_weights = _zoom_taps(height, size)
    cols, col_weights = _zoom_taps(width, size)
    read_rows, read_cols = np.unique(rows), np.unique(cols)  # sorted
    row_kernel, col_kernel = _gaussian_half(height, size), _gaussian_half(width, size)
    reach = 0 if col_kernel is None else len(col_kernel) - 1
    column_bytes = len(read_rows) * math.prod(image.shape[2:]) * 8  # one column of a band

    def span(first: int, last: int) -> tuple[int, int]:
        """The input columns that the Gaussian reads for read_cols[first:last]."""
        lines = np.arange(read_cols[first] - reach, read_cols[last - 1] + reach + 1)
        lines = _mirrored(lines, width)
        return int(lines.min()), int(lines.max()) + 1

    filtered = np.empty((len(read_rows), len(read_cols), *image.shape[2:]))
    first = 0
    while first < len(read_cols):
        last = first + 1
        low, high = span(first, last)
        while last < len(read_cols):  # widen the band while it fits in _BAND_BYTES
            wider = span(first, last + 1)
            if (wider[1] - wider[0]) * column_bytes > _BAND_BYTES:
                break
            last, (low, high) = last + 1, wider
        band = _correlate(image[:, low:high], read_rows, row_kernel, height)
        at = read_cols[first:last]
        filtered[:, first:last] = _correlate(
            band.swapaxes(0, 1), at, col_kernel, width, low
        ).swapaxes(0, 1)
        first = last
    r0, r1 = np.searchsorted(read_rows, rows)
    c0, c1 = np.searchsorted(read_cols, cols)
    rest = (np.newaxis,) * (image.ndim - 2)
    w_r0, w_r1 = (w[(slice(None), np.newaxis, *rest)] for w in row_weights)
    w_c0, w_c1 = (w[(np.newaxis, slice(None), *rest)] for w in col_weights)
    out = (filtered[r0][:, c0] * w_r0) * w_c0  # zoom's order: rows, then columns
    out += (filtered[r0][:, c1] * w_r0) * w_c1
    out += (filtered[r1][:, c0] * w_r1) * w_c0
    out += (filtered[r1][:, c1] * w_r1) * w_c1
    return np.clip(out, image.min(), image.max(), out=out)  # skimage clips to the input's range


def _mirror_coordinate(at: float, n: int) -> float:
    """A coordinate outside [0, n - 1] mirrored into it, as scipy.ndimage's 'mirror' mode
    (skimage's 'reflect') maps it (`map_coordinate` in ni_interpolation.c)."""
    if n <= 1:
        return 0.0 if at < 0 or at > n - 1 else at
    period = 2 * n - 2
    if at < 0:
        at = period * int(-at / period) + at
        return at + period if at <= 1 - n else -at
    if at > n - 1:
        at -= period * int(at / period)
        return period - at if at >= n else at
    return at


def _mirrored(lines: np.ndarray, n: int) -> np.ndarray:
    """Line indices mirrored into range(n): d c b | a b c d | c b a, as ndimage extends lines."""
    if n == 1:
        return np.zeros_like(lines)
    period = 2 * n - 2
    lines = lines % period
    return np.where(lines < n, lines, period - lines)


def _zoom_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """For each of n_out output lines, the two input lines that `scipy.ndimage.zoom` (order 1,
    grid mode, mirror) reads, (2, n_out), and their weights, (2, n_out)."""
    zoom = n_in / n_out
    lines = np.empty((2, n_out), np.intp)
    weights = np.empty((2, n_out))
    for k in range(n_out):
        at = _mirror_coordinate((k + 0.5) * zoom - 0.5, n_in)
        start = math.floor(at)
        lines[:, k] = start, start + 1
        weights[0, k] = 1.0 - (at - start)
        weights[1, k] = 1.0 - weights[0, k]  # as ni_splines.c: the weights sum to 1
    return _mirrored(lines, n_in), weights


def _gaussian_half(n_in: int, n_out: int) -> np.ndarray | None:
    """The anti-aliasing Gaussian of resizing n_in lines to n_out, from its centre outward
    (`scipy.ndimage.gaussian_filter1d`'s kernel, truncated at 4 sigma), or None where sigma is
    0: scipy then leaves the axis alone."""
    sigma = max(0.0, (n_in / n_out - 1) / 2)
    if sigma <= 1e-15:
        return None
    radius = int(4.0 * sigma + 0.5)
    x = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / (sigma * sigma) * x**2)
    return (phi / phi.sum())[radius:]


def _correlate(
    x: np.ndarray, lines: np.ndarray, half: np.ndarray | None, n: int, first: int = 0
) -> np.ndarray:
    """The Gaussian along axis 0 at `lines`, float64, with `correlate1d`'s loop for a symmetric
    kernel: centre * w0, then + (left + right) * wj from the farthest pair inward. `x` holds the
    lines first.. of an axis of n lines, and every line the kernel reaches from `lines`."""
    out = x[lines - first].astype(np.float64)
    if half is None:
        return out
    out *= half[0]
    for j in range(len(half) - 1, 0, -1):
        left, right = _mirrored(lines - j, n) - first, _mirrored(lines + j, n) - first
        pair = np.add(x[left], x[right], dtype=np.float64)
        pair *= half[j]
        out += pair
    return out


def shrunk(image: np.ndarray, side: int) -> np.ndarray:
    """An RGB uint8 image with no side over `side` pixels: reduced by the smallest whole factor
    that does it (Pillow's `reduce`, the mean of each factor x factor box), or itself."""
    factor = -(-max(image.shape[:2]) // side)  # ceiling division
    if factor <= 1:
        return image
    return np.asarray(Image.fromarray(image).reduce(factor))


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
