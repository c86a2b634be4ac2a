"""Synthetic blood-smear single-cell crops in the style of ALL-IDB2.

The real ALL-IDB2 images cannot be redistributed, so the pipeline ships this generator to
produce a default data set with the same layout: square RGB crops with one leukocyte near the
centre, surrounded by erythrocytes on a pale background.  Label 1 is an acute lymphoblastic
leukaemia lymphoblast ("blast"), label 0 a mature lymphocyte ("not blast").

Images are rendered with a simple transmitted-light model: every structure contributes an
optical density (OD) per colour channel and the pixel colour is
``background * illumination * exp(-OD)``.  Overlapping erythrocytes therefore look darker, as
on a real smear.  Stain strength/hue, background tint, illumination gradient, blur and sensor
noise are drawn from the same distributions for both classes, so only the leukocyte itself
carries the class signal.

Only numpy and scikit-image are used; this module does no file I/O.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from skimage.filters import gaussian

__all__ = ["dataset", "draw_cell", "file_name", "image_at"]

MIN_SIZE = 16
_REF_SIZE = 257.0

# Transmitted colour of one unit of each stain on a white background (RGB, in (0, 1]).
_EOSIN_RGB = np.array([0.86, 0.52, 0.56])  # erythrocytes: pink-red
_NUCLEUS_RGB = np.array([0.46, 0.30, 0.62])  # azure/haematoxylin: purple
_CYTO_RGB = np.array([0.62, 0.74, 0.92])  # basophilic cytoplasm: blue
_BACKGROUND_RGB = np.array([0.94, 0.90, 0.87])  # pale cream / pinkish plasma


def _od(rgb: np.ndarray) -> np.ndarray:
    return -np.log(rgb)


# ----------------------------------------------------------------------------- validation


def _check_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return int(value)


def _check_label(label: object) -> int:
    label = _check_int("label", label)
    if label not in (0, 1):
        raise ValueError(f"label must be 0 or 1, got {label}")
    return label


def _check_size(size: object) -> int:
    size = _check_int("size", size)
    if size < MIN_SIZE:
        raise ValueError(f"size must be >= {MIN_SIZE}, got {size}")
    return size


def _check_counts(n_blast: object, n_not_blast: object) -> tuple[int, int]:
    n_blast = _check_int("n_blast", n_blast)
    n_not_blast = _check_int("n_not_blast", n_not_blast)
    if n_blast < 0:
        raise ValueError(f"n_blast must be >= 0, got {n_blast}")
    if n_not_blast < 0:
        raise ValueError(f"n_not_blast must be >= 0, got {n_not_blast}")
    if n_blast + n_not_blast == 0:
        raise ValueError("n_blast and n_not_blast are both 0; at least one image is required")
    return n_blast, n_not_blast


def _check_seed(seed: object) -> int:
    seed = _check_int("seed", seed)
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return seed


# ----------------------------------------------------------------------------- geometry


def _window(cy: float, cx: float, extent: float, size: int):
    """Slices of the crop covering a square of half-width ``extent`` around (cy, cx),
    plus the row/column offsets (broadcastable) from the centre; None if off-crop."""
    y0 = max(int(np.floor(cy - extent)), 0)
    y1 = min(int(np.ceil(cy + extent)) + 1, size)
    x0 = max(int(np.floor(cx - extent)), 0)
    x1 = min(int(np.ceil(cx + extent)) + 1, size)
    if y0 >= y1 or x0 >= x1:
        return None
    dy = (np.arange(y0, y1, dtype=np.float64) - cy)[:, None]
    dx = (np.arange(x0, x1, dtype=np.float64) - cx)[None, :]
    return (slice(y0, y1), slice(x0, x1)), dy, dx


def _soft_inside(dist: np.ndarray, radius: np.ndarray | float, edge: float) -> np.ndarray:
    """Anti-aliased indicator of ``dist < radius`` with a ramp ``edge`` pixels wide."""
    return np.clip(0.5 + (radius - dist) / edge, 0.0, 1.0)


def _radial_profile(
    theta: np.ndarray, rng: np.random.Generator, amplitude: float, harmonics: int
) -> np.ndarray:
    """Multiplicative contour perturbation 1 + sum_k a_k cos(k theta + phi_k), k = 2..harmonics."""
    out = np.ones_like(theta)
    for k in range(2, harmonics + 1):
        a = amplitude * rng.uniform(0.3, 1.0) / (k - 1) ** 0.7
        out += a * np.cos(k * theta + rng.uniform(0.0, 2.0 * np.pi))
    return out


def _smooth_noise(shape: tuple[int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-std gaussian-filtered white noise (correlation length ~sigma px)."""
    field = gaussian(rng.standard_normal(shape), sigma=max(sigma, 0.3), mode="reflect")
    std = field.std()
    return (field - field.mean()) / std if std > 0 else field


# ----------------------------------------------------------------------------- rendering


def _erythrocytes(
    size: int,
    rng: np.random.Generator,
    rbc_diameter: float,
    centre: tuple[float, float],
    edge: float,
) -> np.ndarray:
    """Eosin density field of 5-14 erythrocytes kept clear of the centre cell's middle."""
    density = np.zeros((size, size))
    n_rbc = int(rng.integers(5, 15))
    # Class-independent keep-out radius around the leukocyte centre: red cells may touch or be
    # partly hidden by the leukocyte, but none is centred on it.
    keep_out = rng.uniform(0.17, 0.22) * size
    cand = rng.uniform(-0.08 * size, 1.08 * size, size=(64, 2))
    far = np.hypot(cand[:, 0] - centre[0], cand[:, 1] - centre[1]) > keep_out
    cand = cand[far][:n_rbc]
    for cy, cx in cand:
        radius = 0.5 * rbc_diameter * rng.uniform(0.93, 1.07)
        aspect = rng.uniform(0.88, 1.0)
        phi = rng.uniform(0.0, np.pi)
        pallor = rng.uniform(0.4, 0.7)
        strength = rng.uniform(0.85, 1.1)
        win = _window(cy, cx, radius + 2.0 * edge, size)
        if win is None:
            continue
        sl, dy, dx = win
        u = dx * np.cos(phi) + dy * np.sin(phi)
        v = (-dx * np.sin(phi) + dy * np.cos(phi)) / aspect
        dist = np.sqrt(u * u + v * v)
        disc = _soft_inside(dist, radius, edge)
        # Lighter central pallor of the biconcave disc.
        profile = 1.0 - pallor * np.exp(-((dist / (0.45 * radius)) ** 2))
        density[sl] += strength * disc * profile
    return density


def _leukocyte(
    label: int,
    size: int,
    rng: np.random.Generator,
    rbc_diameter: float,
    centre: tuple[float, float],
    edge: float,
    scale: float,
):
    """Return (window slices, cell alpha, cytoplasm density, nucleus density) of the leukocyte."""
    blast = label == 1
    if blast:
        cell_d = rbc_diameter * rng.uniform(1.25, 2.0)
        ratio = rng.uniform(0.8, 0.9)
        cell_irreg, nuc_irreg, nuc_harm = 0.03, rng.uniform(0.03, 0.09), 6
        nuc_density = rng.uniform(0.9, 1.15)
        cyto_density = rng.uniform(0.8, 1.15)
        chrom_sigma, chrom_amp = 0.9 * scale, rng.uniform(0.08, 0.14)
        offset_frac = rng.uniform(0.0, 0.5)
    else:
        cell_d = rbc_diameter * rng.uniform(0.9, 1.35)
        ratio = rng.uniform(0.7, 0.85)
        cell_irreg, nuc_irreg, nuc_harm = 0.02, rng.uniform(0.01, 0.04), 4
        nuc_density = rng.uniform(1.2, 1.5)
        cyto_density = rng.uniform(0.4, 0.7)
        chrom_sigma, chrom_amp = 2.8 * scale, rng.uniform(0.25, 0.4)
        offset_frac = rng.uniform(0.2, 0.8)

    cy, cx = centre
    cell_r = 0.5 * cell_d
    win = _window(cy, cx, cell_r * 1.15 + 2.0 * edge, size)
    assert win is not None  # the centre is always inside the crop
    sl, dy, dx = win
    theta = np.arctan2(dy, dx)
    dist = np.hypot(dy, dx)
    cell_alpha = _soft_inside(dist, cell_r * _radial_profile(theta, rng, cell_irreg, 4), edge)

    # Nucleus: possibly eccentric, kept inside the cell.
    nuc_r = ratio * cell_r
    shift = offset_frac * (cell_r - nuc_r) * 0.8
    ang = rng.uniform(0.0, 2.0 * np.pi)
    ndy, ndx = dy - shift * np.sin(ang), dx - shift * np.cos(ang)
    ntheta = np.arctan2(ndy, ndx)
    ndist = np.hypot(ndy, ndx)
    nuc_alpha = _soft_inside(
        ndist, nuc_r * _radial_profile(ntheta, rng, nuc_irreg, nuc_harm), edge
    )
    if blast and rng.random() < 0.35:
        # Occasional notch/cleft in the blast nucleus.
        cleft_ang = rng.uniform(0.0, 2.0 * np.pi)
        cdist = np.hypot(ndy - nuc_r * np.sin(cleft_ang), ndx - nuc_r * np.cos(cleft_ang))
        nuc_alpha *= 1.0 - _soft_inside(cdist, nuc_r * rng.uniform(0.12, 0.25), edge)
    nuc_alpha *= cell_alpha

    shape = dist.shape
    chromatin = 1.0 + chrom_amp * _smooth_noise(shape, chrom_sigma, rng)
    if not blast:
        # Clumped chromatin: a second, blotchier layer with dark clumps and pale gaps.
        clumps = _smooth_noise(shape, 1.6 * scale, rng)
        chromatin += 0.18 * np.tanh(1.5 * clumps)
    nucleus = nuc_density * chromatin
    if blast:
        for _ in range(int(rng.integers(1, 4))):
            rr = np.sqrt(rng.uniform(0.0, 0.3)) * nuc_r
            aa = rng.uniform(0.0, 2.0 * np.pi)
            nd = np.hypot(ndy - rr * np.sin(aa), ndx - rr * np.cos(aa))
            nr = nuc_r * rng.uniform(0.1, 0.18)
            nucleus *= 1.0 - rng.uniform(0.35, 0.55) * _soft_inside(nd, nr, 1.5 * edge)
    nucleus *= nuc_alpha

    cyto_tex = 1.0 + 0.06 * _smooth_noise(shape, 2.0 * scale, rng)
    cytoplasm = cyto_density * cyto_tex * cell_alpha * (1.0 - nuc_alpha)
    return sl, cell_alpha, cytoplasm, nucleus


def draw_cell(label: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Render one synthetic single-cell crop.

    Args:
        label: 1 for a lymphoblast ("blast"), 0 for a mature lymphocyte ("not blast").
        size: side length in pixels (>= 16); ALL-IDB2 crops are 257.
        rng: random generator; the image is a deterministic function of its state.

    Returns:
        ``uint8`` array of shape ``(size, size, 3)`` (RGB).
    """
    label = _check_label(label)
    size = _check_size(size)
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")

    scale = size / _REF_SIZE
    edge = max(1.0, 1.2 * scale)

    # --- per-image acquisition / staining parameters (identical distributions for both classes)
    background = np.clip(_BACKGROUND_RGB + rng.normal(0.0, 0.012, 3), 0.75, 1.0)
    stain_gain = rng.uniform(0.85, 1.15)
    hue = np.exp(rng.normal(0.0, 0.06, size=(3, 3)))  # per stain, per channel OD jitter
    od_eosin = _od(_EOSIN_RGB) * stain_gain * rng.uniform(0.9, 1.1) * hue[0]
    od_nucleus = _od(_NUCLEUS_RGB) * stain_gain * rng.uniform(0.9, 1.1) * hue[1]
    od_cyto = _od(_CYTO_RGB) * stain_gain * rng.uniform(0.9, 1.1) * hue[2]
    grad_amp = rng.uniform(0.0, 0.08)
    grad_dir = rng.uniform(0.0, 2.0 * np.pi)
    blur_sigma = rng.uniform(0.5, 1.0) * max(scale, 0.5)
    noise_std = rng.uniform(0.004, 0.012)

    # --- geometry
    rbc_diameter = rng.uniform(0.16, 0.2) * size
    jitter = np.clip(rng.normal(0.0, 0.03, 2), -0.06, 0.06) * size
    centre = (size / 2.0 + float(jitter[0]), size / 2.0 + float(jitter[1]))

    rbc = _erythrocytes(size, rng, rbc_diameter, centre, edge)
    sl, cell_alpha, cytoplasm, nucleus = _leukocyte(
        label, size, rng, rbc_diameter, centre, edge, scale
    )
    rbc[sl] *= 1.0 - cell_alpha  # the leukocyte lies on top

    od = rbc[..., None] * od_eosin
    od[sl] += cytoplasm[..., None] * od_cyto + nucleus[..., None] * od_nucleus

    coords = (np.arange(size) - (size - 1) / 2.0) / size
    illum = 1.0 + grad_amp * (
        coords[None, :] * np.cos(grad_dir) + coords[:, None] * np.sin(grad_dir)
    )
    image = background * illum[..., None] * np.exp(-od)
    image = gaussian(image, sigma=blur_sigma, channel_axis=-1, preserve_range=True)
    image += rng.normal(0.0, noise_std, image.shape)
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


# ----------------------------------------------------------------------------- data set


def file_name(index: int, label: int, total: int) -> str:
    """ALL-IDB2 style name of the ``index``-th (0-based) of ``total`` images."""
    width = max(3, len(str(total)))
    return f"Im{index + 1:0{width}d}_{label}.tif"


def image_at(
    index: int, n_blast: int, n_not_blast: int, size: int, seed: int
) -> tuple[str, int, np.ndarray]:
    """Regenerate the ``index``-th (0-based) item of ``dataset(...)`` on its own."""
    n_blast, n_not_blast = _check_counts(n_blast, n_not_blast)
    size = _check_size(size)
    seed = _check_seed(seed)
    index = _check_int("index", index)
    total = n_blast + n_not_blast
    if not 0 <= index < total:
        raise ValueError(f"index must be in [0, {total}), got {index}")
    label = 1 if index < n_blast else 0
    image = draw_cell(label, size, np.random.default_rng([seed, index]))
    return file_name(index, label, total), label, image


def dataset(
    n_blast: int, n_not_blast: int, size: int, seed: int
) -> Iterator[tuple[str, int, np.ndarray]]:
    """Yield ``(file_name, label, image)`` in ALL-IDB2 order: blasts first, then not-blasts.

    Names are ``Im001_1.tif`` ... ``Im{n_blast}_1.tif`` followed by ``Im{n_blast + 1}_0.tif``
    ...; the number is zero-padded to at least 3 digits (wider for more than 999 images).
    Image ``i`` (0-based, in yield order) is drawn with ``numpy.random.default_rng([seed, i])``,
    so each image can be regenerated alone (see :func:`image_at`) and reruns are byte-identical.
    Arguments are validated eagerly, before the first item is requested.
    """
    n_blast, n_not_blast = _check_counts(n_blast, n_not_blast)
    size = _check_size(size)
    seed = _check_seed(seed)
    return _iter_dataset(n_blast, n_not_blast, size, seed)


def _iter_dataset(
    n_blast: int, n_not_blast: int, size: int, seed: int
) -> Iterator[tuple[str, int, np.ndarray]]:
    for index in range(n_blast + n_not_blast):
        yield image_at(index, n_blast, n_not_blast, size, seed)
