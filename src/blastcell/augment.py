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

:func:`write_sets` augments and writes a data set's images in worker processes, for the
augment stage; it calls the writer it is given.
"""

from __future__ import annotations

import hashlib
import math
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import numpy as np
from skimage.transform import AffineTransform, warp

from blastcell.data import DataError
from blastcell.params import FILL_MODES, AugmentParams

__all__ = [
    "FILL_MODES",
    "Source",
    "Transform",
    "apply_transform",
    "augment_image",
    "copies",
    "output_stem",
    "random_transform",
    "source_rng",
    "transform_matrix",
    "write_sets",
]

# FILL_MODES (Keras names) is defined with the params that choose among them.
_SKIMAGE_MODE = {"constant": "edge", "nearest": "edge", "reflect": "symmetric", "wrap": "edge"}


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


def _check_range(name: str, value: float) -> float:
    """Return ``value`` as float, raising ValueError unless it is finite and >= 0."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(out) or out < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    return out


def _check_image(image: np.ndarray) -> None:
    """Raise ValueError unless ``image`` is a non-empty uint8 (H, W) or (H, W, C) array."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ValueError(f"image must be a uint8 numpy array, got {getattr(image, 'dtype', None)}")
    if image.ndim not in (2, 3) or 0 in image.shape:
        raise ValueError(f"image must be non-empty (H, W) or (H, W, C), got shape {image.shape}")


def _check_shape(shape: tuple[int, int]) -> tuple[int, int]:
    """Return ``shape`` as (H, W) ints, raising ValueError unless it is two positive ints."""
    try:
        h, w = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be a (height, width) pair, got {shape!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"shape must be positive, got {shape!r}")
    return h, w


def random_transform(
    rng: np.random.Generator,
    shape: tuple[int, int],
    *,
    rotation_range: float,
    width_shift_range: float,
    height_shift_range: float,
    shear_range: float,
    zoom_range: float,
    horizontal_flip: bool,
    vertical_flip: bool,
) -> Transform:
    """Draw one Transform from ``rng`` in Keras's order and with Keras's (float) semantics."""
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    h, w = _check_shape(shape)
    rotation_range = _check_range("rotation_range", rotation_range)
    width_shift_range = _check_range("width_shift_range", width_shift_range)
    height_shift_range = _check_range("height_shift_range", height_shift_range)
    shear_range = _check_range("shear_range", shear_range)
    zoom_range = _check_range("zoom_range", zoom_range)
    if zoom_range >= 1:
        raise ValueError(f"zoom_range must be < 1 (zoom factors must stay > 0), got {zoom_range}")

    theta = rng.uniform(-rotation_range, rotation_range) if rotation_range else 0.0
    tx = 0.0
    if height_shift_range:
        tx = rng.uniform(-height_shift_range, height_shift_range)
        if height_shift_range < 1:
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
    flip_h = bool(rng.random() < 0.5) and bool(horizontal_flip)
    flip_v = bool(rng.random() < 0.5) and bool(vertical_flip)
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
    h, w = _check_shape(shape)
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
    image: np.ndarray, t: Transform, *, fill_mode: str = "constant", cval: float = 125.0
) -> np.ndarray:
    """Apply ``t`` to a uint8 (H, W) or (H, W, C) image like Keras; return uint8 of same shape."""
    _check_image(image)
    if not isinstance(t, Transform):
        raise ValueError(f"t must be a Transform, got {type(t).__name__}")
    if fill_mode not in FILL_MODES:
        raise ValueError(f"fill_mode must be one of {FILL_MODES}, got {fill_mode!r}")
    cval = _check_range("cval", cval)
    if cval > 255:
        raise ValueError(f"cval must be in 0..255, got {cval}")

    matrix = transform_matrix(t, image.shape[:2])
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


def augment_image(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    rotation_range: float = 45.0,
    width_shift_range: float = 0.2,
    height_shift_range: float = 0.2,
    shear_range: float = 0.2,
    zoom_range: float = 0.2,
    horizontal_flip: bool = True,
    vertical_flip: bool = False,
    fill_mode: str = "constant",
    cval: float = 125.0,
) -> np.ndarray:
    """Draw a random Transform for ``image`` (seed-project defaults) and apply it."""
    _check_image(image)
    t = random_transform(
        rng,
        (image.shape[0], image.shape[1]),
        rotation_range=rotation_range,
        width_shift_range=width_shift_range,
        height_shift_range=height_shift_range,
        shear_range=shear_range,
        zoom_range=zoom_range,
        horizontal_flip=horizontal_flip,
        vertical_flip=vertical_flip,
    )
    return apply_transform(image, t, fill_mode=fill_mode, cval=cval)


def source_rng(seed: int, key: str) -> np.random.Generator:
    """A Generator keyed by the seed and the source image's path, independent of listing order."""
    digest = np.frombuffer(hashlib.sha256(key.encode()).digest()[:8], dtype=np.uint32)
    return np.random.default_rng([seed, *digest.tolist()])


def _settings(params: AugmentParams) -> dict[str, object]:
    """The keyword arguments of :func:`augment_image` that ``params`` sets."""
    return {
        "rotation_range": params.rotation_range,
        "width_shift_range": params.width_shift_range,
        "height_shift_range": params.height_shift_range,
        "shear_range": params.shear_range,
        "zoom_range": params.zoom_range,
        "horizontal_flip": params.horizontal_flip,
        "vertical_flip": params.vertical_flip,
        "fill_mode": params.fill_mode,
        "cval": params.cval,
    }


def _copies(
    image: np.ndarray, key: str, n: int, settings: dict[str, object], seed: int
) -> list[np.ndarray]:
    rng = source_rng(seed, key)
    return [augment_image(image, rng, **settings) for _ in range(n)]


def copies(image: np.ndarray, key: str, params: AugmentParams, seed: int) -> list[np.ndarray]:
    """The `params.copies` augmented copies of one source image, from its own random stream."""
    return _copies(image, key, params.copies, _settings(params), seed)


def output_stem(key: str) -> str:
    """The file-name stem of a source's augmented set: its relative path, '/' as '__'."""
    return str(PurePosixPath(key).with_suffix("")).replace("/", "__")


class Source(NamedTuple):
    """One source image for :func:`write_sets`."""

    path: str  # the input file, named in errors
    key: str  # seeds its copies (see source_rng)
    stem: str  # its files are {stem}_{k}.png, k = 0 for the original, 1.. for the copies
    pixels: np.ndarray
    keep: bool  # hand the original and its copies back (e.g. for a preview)


Writer = Callable[[Path, np.ndarray], None]


def _write_set(
    folder: Path, source: Source, n: int, settings: dict[str, object], seed: int, write: Writer
) -> list[np.ndarray] | None:
    """Augment one source and write it with its copies; run in a worker process."""
    try:
        images = [source.pixels, *_copies(source.pixels, source.key, n, settings, seed)]
        for k, pixels in enumerate(images):
            write(folder / f"{source.stem}_{k}.png", pixels)
    except Exception as err:  # anything: name the file, whichever process it happened in
        raise DataError(f"{source.path}: cannot augment or write its copies: {err}") from err
    return images if source.keep else None


def _pool_context() -> multiprocessing.context.BaseContext:
    """forkserver (else spawn), not fork: the caller may hold threads (e.g. TensorFlow's)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    # Have the server import this module (numpy, scikit-image: ~0.5 s) once, before it forks
    # the workers, rather than each worker import it.  This is the process's one forkserver:
    # it applies only if none was started yet, and keeps its default, "__main__".
    context.set_forkserver_preload(["__main__", __name__])
    return context


def write_sets(
    folder: Path,
    sources: Iterable[Source],
    params: AugmentParams,
    seed: int,
    *,
    workers: int = 1,
    write: Writer,
) -> Iterator[tuple[Source, list[np.ndarray] | None]]:
    """Write every source (copy 0) and its `params.copies` copies into `folder` as PNG.

    Yields ``(source, images)`` in the order of ``sources`` once its files are written;
    ``images`` is ``[original, *copies]`` if ``source.keep``, else None, so only the sources
    kept come back.  ``workers`` processes (0 = one per CPU core) augment and write; with one,
    everything runs in this process.  ``sources`` is read lazily in this process, at most
    ``2 * workers`` sources ahead of the last one written, so memory does not grow with the
    data set.  ``write(path, image)`` must be picklable (a module-level function) for
    ``workers > 1``.  Each source's copies come from its own random stream (``source_rng(seed,
    source.key)``), so the files are byte-identical whatever the number of workers.  A source
    that fails raises DataError naming its path; an error raised while reading ``sources``
    comes after those of the sources before it, as with one process.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(
            f"workers must be an integer >= 0 (0 = one per CPU core), got {workers!r}"
        )
    workers = workers or os.cpu_count() or 1
    # Read every setting here: the params trace sees this process, not the workers.
    task = (params.copies, _settings(params), seed, write)
    folder = Path(folder)
    if workers == 1:
        for source in sources:
            yield source, _write_set(folder, source, *task)
        return
    pool = ProcessPoolExecutor(workers, mp_context=_pool_context())
    try:
        pending: deque[tuple[Source, Future]] = deque()
        it = iter(sources)
        while True:
            try:
                source = next(it, None)
            except Exception:
                for _, future in pending:  # an earlier source's error comes first
                    future.result()
                raise
            if source is None:
                break
            pending.append((source, pool.submit(_write_set, folder, source, *task)))
            if len(pending) > 2 * workers:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()
    finally:  # on an error, drop what is queued and wait for what runs: no file comes later
        pool.shutdown(wait=True, cancel_futures=True)
