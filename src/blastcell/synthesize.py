"""Synthetic blood-smear single-cell crops in the style of ALL-IDB2, with calibrated difficulty.

The real ALL-IDB2 images cannot be redistributed, so the pipeline ships this generator to
produce a default data set with the same layout: square RGB crops with one leukocyte near the
centre, among erythrocytes and the odd platelet on a pale background, as on a May-Grünwald-Giemsa
(MGG) stained smear.  Label 1 is an acute lymphoblastic leukaemia lymphoblast ("blast"),
label 0 a normal leukocyte ("not blast").

Scene
-----
Images are rendered with a transmitted-light model: every structure adds an optical density
(OD) per colour channel and a pixel is ``background * illumination * exp(-OD)``, so overlapping
erythrocytes look darker, as on a real smear.  Erythrocytes are biconcave discs (Evans-Fung
thickness profile: lighter central pallor) about 0.20-0.24 of the crop wide (so a 257 px crop
spans ~35 µm), cut by the crop edges; platelets are small granular purple bodies (2-3 µm).
The stain strength and hue of every component, background tint, white balance, illumination
gradient and vignetting, defocus blur, sensor noise, erythrocyte count and packing, platelets
and the leukocyte's position jitter and orientation are drawn from the SAME distributions for
both classes, from a random stream that does not depend on the label: two calls with the same
generator state and different labels give the same scene around a different leukocyte.  The
leukocyte (centre jitter at most 4 % of the crop, radius at most 29 %) never reaches the
outer 12 % band of the crop (from 32 px up; at 16 px blur may touch it by a grey level).

Cells and the latent immaturity score
-------------------------------------
Every leukocyte has a cell type and, if lymphoid, a latent immaturity score ``s``:

* blast (label 1): lymphoid, ``s ~ N(+d, 1)``;
* not blast (label 0): neutrophil with probability 0.15 (2-5 nuclear lobes joined by strands,
  pale pink-lilac granular cytoplasm), monocyte with probability 0.05 (large, folded kidney
  shaped nucleus with lacy chromatin, abundant grey-blue vacuolated cytoplasm), otherwise
  lymphoid with ``s ~ N(-d, 1)``.

A lymphoid cell's morphology is a monotone function of ``m = Φ(1.6 s / sqrt(1 + d²))`` in
(0, 1), plus nuisance noise that does not depend on the label: diameter 1.0 → 1.7 erythrocyte
diameters, nucleus-to-cell diameter ratio 0.72 → 0.9, nucleus colour dark blue-violet →
lighter red-purple, chromatin coarse and clumped (dark clumps, pale gaps, a condensed rim) →
fine and evenly dispersed, nucleoli invisible → one to three pale blue-lilac nucleoli, round
contour → irregular with indentations and clefts, cytoplasm a pale blue visible rim → a thin
deep-blue (basophilic) rim.  ``m ≈ 0.1`` is a small mature lymphocyte, ``m ≈ 0.9`` a typical
lymphoblast and ``m ≈ 0.5`` (``s = 0``) an intermediate cell, like a large reactive lymphocyte.

The label reaches the image only through (cell type, s), so by the data-processing inequality
no classifier of the images can beat the Bayes classifier that knows (cell type, s): call
neutrophils and monocytes "not blast" and a lymphoid cell "blast" when
``s > ln((1 - q)(1 - π)/π) / (2d)``, with ``q = 0.2`` the non-lymphoid share of not-blasts and
``π`` the blast share.  Its accuracy, :func:`bayes_accuracy`, is

    π Φ(d - t) + (1 - π) (q + (1 - q) Φ(d + t)),   t = ln((1 - q)(1 - π)/π) / (2d).

``difficulty`` in [0, 1] sets ``d = 4 · 0.19**difficulty`` (:func:`separation`), geometric from
4 at difficulty 0 to 0.76 at difficulty 1.  The bound for balanced classes (π = 0.5, the
default data set), from the closed form above and checked by Monte-Carlo in the tests:

    ==========  =====  =====================
    difficulty    d    best accuracy (Bayes)
    ==========  =====  =====================
    0.0         4.00   99.997 %
    0.1         3.39   99.97 %
    0.2         2.87   99.8 %
    0.3         2.43   99.3 %
    0.4         2.06   98.2 %
    0.5         1.74   96.4 %
    0.6         1.48   93.8 %
    0.7         1.25   90.6 %
    0.8         1.06   87.1 %
    0.9         0.90   83.5 %
    1.0         0.76   80.1 %
    ==========  =====  =====================

A real classifier scores below the bound: the nuisance noise on top of ``s`` (size, shape,
texture and colour jitter, blur, noise) hides part of what ``s`` would tell.

Label ``L`` is the class ``blastcell.DEFAULT_CLASSES[L]``.  The settings of a data set are the
``synthesize`` section of params.yaml (``SynthesizeParams``), checked there.  Images depend only
on numpy and scipy.  This module does no file I/O of its own: :func:`write_dataset` renders in
worker processes (``blastcell.parallel``) and calls the writer it is given; :func:`preview`
draws a figure with matplotlib, imported only when it is called, so the workers never load it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.special import ndtr

from blastcell import DEFAULT_CLASSES, parallel
from blastcell.params import SynthesizeParams

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "CELL_TYPES",
    "NON_LYMPHOID_SHARE",
    "Latent",
    "bayes_accuracy",
    "dataset",
    "draw_cell",
    "file_name",
    "image_at",
    "immaturity",
    "preview",
    "render",
    "sample_latent",
    "separation",
    "write_dataset",
]

_REF_SIZE = 257.0

# ----------------------------------------------------------------------------- difficulty

LYMPHOID, NEUTROPHIL, MONOCYTE = 0, 1, 2
CELL_TYPES = ("lymphoid", "neutrophil", "monocyte")
_P_NEUTROPHIL = 0.15  # share of not-blasts
_P_MONOCYTE = 0.05
NON_LYMPHOID_SHARE = _P_NEUTROPHIL + _P_MONOCYTE
_D_EASY, _D_HARD = 4.0, 0.76  # class separation d at difficulty 0 and 1
_MAX_CELL_RADIUS = 0.29  # of the crop side, from the leukocyte's centre
_MAX_JITTER = 0.04  # of the crop side, per axis: the leukocyte's centre offset
_M_SLOPE = 1.6  # m = Φ(_M_SLOPE * s / sqrt(1 + d²))


class Latent(NamedTuple):
    """What the label decides about a leukocyte: its type and (lymphoid) immaturity score."""

    cell_type: int  # index into CELL_TYPES
    score: float  # s; drawn for every cell, used only by lymphoid ones


def separation(difficulty: float) -> float:
    """Class separation ``d``: lymphoid scores are N(+d, 1) for blasts, N(-d, 1) otherwise."""
    return _D_EASY * (_D_HARD / _D_EASY) ** difficulty


def bayes_accuracy(difficulty: float, blast_fraction: float = 0.5) -> float:
    """The best accuracy any classifier can reach on images drawn at ``difficulty``.

    This is the accuracy of the Bayes rule on the latent (cell type, score) that the image is
    rendered from; see the module docstring for the formula.  ``blast_fraction`` is the share
    of blasts in the data set (0.5 for the default, balanced one).
    """
    d = separation(difficulty)
    pi = float(blast_fraction)
    if not 0.0 < pi < 1.0:
        raise ValueError(f"blast_fraction must be in (0, 1), got {blast_fraction!r}")
    q = NON_LYMPHOID_SHARE
    t = math.log((1.0 - q) * (1.0 - pi) / pi) / (2.0 * d)
    return float(pi * ndtr(d - t) + (1.0 - pi) * (q + (1.0 - q) * ndtr(d + t)))


def sample_latent(label: int, difficulty: float, rng: np.random.Generator) -> Latent:
    """Draw a leukocyte's latent type and score given its label (as :func:`draw_cell` does)."""
    label = _check_label(label)
    _check_rng(rng)
    return _sample_latent(label, separation(difficulty), rng)


def _sample_latent(label: int, d: float, rng: np.random.Generator) -> Latent:
    # Always the same two draws, so the rest of the stream does not depend on the label.
    u, z = rng.random(), rng.standard_normal()
    if label == 1:
        return Latent(LYMPHOID, d + z)
    if u < _P_NEUTROPHIL:
        cell_type = NEUTROPHIL
    elif u < _P_NEUTROPHIL + _P_MONOCYTE:
        cell_type = MONOCYTE
    else:
        cell_type = LYMPHOID
    return Latent(cell_type, -d + z)


def immaturity(score: float, difficulty: float) -> float:
    """The visible immaturity ``m`` in (0, 1) of a lymphoid cell with latent score ``score``:
    0 is a small mature lymphocyte, 1 a typical lymphoblast, 0.5 (``score == 0``) in between."""
    return _immaturity(score, separation(difficulty))


def _immaturity(score: float, d: float) -> float:
    return float(ndtr(_M_SLOPE * score / math.sqrt(1.0 + d * d)))


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


def _check_rng(rng: object) -> None:
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")


# ----------------------------------------------------------------------------- colours


def _od(rgb: Sequence[float]) -> np.ndarray:
    """Optical density of a structure whose transmitted colour on white is ``rgb``."""
    return -np.log(np.asarray(rgb, dtype=np.float64))


_BACKGROUND_RGB = np.array([0.935, 0.905, 0.925])  # plasma on glass: pale, slightly lilac
_OD_RBC = _od([0.90, 0.63, 0.66])  # erythrocyte rim: pink-salmon
_OD_NUC_MATURE = _od([0.40, 0.27, 0.55])  # condensed chromatin: dark blue-violet
_OD_NUC_BLAST = _od([0.58, 0.43, 0.68])  # open chromatin: lighter red-purple
_OD_CYTO_PALE = _od([0.80, 0.87, 0.95])  # lymphocyte cytoplasm: pale sky blue
_OD_CYTO_BASO = _od([0.60, 0.72, 0.91])  # blast cytoplasm: deep basophilic blue
_OD_NEUT_CYTO = _od([0.94, 0.86, 0.91])  # neutrophil cytoplasm: pale pink
_OD_NEUT_GRAN = _od([0.80, 0.68, 0.84])  # neutrophil granules: lilac
_OD_MONO_CYTO = _od([0.80, 0.81, 0.90])  # monocyte cytoplasm: grey-blue
_OD_NUC_MONO = _od([0.52, 0.40, 0.66])  # monocyte nucleus: lacy, paler violet
_OD_PLT_GRAN = _od([0.55, 0.42, 0.68])  # platelet granulomere: purple
_OD_PLT_HYAL = _od([0.90, 0.87, 0.95])  # platelet hyalomere: pale lilac


def _lerp(a, b, t):
    return a + (b - a) * t


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


def _soft_inside(dist: np.ndarray, radius, edge: float) -> np.ndarray:
    """Anti-aliased indicator of ``dist < radius`` with a ramp ``edge`` pixels wide."""
    return np.clip(0.5 + (radius - dist) / edge, 0.0, 1.0)


def _contour(theta: np.ndarray, rng: np.random.Generator, amplitude: float, harmonics: int):
    """Multiplicative contour 1 + sum_k a_k cos(k theta + phi_k), k = 2..harmonics."""
    out = np.ones_like(theta)
    for k in range(2, harmonics + 1):
        a = amplitude * rng.uniform(0.3, 1.0) / (k - 1) ** 0.8
        out += a * np.cos(k * theta + rng.uniform(0.0, 2.0 * np.pi))
    return out


def _outline(dist, theta, radius: float, rng, amplitude: float, harmonics: int, sc) -> np.ndarray:
    """Soft coverage of a leukocyte's wavy outline, never more than 0.29 of the crop from its
    centre, so that (with the centre jitter) it stays out of the crop's outer 12 % band."""
    wavy = radius * np.clip(_contour(theta, rng, amplitude, harmonics), 0.88, 1.12)
    return _soft_inside(dist, np.minimum(wavy, _MAX_CELL_RADIUS * sc.size), sc.edge)


def _noise(shape: tuple[int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-std gaussian-filtered white noise (correlation length ~sigma px)."""
    field = gaussian_filter(rng.standard_normal(shape), sigma=max(sigma, 0.3), mode="reflect")
    std = field.std()
    return (field - field.mean()) / std if std > 0 else field


def _segment_dist(dy, dx, p, q) -> np.ndarray:
    """Distance of each pixel (dy, dx) from the segment p-q (points as (y, x))."""
    vy, vx = q[0] - p[0], q[1] - p[1]
    length2 = vy * vy + vx * vx
    wy, wx = dy - p[0], dx - p[1]
    t = np.clip((wy * vy + wx * vx) / length2, 0.0, 1.0) if length2 > 0 else 0.0
    return np.hypot(wy - t * vy, wx - t * vx)


# ----------------------------------------------------------------------------- the scene


class _Scene(NamedTuple):
    rbc_d: float  # erythrocyte diameter, px
    centre: tuple[float, float]  # leukocyte centre
    edge: float  # anti-aliasing ramp, px
    scale: float  # size / 257
    size: int
    od_gain: np.ndarray  # per-stain-group OD multipliers (3 groups x 3 channels)


def _scene(size: int, rng: np.random.Generator) -> tuple[_Scene, dict]:
    """Class-independent acquisition parameters: geometry, staining, optics."""
    scale = size / _REF_SIZE
    edge = max(1.0, 1.2 * scale)
    rbc_d = rng.uniform(0.20, 0.24) * size
    jitter = rng.uniform(-_MAX_JITTER, _MAX_JITTER, 2) * size
    centre = (size / 2.0 + float(jitter[0]), size / 2.0 + float(jitter[1]))
    # Stain: overall thickness/intensity, eosin vs azure balance, per-channel hue jitter.
    intensity = rng.uniform(0.85, 1.15)
    balance = rng.uniform(-0.12, 0.12)
    hue = np.exp(rng.normal(0.0, 0.05, size=(3, 3)))
    gain = intensity * hue
    gain[0] *= 1.0 + balance  # eosinophilic: erythrocytes, neutrophil cytoplasm
    gain[1] *= 1.0 - balance  # azurophilic: nuclei, platelets
    gain[2] *= 1.0 - 0.7 * balance  # basophilic: cytoplasm
    optics = {
        "background": _BACKGROUND_RGB * np.exp(rng.normal(0.0, 0.018, 3)),
        "grad_amp": rng.uniform(0.0, 0.10),
        "grad_dir": rng.uniform(0.0, 2.0 * np.pi),
        "vignette": rng.uniform(0.0, 0.18),
        "vignette_centre": rng.uniform(-0.25, 0.25, 2),
        "mottle": rng.uniform(0.0, 0.03),
        "blur": rng.uniform(0.5, 1.5) * max(scale, 0.35),
        "shot": rng.uniform(0.00005, 0.0003),
        "read": rng.uniform(0.002, 0.006),
    }
    return _Scene(rbc_d, centre, edge, scale, size, gain), optics


def _erythrocytes(od: np.ndarray, rng: np.random.Generator, sc: _Scene) -> None:
    """Add the erythrocytes' optical density to ``od`` (before the leukocyte hides some)."""
    size = od.shape[0]
    colour = _OD_RBC * sc.od_gain[0]
    r_mean = 0.5 * sc.rbc_d
    crowd = rng.uniform(0.25, 1.0)  # how much of the field the red cells fill
    n_max = round(crowd * 1.3 * (size / sc.rbc_d) ** 2)
    min_gap = rng.uniform(0.7, 0.98) * sc.rbc_d  # < diameter: some red cells overlap
    keep_out = rng.uniform(0.35, 0.6) * sc.rbc_d + 0.12 * size
    cand = rng.uniform(-r_mean, size + r_mean, size=(4 * n_max + 8, 2))
    placed: list[tuple[float, float]] = []
    for cy, cx in cand:
        if len(placed) >= n_max:
            break
        if math.hypot(cy - sc.centre[0], cx - sc.centre[1]) < keep_out:
            continue
        if any(math.hypot(cy - py, cx - px) < min_gap for py, px in placed):
            continue
        placed.append((cy, cx))
    for cy, cx in placed:
        radius = r_mean * rng.uniform(0.93, 1.07)
        aspect = rng.uniform(0.86, 1.0)
        phi = rng.uniform(0.0, np.pi)
        pallor = rng.uniform(0.35, 0.85)
        strength = rng.uniform(0.85, 1.12)
        win = _window(cy, cx, radius + 2.0 * sc.edge, size)
        if win is None:
            continue
        sl, dy, dx = win
        u = dx * np.cos(phi) + dy * np.sin(phi)
        v = (-dx * np.sin(phi) + dy * np.cos(phi)) / aspect
        dist = np.sqrt(u * u + v * v)
        disc = _soft_inside(dist, radius, sc.edge)
        rho2 = np.minimum(dist / radius, 1.0) ** 2
        # Evans-Fung biconcave thickness, normalised to a maximum of 1 near rho = 0.7.
        thick = np.sqrt(1.0 - rho2) * (0.81 + 7.83 * rho2 - 4.39 * rho2 * rho2) / 2.57
        profile = (1.0 - pallor) + pallor * thick
        # Keep the soft rim dense (the sqrt makes it vanish right at the edge).
        profile = np.maximum(profile, 0.8 * (1.0 - pallor) + 0.2)
        od[sl] += (strength * disc * profile)[..., None] * colour


def _platelets(od: np.ndarray, rng: np.random.Generator, sc: _Scene) -> None:
    """Add 0-5 platelets away from the centre to ``od``: a purple granular core in a pale
    lilac hyalomere."""
    size = od.shape[0]
    gran_od = _OD_PLT_GRAN * sc.od_gain[1]
    hyal_od = _OD_PLT_HYAL * sc.od_gain[2]
    n = int(rng.poisson(rng.uniform(0.2, 1.6)))
    for _ in range(min(n, 5)):
        for _try in range(10):
            cy, cx = rng.uniform(0.0, size, 2)
            if math.hypot(cy - sc.centre[0], cx - sc.centre[1]) > 0.3 * size:
                break
        radius = rng.uniform(0.13, 0.2) * sc.rbc_d
        win = _window(cy, cx, radius * 1.4 + 2.0 * sc.edge, size)
        if win is None:
            continue
        sl, dy, dx = win
        dist = np.hypot(dy, dx)
        theta = np.arctan2(dy, dx)
        alpha = _soft_inside(dist, radius * _contour(theta, rng, 0.25, 5), sc.edge)
        core = _soft_inside(dist, 0.65 * radius, 2.0 * sc.edge)
        grains = np.clip(_noise(dist.shape, 0.45 * sc.rbc_d / 50.0, rng) + 0.3, 0.0, None)
        gran = alpha * core * rng.uniform(0.5, 0.9) * (0.35 + 0.65 * grains)
        od[sl] += gran[..., None] * gran_od + alpha[..., None] * hyal_od


# ----------------------------------------------------------------------------- leukocytes


class _Cell(NamedTuple):
    sl: tuple[slice, slice]
    alpha: np.ndarray  # cell coverage in the window
    od: np.ndarray  # (h, w, 3) optical density of the cell


def _nucleoli(nuc, ndy, ndx, nuc_r, m, rng, sc):
    """Lighten the nucleus where up to three nucleoli are (pale, with a thin darker rim of
    condensed chromatin); each appears once m passes its own threshold and grows clearer."""
    bluish = np.zeros(nuc.shape)
    for _ in range(3):
        threshold = rng.uniform(0.3, 0.85)
        rr = np.sqrt(rng.uniform(0.0, 0.35)) * nuc_r
        aa = rng.uniform(0.0, 2.0 * np.pi)
        radius = nuc_r * rng.uniform(0.1, 0.17)
        strength = np.clip((m - threshold) / 0.2, 0.0, 1.0) * rng.uniform(0.4, 0.6)
        if strength <= 0.0:
            continue
        d = np.hypot(ndy - rr * np.sin(aa), ndx - rr * np.cos(aa))
        inside = _soft_inside(d, radius, 1.5 * sc.edge)
        ring = np.exp(-(((d - radius) / (0.9 * sc.edge + 0.15 * radius)) ** 2))
        nuc *= 1.0 - strength * inside
        nuc += 0.25 * strength * ring
        bluish += strength * inside
    return nuc, bluish


def _lymphoid(size, rng, sc: _Scene, m: float) -> _Cell:
    """A lymphoid cell whose look moves monotonically from mature lymphocyte (m = 0) to
    lymphoblast (m = 1); everything else here is label-independent nuisance."""
    cell_d = sc.rbc_d * np.clip(_lerp(1.0, 1.7, m) * np.exp(rng.normal(0.0, 0.07)), 0.85, 2.1)
    cell_r = 0.5 * cell_d
    ratio = np.clip(_lerp(0.72, 0.9, m) + rng.normal(0.0, 0.025), 0.62, 0.93)
    cy, cx = sc.centre
    win = _window(cy, cx, cell_r * 1.15 + 2.0 * sc.edge, size)
    sl, dy, dx = win
    theta = np.arctan2(dy, dx)
    dist = np.hypot(dy, dx)
    cell_irr = _lerp(0.015, 0.05, m) * rng.uniform(0.5, 1.5)
    cell_alpha = _outline(dist, theta, cell_r, rng, cell_irr, 5, sc)

    # Nucleus: eccentric in mature cells (a crescent of cytoplasm), centred in blasts.
    nuc_r = ratio * cell_r
    shift = _lerp(0.75, 0.3, m) * rng.uniform(0.3, 1.0) * (cell_r - nuc_r)
    ang = rng.uniform(0.0, 2.0 * np.pi)
    ndy, ndx = dy - shift * np.sin(ang), dx - shift * np.cos(ang)
    ndist = np.hypot(ndy, ndx)
    ntheta = np.arctan2(ndy, ndx)
    nuc_irr = _lerp(0.02, 0.09, m) * rng.uniform(0.5, 1.5)
    nuc_alpha = _soft_inside(ndist, nuc_r * _contour(ntheta, rng, nuc_irr, 6), sc.edge)
    # Indentation / cleft: more likely and deeper as m grows.
    cleft_u = rng.uniform(0.25, 1.4)
    cleft_ang = rng.uniform(0.0, 2.0 * np.pi)
    cleft_size = rng.uniform(0.15, 0.3)
    depth = np.clip((m - cleft_u) / 0.3, 0.0, 1.0)
    if depth > 0:
        cr = nuc_r * cleft_size * depth
        cdist = np.hypot(
            ndy - (nuc_r + 0.4 * cr) * np.sin(cleft_ang),
            ndx - (nuc_r + 0.4 * cr) * np.cos(cleft_ang),
        )
        nuc_alpha *= 1.0 - _soft_inside(cdist, cr * 1.4, sc.edge)
    nuc_alpha *= cell_alpha

    # Chromatin: fine even stippling (blast) vs dark clumps with pale gaps (mature).
    shape = dist.shape
    fine = _noise(shape, 0.8 * sc.scale, rng)
    coarse = np.tanh(1.6 * _noise(shape, 2.6 * sc.scale, rng))
    rim = (np.minimum(ndist / nuc_r, 1.0)) ** 4
    chromatin = (
        1.0
        + _lerp(0.06, 0.09, m) * fine
        + _lerp(0.34, 0.04, m) * coarse
        + _lerp(0.25, 0.0, m) * rim
    )
    n_od = _lerp(_OD_NUC_MATURE, _OD_NUC_BLAST, m) * sc.od_gain[1]
    density = rng.uniform(0.9, 1.1)
    nuc = density * chromatin
    nuc, bluish = _nucleoli(nuc, ndy, ndx, nuc_r, m, rng, sc)
    nuc = nuc * nuc_alpha

    # Cytoplasm: pale blue, darker towards the membrane (mature) vs deep blue rim (blast).
    c_od = _lerp(_OD_CYTO_PALE, _OD_CYTO_BASO, m) * sc.od_gain[2]
    c_density = rng.uniform(0.85, 1.15) * (
        1.0 + _lerp(0.35, 0.1, m) * (np.minimum(dist / cell_r, 1.0)) ** 3
    )
    c_tex = 1.0 + 0.08 * _noise(shape, 1.5 * sc.scale, rng)
    cyto = c_density * c_tex * cell_alpha * (1.0 - nuc_alpha)
    od = (
        nuc[..., None] * n_od
        + cyto[..., None] * c_od
        + (0.7 * bluish * nuc_alpha)[..., None] * _OD_CYTO_BASO * sc.od_gain[2]
    )
    return _Cell(sl, cell_alpha, od)


def _myeloid_body(
    size, rng, sc: _Scene, diameters: tuple[float, float], amplitude: float, harmonics: int
):
    """A neutrophil's or monocyte's outline: its radius (a draw of `diameters` erythrocyte
    diameters), window (slice, dy, dx), distance map and soft mask."""
    cell_r = 0.5 * sc.rbc_d * rng.uniform(*diameters)
    cy, cx = sc.centre
    sl, dy, dx = _window(cy, cx, cell_r * 1.12 + 2.0 * sc.edge, size)
    theta = np.arctan2(dy, dx)
    dist = np.hypot(dy, dx)
    cell_alpha = _outline(dist, theta, cell_r, rng, amplitude, harmonics, sc)
    return cell_r, sl, dy, dx, dist, cell_alpha


def _neutrophil(size, rng, sc: _Scene) -> _Cell:
    """Segmented neutrophil: 2-5 dense lobes joined by thin strands, pale granular cytoplasm."""
    cell_r, sl, dy, dx, dist, cell_alpha = _myeloid_body(size, rng, sc, (1.45, 1.85), 0.03, 5)

    n_lobes = int(rng.choice([2, 3, 4, 5], p=[0.2, 0.4, 0.3, 0.1]))
    lobe_r = cell_r * rng.uniform(0.24, 0.3) * (3.0 / (n_lobes + 0.5)) ** 0.3
    step = lobe_r * rng.uniform(1.3, 1.8)
    direction = rng.uniform(0.0, 2.0 * np.pi)
    turn = rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 0.8)
    pts = [np.zeros(2)]
    for _ in range(n_lobes - 1):
        direction += turn + rng.normal(0.0, 0.3)
        pts.append(pts[-1] + step * np.array([np.sin(direction), np.cos(direction)]))
    pts_arr = np.array(pts)
    pts_arr -= pts_arr.mean(axis=0)
    limit = 0.78 * cell_r - lobe_r
    far = np.hypot(pts_arr[:, 0], pts_arr[:, 1]).max()
    if far > limit:
        pts_arr *= limit / far
    nuc_alpha = np.zeros(dist.shape)
    for k, (py, px) in enumerate(pts_arr):
        ldy, ldx = dy - py, dx - px
        r = lobe_r * rng.uniform(0.85, 1.15)
        lobe = _soft_inside(
            np.hypot(ldy, ldx), r * _contour(np.arctan2(ldy, ldx), rng, 0.12, 4), sc.edge
        )
        nuc_alpha = np.maximum(nuc_alpha, lobe)
        if k > 0:
            width = max(0.6 * sc.edge, lobe_r * rng.uniform(0.12, 0.25))
            seg = _segment_dist(dy, dx, pts_arr[k - 1], pts_arr[k])
            nuc_alpha = np.maximum(nuc_alpha, _soft_inside(seg, width, sc.edge))
    nuc_alpha *= cell_alpha
    shape = dist.shape
    chromatin = 1.0 + 0.3 * np.tanh(1.6 * _noise(shape, 2.0 * sc.scale, rng))
    nuc = rng.uniform(1.0, 1.2) * chromatin * nuc_alpha
    granules = np.clip(_noise(shape, 0.6 * sc.scale, rng), 0.0, None)
    cyto = cell_alpha * (1.0 - nuc_alpha)
    od = (
        nuc[..., None] * (_OD_NUC_MATURE * sc.od_gain[1])
        + (cyto * rng.uniform(0.8, 1.2))[..., None] * (_OD_NEUT_CYTO * sc.od_gain[0])
        + (cyto * granules * rng.uniform(0.2, 0.35))[..., None] * (_OD_NEUT_GRAN * sc.od_gain[1])
    )
    return _Cell(sl, cell_alpha, od)


def _monocyte(size, rng, sc: _Scene) -> _Cell:
    """Monocyte: large, folded kidney-shaped lacy nucleus, abundant grey-blue cytoplasm."""
    cell_r, sl, dy, dx, dist, cell_alpha = _myeloid_body(size, rng, sc, (1.8, 2.15), 0.06, 6)

    nuc_r = cell_r * rng.uniform(0.52, 0.62)
    ang = rng.uniform(0.0, 2.0 * np.pi)
    off = 0.2 * cell_r
    ndy, ndx = dy - off * np.sin(ang), dx - off * np.cos(ang)
    nuc_alpha = _soft_inside(
        np.hypot(ndy, ndx), nuc_r * _contour(np.arctan2(ndy, ndx), rng, 0.1, 5), sc.edge
    )
    # The kidney's notch, on the side facing the cell centre.
    notch_r = nuc_r * rng.uniform(0.4, 0.55)
    ndist = np.hypot(ndy + 1.25 * nuc_r * np.sin(ang), ndx + 1.25 * nuc_r * np.cos(ang))
    nuc_alpha *= 1.0 - _soft_inside(ndist, notch_r, 1.5 * sc.edge)
    nuc_alpha *= cell_alpha
    shape = dist.shape
    lace = 1.0 + 0.22 * _noise(shape, 1.2 * sc.scale, rng) + 0.1 * _noise(shape, 3 * sc.scale, rng)
    nuc = rng.uniform(0.9, 1.05) * lace * nuc_alpha
    cyto = cell_alpha * (1.0 - nuc_alpha) * (1.0 + 0.1 * _noise(shape, 0.8 * sc.scale, rng))
    for _ in range(int(rng.integers(0, 5))):
        rr = rng.uniform(0.65, 0.9) * cell_r
        aa = rng.uniform(0.0, 2.0 * np.pi)
        vd = np.hypot(dy - rr * np.sin(aa), dx - rr * np.cos(aa))
        cyto *= 1.0 - 0.7 * _soft_inside(vd, cell_r * rng.uniform(0.04, 0.09), sc.edge)
    od = nuc[..., None] * (_OD_NUC_MONO * sc.od_gain[1]) + (cyto * rng.uniform(0.9, 1.2))[
        ..., None
    ] * (_OD_MONO_CYTO * sc.od_gain[2])
    return _Cell(sl, cell_alpha, od)


# ----------------------------------------------------------------------------- compositing


def _wave(size: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth random 1-D profile (a few slow cosines), unit-ish amplitude."""
    x = np.arange(size) / size
    out = np.zeros(size)
    for k in (1, 2, 3):
        out += rng.normal(0.0, 1.0 / k) * np.cos(np.pi * k * x + rng.uniform(0.0, 2.0 * np.pi))
    return out


def render(latent: Latent, size: int, rng: np.random.Generator, difficulty: float) -> np.ndarray:
    """Render a crop around a leukocyte with the given latent type and score.

    ``draw_cell(label, ...)`` is ``render(sample_latent(label, ...), ...)`` on the same
    generator.  Useful to look at cells of a chosen score, e.g. ambiguous ones at score 0.
    ``rng`` drives everything else (the nuisance), identically for any latent.
    """
    _check_rng(rng)
    d = separation(difficulty)
    cell_type = _check_int("latent.cell_type", latent.cell_type)
    if not 0 <= cell_type < len(CELL_TYPES):
        raise ValueError(f"latent.cell_type must be in [0, {len(CELL_TYPES)}), got {cell_type}")
    if not math.isfinite(latent.score):
        raise ValueError(f"latent.score must be finite, got {latent.score!r}")
    return _render(latent, d, size, rng)


def _render(latent: Latent, d: float, size: int, rng: np.random.Generator) -> np.ndarray:
    seeds = rng.integers(0, 2**62, size=2)
    scene_rng = np.random.default_rng(seeds[0])  # independent of the leukocyte
    cell_rng = np.random.default_rng(seeds[1])
    sc, optics = _scene(size, scene_rng)
    od = np.zeros((size, size, 3))
    _erythrocytes(od, scene_rng, sc)
    _platelets(od, scene_rng, sc)

    if latent.cell_type == NEUTROPHIL:
        cell = _neutrophil(size, cell_rng, sc)
    elif latent.cell_type == MONOCYTE:
        cell = _monocyte(size, cell_rng, sc)
    else:
        cell = _lymphoid(size, cell_rng, sc, _immaturity(latent.score, d))
    od[cell.sl] = od[cell.sl] * (1.0 - cell.alpha[..., None]) + cell.od

    # Optics: background tint with faint mottling, gradient and vignetting, defocus, noise.
    coords = (np.arange(size) - (size - 1) / 2.0) / size
    vy, vx = optics["vignette_centre"]
    gy, gx = (
        optics["grad_amp"] * np.sin(optics["grad_dir"]),
        optics["grad_amp"] * np.cos(optics["grad_dir"]),
    )
    row = (
        gy * coords
        - optics["vignette"] * (coords - vy) ** 2
        + optics["mottle"] * _wave(size, scene_rng)
    )
    col = (
        gx * coords
        - optics["vignette"] * (coords - vx) ** 2
        + optics["mottle"] * _wave(size, scene_rng)
    )
    od -= (row[:, None] + col[None, :])[..., None]  # illumination as a (negative) density
    image = (optics["background"] * np.exp(-od)).astype(np.float32)
    s = optics["blur"]
    image = gaussian_filter(image, sigma=(s, s, 0.0), mode="nearest")
    noise_std = np.sqrt(np.float32(optics["shot"]) * image + np.float32(optics["read"] ** 2))
    image += noise_std * scene_rng.standard_normal(image.shape, dtype=np.float32)
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def draw_cell(label: int, size: int, rng: np.random.Generator, difficulty: float) -> np.ndarray:
    """Render one synthetic single-cell crop.

    Args:
        label: 1 for a lymphoblast ("blast"), 0 for a normal leukocyte ("not blast").
        size: side length in pixels (16 or more, as `synthesize.image_size`); ALL-IDB2 crops
            are 257.
        rng: random generator; the image is a deterministic function of its state.
        difficulty: in [0, 1]; how much the classes overlap (see the module docstring).

    Returns:
        ``uint8`` array of shape ``(size, size, 3)`` (RGB).
    """
    label = _check_label(label)
    _check_rng(rng)
    d = separation(difficulty)
    return _render(_sample_latent(label, d, rng), d, size, rng)


# ----------------------------------------------------------------------------- data set


def file_name(index: int, label: int, total: int) -> str:
    """ALL-IDB2 style name of the ``index``-th (0-based) of ``total`` images."""
    width = max(3, len(str(total)))
    return f"Im{index + 1:0{width}d}_{label}.tif"


def _label(index: int, params: SynthesizeParams) -> int:
    return 1 if index < params.n_blast else 0


def _item(index: int, params: SynthesizeParams, seed: int) -> tuple[str, int, np.ndarray]:
    total = params.n_blast + params.n_not_blast
    label = _label(index, params)
    rng = np.random.default_rng([seed, index])
    image = draw_cell(label, params.image_size, rng, params.difficulty)
    return file_name(index, label, total), label, image


def image_at(index: int, params: SynthesizeParams, seed: int) -> tuple[str, int, np.ndarray]:
    """Regenerate the ``index``-th (0-based) item of ``dataset(params, seed)`` on its own."""
    index = _check_int("index", index)
    total = params.n_blast + params.n_not_blast
    if not 0 <= index < total:
        raise ValueError(f"index must be in [0, {total}), got {index}")
    return _item(index, params, seed)


def dataset(params: SynthesizeParams, seed: int) -> Iterator[tuple[str, int, np.ndarray]]:
    """Yield ``(file_name, label, image)`` in ALL-IDB2 order: blasts first, then not-blasts.

    Names are ``Im001_1.tif`` ... ``Im{n_blast}_1.tif`` followed by ``Im{n_blast + 1}_0.tif``
    ...; the number is zero-padded to at least 3 digits (wider for more than 999 images).
    Image ``i`` (0-based, in yield order) is drawn with ``numpy.random.default_rng([seed, i])``,
    so each image can be regenerated alone (see :func:`image_at`) and reruns are byte-identical.
    """
    return (_item(i, params, seed) for i in range(params.n_blast + params.n_not_blast))


def _write_chunk(
    folder: Path,
    params: SynthesizeParams,
    seed: int,
    write: Callable[[Path, np.ndarray], None],
    indices: range,
) -> int:
    """Render and write images ``indices``; run in a worker process."""
    for index in indices:
        name, _label, image = _item(index, params, seed)
        write(folder / name, image)
    return len(indices)


def write_dataset(
    folder: Path,
    params: SynthesizeParams,
    seed: int,
    *,
    write: Callable[[Path, np.ndarray], None],
    progress: Callable[[int], object] | None = None,
) -> list[str]:
    """Render the whole :func:`dataset` into ``folder`` with ``params.workers`` processes.

    ``write(path, image)`` stores one image (e.g. ``blastcell.images.write``); it must be
    picklable (a module-level function) for more than one worker.  Workers render and write
    contiguous chunks of images (``blastcell.parallel``: 0 is one per CPU core, with one
    everything runs in this process); as every image depends only on (seed, index), the files
    are byte-identical whatever the number of workers.  ``progress(n)`` is called as each ``n``
    more images are written, in order.  Returns the file names in order.
    """
    total = params.n_blast + params.n_not_blast
    chunk = max(1, min(64, math.ceil(total / (4 * parallel.processes(params.workers)))))
    chunks = (range(i, min(i + chunk, total)) for i in range(0, total, chunk))
    task = functools.partial(_write_chunk, Path(folder), params, seed, write)
    for written in parallel.map_ordered(task, chunks, workers=params.workers):
        if progress is not None:
            progress(written)
    return [file_name(i, _label(i, params), total) for i in range(total)]


PREVIEW_ROWS, PREVIEW_COLS = 2, 6  # per class


def preview(params: SynthesizeParams, seed: int) -> Figure:
    """A grid of the first PREVIEW_ROWS x PREVIEW_COLS images of each class, blasts on top,
    titled with the difficulty and the best accuracy possible on the data set."""
    from blastcell import figures  # matplotlib: only here, never in the worker processes

    rows: list[list[np.ndarray]] = []
    titles: list[str] = []
    per_class = PREVIEW_ROWS * PREVIEW_COLS
    for label, first, count in ((1, 0, params.n_blast), (0, params.n_blast, params.n_not_blast)):
        images = [_item(i, params, seed)[2] for i in range(first, first + min(count, per_class))]
        for start in range(0, len(images), PREVIEW_COLS):
            rows.append(images[start : start + PREVIEW_COLS])
            titles.append(DEFAULT_CLASSES[label])
    fig = figures.image_grid(rows, titles, [])
    total = params.n_blast + params.n_not_blast
    bound = bayes_accuracy(params.difficulty, params.n_blast / total)
    fig.suptitle(
        f"synthetic cells, difficulty {params.difficulty:g} (best possible accuracy {bound:.1%})",
        fontsize=9,
    )
    fig.tight_layout()
    return fig
