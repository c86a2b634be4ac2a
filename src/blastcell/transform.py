"""Random geometric augmentation equivalent to Keras's legacy ``ImageDataGenerator``.

Reimplements ``get_random_transform`` / ``apply_transform`` / ``apply_affine_transform`` of
``keras.src.legacy.preprocessing.image`` with scikit-image and numpy only.

Geometry (reproduced exactly, including Keras's quirks):

* The 3x3 matrix is ``rotation @ shift @ shear @ zoom`` with ``shift = [[1, 0, tx], [0, 1, ty]]``,
  ``shear = [[1, -sin(s), 0], [0, cos(s), 0]]`` and ``zoom = diag(zx, zy)``; it is conjugated by
  a translation to ``o = (H / 2 - 0.5, W / 2 - 0.5)`` (note: *minus* 0.5, as in Keras's
  ``transform_matrix_offset_center``), giving ``C``.
* Keras then swaps rows/columns of ``C`` and hands it to ``scipy.ndimage.affine_transform``,
  which maps *output* (row, col) to *input* (row, col).  Swapping twice is the identity, so in
  scikit-image's (x=col, y=row) convention the inverse map of ``skimage.transform.warp`` is ``C``
  itself.  Consequence (a Keras quirk, kept on purpose): the first matrix coordinate is the
  *column*, so ``tx`` (drawn as a fraction of H) moves content along columns, ``ty`` (fraction of
  W) along rows, and for non-square images the rotation/zoom centre is (row=W/2-0.5, col=H/2-0.5)
  instead of the image centre.
* Flips are applied after the warp (horizontal = columns reversed, vertical = rows reversed).

Fill modes (Keras/scipy name -> what is done here):

* ``constant``: scipy's legacy ``constant`` does *not* blend with ``cval`` near the border; any
  output pixel whose source coordinate lies outside ``[0, H-1] x [0, W-1]`` becomes ``cval`` and
  the rest is interpolated from in-bounds pixels.  skimage's ``constant`` blends edge pixels with
  ``cval`` (scipy's ``grid-constant``), so we warp with skimage ``edge`` and mask with numpy.
* ``nearest`` -> skimage ``edge`` (identical: ``a a a | a b c d | d d d``).
* ``reflect`` -> skimage ``symmetric`` (identical half-sample mirror: ``b a | a b c d | d c``).
* ``wrap``: scipy's legacy ``wrap`` has period ``n - 1`` (first and last samples overlap), unlike
  skimage/numpy ``wrap`` (period ``n``); we fold the source coordinates with scipy's formula and
  interpolate with ``edge``.

Interpolation is bilinear (order 1); the result is cast to float32 (Keras works on float32
arrays), rounded half to even with ``np.rint`` and clipped to ``0..255``.

Memory: scikit-image's ``warp`` holds float64 copies of the whole image (its input, each
channel's output, the stacked result: 8 bytes a sample each, about 950 MB apiece at 6300 x 6300
RGB). An image of more than ``SKIMAGE_SAMPLES`` samples is warped by :func:`_warp_by_bands`
instead, a band of output rows at a time, reading the uint8 image where the interpolation needs
it, with the same floating-point operations in the same order: the same bytes.

The settings are the ``augment`` section of params.yaml (``AugmentParams``), checked there;
:func:`source_rng` gives each source image its own random stream. Writing a data set's copies is
the augment stage's (``blastcell.augment``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.transform import AffineTransform, warp

from blastcell.params import AugmentParams, FillMode

__all__ = [
    "Transform",
    "apply_transform",
    "augment_image",
    "random_transform",
    "source_rng",
    "transform_matrix",
]

_SKIMAGE_MODE = {"constant": "edge", "nearest": "edge", "reflect": "symmetric", "wrap": "edge"}
SKIMAGE_SAMPLES = 2**20  # up to this many samples, scikit-image warps the image (32 MiB of copies)
_BAND_SAMPLES = 2**16  # output samples `_warp_by_bands` computes at a time (512 KiB each
# float64 temporary; a band is at least one row)


@dataclass(frozen=True)
class Transform:
    """One random draw of augmentation parameters, in Keras's units."""

    theta: float = 0.0
    tx: float = 0.0
    ty: float = 0.0
    shear: float = 0.0
    zx: float = 1.0
    zy: float = 1.0
    flip_horizontal: bool = False
    flip_vertical: bool = False


def _check_image(image: np.ndarray) -> None:
    """Raise ValueError unless ``image`` is a non-empty uint8 (H, W) or (H, W, C) array."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ValueError(f"image must be a uint8 numpy array, got {getattr(image, 'dtype', None)}")
    if image.ndim not in (2, 3) or 0 in image.shape:
        raise ValueError(f"image must be non-empty (H, W) or (H, W, C), got shape {image.shape}")


def random_transform(
    rng: np.random.Generator, shape: tuple[int, int], settings: AugmentParams
) -> Transform:
    """Draw one Transform for an image of ``shape`` (H, W) from ``rng``, in Keras's order and
    with Keras's (float) semantics, within the ranges of ``settings``."""
    if not isinstance(rng, np.random.Generator):  # a RandomState would draw another stream
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    h, w = shape
    if h <= 0 or w <= 0:
        raise ValueError(f"shape must be a positive (height, width), got {shape!r}")
    rotation_range = settings.rotation_range
    width_shift_range = settings.width_shift_range
    height_shift_range = settings.height_shift_range
    shear_range = settings.shear_range
    zoom_range = settings.zoom_range

    theta = rng.uniform(-rotation_range, rotation_range) if rotation_range else 0.0
    tx = 0.0
    if height_shift_range:
        tx = rng.uniform(-height_shift_range, height_shift_range)
        if height_shift_range < 1:  # always, within params' range: 1 or more is in pixels
            tx *= h
    ty = 0.0
    if width_shift_range:
        ty = rng.uniform(-width_shift_range, width_shift_range)
        if width_shift_range < 1:
            ty *= w
    shear = rng.uniform(-shear_range, shear_range) if shear_range else 0.0
    zx = zy = 1.0
    if zoom_range:
        zx, zy = rng.uniform(1.0 - zoom_range, 1.0 + zoom_range, 2)
    # Keras always consumes one draw per flip, whether or not the flip is enabled.
    flip_h = bool(rng.random() < 0.5) and settings.horizontal_flip
    flip_v = bool(rng.random() < 0.5) and settings.vertical_flip
    return Transform(
        theta=float(theta),
        tx=float(tx),
        ty=float(ty),
        shear=float(shear),
        zx=float(zx),
        zy=float(zy),
        flip_horizontal=flip_h,
        flip_vertical=flip_v,
    )


def transform_matrix(t: Transform, shape: tuple[int, int]) -> np.ndarray | None:
    """Return Keras's centred 3x3 output->input matrix in skimage (x=col, y=row) order, or None."""
    h, w = shape
    matrix: np.ndarray | None = None
    if t.theta != 0:
        a = np.deg2rad(t.theta)
        matrix = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    if t.tx != 0 or t.ty != 0:
        shift = np.array([[1, 0, t.tx], [0, 1, t.ty], [0, 0, 1]])
        matrix = shift if matrix is None else matrix @ shift
    if t.shear != 0:
        s = np.deg2rad(t.shear)
        shear = np.array([[1, -np.sin(s), 0], [0, np.cos(s), 0], [0, 0, 1]])
        matrix = shear if matrix is None else matrix @ shear
    if t.zx != 1 or t.zy != 1:
        zoom = np.array([[t.zx, 0, 0], [0, t.zy, 0], [0, 0, 1]])
        matrix = zoom if matrix is None else matrix @ zoom
    if matrix is None:
        return None
    o_x = h / 2 - 0.5
    o_y = w / 2 - 0.5
    offset = np.array([[1, 0, o_x], [0, 1, o_y], [0, 0, 1]])
    reset = np.array([[1, 0, -o_x], [0, 1, -o_y], [0, 0, 1]])
    return offset @ matrix @ reset


def _source_coords(
    matrix: np.ndarray, rows: np.ndarray, cols: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Map output (rows, cols) to input (rows, cols) with scipy.ndimage's operation order."""
    # ``matrix`` is C (x=col, y=row).  scipy (1.17) evaluates
    # ``(offset[i] + out0 * m[i, 0]) + out1 * m[i, 1]`` on Keras's swapped matrix ``m = P C P``;
    # keeping that order (checked empirically on ~1500 border-prone transforms) makes the
    # exact-border in/out decisions agree bit for bit (e.g. rotating by 180 degrees).
    src_rows = (matrix[1, 2] + rows * matrix[1, 1]) + cols * matrix[1, 0]
    src_cols = (matrix[0, 2] + rows * matrix[0, 1]) + cols * matrix[0, 0]
    return src_rows, src_cols


def _scipy_wrap(coord: np.ndarray, n: int) -> np.ndarray:
    """Fold coordinates like scipy.ndimage's legacy 'wrap' mode (period n - 1)."""
    if n <= 1:
        return np.zeros_like(coord)
    period = n - 1
    out = coord.copy()
    low = out < 0
    out[low] += period * (np.floor(-out[low] / period) + 1)
    high = out > period
    out[high] -= period * np.floor(out[high] / period)
    return out


def _warp_channels(
    image: np.ndarray, matrix: np.ndarray, fill_mode: str, cval: float
) -> np.ndarray:
    """Warp a float64 (H, W, C) image by the output->input ``matrix`` with Keras's fill rules."""
    h, w = image.shape[:2]
    mode = _SKIMAGE_MODE[fill_mode]
    if fill_mode == "wrap":

        def inverse_map(xy: np.ndarray) -> np.ndarray:
            """Map output (x, y) to scipy-'wrap'-folded input (x, y)."""
            src_rows, src_cols = _source_coords(matrix, xy[:, 1], xy[:, 0])
            return np.column_stack([_scipy_wrap(src_cols, w), _scipy_wrap(src_rows, h)])

        return warp(image, inverse_map, order=1, mode=mode, preserve_range=True, clip=False)
    out = warp(
        image, AffineTransform(matrix=matrix), order=1, mode=mode, preserve_range=True, clip=False
    )
    if fill_mode == "constant":
        rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
        src_rows, src_cols = _source_coords(matrix, rows, cols)
        outside = (src_rows < 0) | (src_rows > h - 1) | (src_cols < 0) | (src_cols > w - 1)
        out[outside] = cval
    return out


def apply_transform(
    image: np.ndarray, t: Transform, *, fill_mode: FillMode, cval: float
) -> np.ndarray:
    """Apply ``t`` to a uint8 (H, W) or (H, W, C) image like Keras; return uint8 of same shape.

    ``fill_mode`` and ``cval`` fill the points outside the image (``augment.fill_mode`` and
    ``augment.cval``: one of ``params.choices(params.FillMode)``, and 0 to 255).
    """
    _check_image(image)
    matrix = transform_matrix(t, image.shape[:2])
    if matrix is not None and image.size > SKIMAGE_SAMPLES:
        return _warp_by_bands(image, matrix, t, fill_mode, cval)
    if matrix is None:
        out = image
    else:
        planar = image[..., np.newaxis] if image.ndim == 2 else image
        warped = _warp_channels(planar.astype(np.float64), matrix, fill_mode, cval)
        # Keras holds images as float32, so round from the float32 value it would produce.
        warped = np.rint(warped.astype(np.float32))
        out = np.clip(warped, 0, 255).astype(np.uint8).reshape(image.shape)
    if t.flip_horizontal:
        out = out[:, ::-1]
    if t.flip_vertical:
        out = out[::-1]
    return np.array(out, dtype=np.uint8, copy=True, order="C")


def _warp_by_bands(
    image: np.ndarray, matrix: np.ndarray, t: Transform, fill_mode: str, cval: float
) -> np.ndarray:
    """`apply_transform`'s result (`matrix` not None), a band of output rows at a time: the
    uint8 result and float64 bands of `_BAND_SAMPLES` in memory, not float64 copies of the
    image."""
    height, width = image.shape[:2]
    planar = np.ascontiguousarray(image.reshape(height, width, -1))  # (H, W, C)
    out = np.empty_like(planar)
    target = out[::-1] if t.flip_vertical else out  # the flips: each band written where it lands
    target = target[:, ::-1] if t.flip_horizontal else target
    band_rows = max(1, _BAND_SAMPLES // planar[0].size)
    cols = np.arange(width, dtype=np.float64)[np.newaxis, :]  # (1, W)
    for first in range(0, height, band_rows):
        rows = np.arange(first, min(first + band_rows, height), dtype=np.float64)[:, np.newaxis]
        band = _warp_band(planar, matrix, rows, cols, fill_mode, cval)  # (B, W, C)
        # Keras holds images as float32, so round from the float32 value it would produce.
        target[first : first + len(rows)] = np.clip(np.rint(band.astype(np.float32)), 0, 255)
    return out.reshape(image.shape)


def _warp_band(
    image: np.ndarray,
    matrix: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    fill_mode: str,
    cval: float,
) -> np.ndarray:
    """`_warp_channels`'s float64 values at output `rows` (B, 1) x `cols` (1, W) of a uint8
    (H, W, C) image, bit for bit: (B, W, C).

    Each output sample depends only on its own coordinates and the input, so the same
    operations give the same bits: for constant, nearest and reflect, scikit-image's
    `_warp_fast` (an affine matrix, order 1, one channel at a time), reproduced by `_bilinear`;
    for wrap, `scipy.ndimage.map_coordinates` itself, on one uint8 channel at a time (it reads
    samples as float64, and the 3-D call's channel coordinate weighs its terms by exactly 1
    and 0).
    """
    height, width, channels = image.shape
    src_rows, src_cols = _source_coords(matrix, rows, cols)  # (B, W)
    if fill_mode == "wrap":
        coords = np.stack([_scipy_wrap(src_rows, height), _scipy_wrap(src_cols, width)])
        band = np.empty((*src_rows.shape, channels), np.float64)
        for channel in range(channels):
            ndi.map_coordinates(
                image[..., channel],
                coords,
                output=band[..., channel],
                order=1,
                mode="nearest",
                cval=0.0,
                prefilter=False,
            )
        return band
    skimage_matrix = AffineTransform(matrix=matrix).params.astype(np.float64)  # `warp`'s
    band = _bilinear(image, skimage_matrix, rows, cols, _SKIMAGE_MODE[fill_mode])
    if fill_mode == "constant":
        outside = (
            (src_rows < 0) | (src_rows > height - 1) | (src_cols < 0) | (src_cols > width - 1)
        )
        band[outside] = cval
    return band


def _bilinear(
    image: np.ndarray, matrix: np.ndarray, rows: np.ndarray, cols: np.ndarray, mode: str
) -> np.ndarray:
    """scikit-image's `_warp_fast` with an affine `matrix` and order 1 at output (rows, cols)
    of a uint8 (H, W, C) image, float64 (B, W, C), in its operation order: `matrix` maps
    (x=col, y=row) as ``(m[0] * x + m[1] * y) + m[2]``, then `bilinear_interpolation` blends
    the four neighbours that `get_pixel2d` reads (edge or symmetric). numpy rounds each
    product and sum as the compiled loop does where it fuses no multiply-add (x86-64 wheels);
    tests/test_transform.py compares the bits with scikit-image's wherever it runs."""
    height, width, channels = image.shape
    src_cols = (matrix[0, 0] * cols + matrix[0, 1] * rows) + matrix[0, 2]  # (B, W)
    src_rows = (matrix[1, 0] * cols + matrix[1, 1] * rows) + matrix[1, 2]
    min_r, min_c = np.floor(src_rows), np.floor(src_cols)
    max_r, max_c = np.ceil(src_rows), np.ceil(src_cols)
    # The weights repeated per channel (B, W, C): numpy is slow to broadcast a last axis.
    dr, dc = (
        np.repeat(d[..., np.newaxis], channels, axis=-1)
        for d in (src_rows - min_r, src_cols - min_c)
    )
    r0, r1 = (_fold(r, height, mode) * width for r in (min_r, max_r))
    c0, c1 = (_fold(c, width, mode) for c in (min_c, max_c))
    flat = image.reshape(height * width, channels)

    def at(row: np.ndarray, col: np.ndarray) -> np.ndarray:
        """The (B, W, C) uint8 samples at flat row offsets `row` and columns `col`."""
        return np.take(flat, row + col, axis=0)

    top = (1 - dc) * at(r0, c0) + dc * at(r0, c1)
    bottom = (1 - dc) * at(r1, c0) + dc * at(r1, c1)
    return (1 - dr) * top + dr * bottom


def _fold(coord: np.ndarray, n: int, mode: str) -> np.ndarray:
    """Integer-valued float coordinates to indices in ``0..n-1`` like scikit-image's
    `coord_map`: ``edge`` clamps, ``symmetric`` mirrors (``b a | a b c d | d c``)."""
    index = coord.astype(np.int64)
    if mode == "edge":
        return np.clip(index, 0, n - 1)
    outside = (index < 0) | (index > n - 1)
    if outside.any():
        far = index[outside]
        far = np.where(far < 0, -far - 1, far)  # from here on >= 0: C's / and % are // and %
        index[outside] = np.where(
            far > n - 1, np.where((far // n) % 2 != 0, n - 1 - far % n, far % n), far
        )
    return index


def augment_image(
    image: np.ndarray, rng: np.random.Generator, settings: AugmentParams
) -> np.ndarray:
    """Draw a random Transform for ``image`` from ``rng`` with ``settings`` and apply it."""
    _check_image(image)
    t = random_transform(rng, image.shape[:2], settings)
    return apply_transform(image, t, fill_mode=settings.fill_mode, cval=settings.cval)


def source_rng(seed: int, key: str) -> np.random.Generator:
    """A Generator keyed by the seed and the source image's path, independent of listing order."""
    digest = np.frombuffer(hashlib.sha256(key.encode()).digest()[:8], dtype=np.uint32)
    return np.random.default_rng([seed, *digest.tolist()])
