"""ORB keypoints and the geometric checks built on them: what the copies stage and the audit use
to decide that two images show the same cells.

An image is brought to WORK_SIZE pixels and described by its ORB keypoints (scikit-image: FAST
corners over a pyramid of SCALES levels 1.2x apart, each with an orientation and an oriented
256-bit binary descriptor). Keypoints of two images are paired where each is the other's nearest
by Hamming distance (`match`); a pair of images shows the same content when many pairs agree
with one map of the plane. Two ways to find that map:

* `fit_affine`, the audit's: RANSAC over samples of three pairs, among affine maps with a bounded
  stretch (what augmentation can do between two copies of one image);
* `fit_similarity`, the copies stage's: every pair proposes a map by itself (the rotation and
  scale between its two keypoints' orientations and pyramid levels, and the shift that takes
  one to the other), the proposal that the most pairs agree with is refitted to them. Trying
  every pair finds the map when only a few percent of the pairs agree, as when two captures of
  a field overlap by a third of their area, where samples of three rarely do.

Memory and time depend on the number of keypoints, never on the image size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.color import rgb2gray
from skimage.feature import ORB

from blastcell.images import resize

WORK_SIZE = 128  # pixels: keypoints are found at one resolution, so inlier counts mean the same
FAST_THRESHOLD = 0.02  # of the grey range; ORB's 0.08 finds few corners in soft or upsampled crops
SCALES = 4  # pyramid levels 1.2x apart: 1.7x
ORB_MARGIN = 20  # pixels: ORB describes no keypoint this near an edge (its patch must fit)
RESIDUAL = 2.0  # pixels at WORK_SIZE: a pair agrees with a map that takes it within this
TRIALS = 500  # RANSAC's samples of three pairs, drawn from a fixed seed: the same answer each run
MIN_AREA = 1.0  # pixels^2: samples of three nearly collinear points are skipped
PROPOSAL_TOLERANCE = 6.0  # pixels: a pair agrees with another's proposal (orientations are rough)
REFITS = 5  # least-squares refits of a map to the pairs that agree with it


@dataclass(frozen=True)
class Keypoints:
    """An image's ORB keypoints at WORK_SIZE, strongest first: positions (n, 2) as (x, y) =
    (column, row), binary descriptors (n, 32) with 256 bits packed, orientations (n,) in
    radians and pyramid scales (n,)."""

    xy: np.ndarray
    bits: np.ndarray
    angle: np.ndarray
    scale: np.ndarray

    def __len__(self) -> int:
        return len(self.xy)

    def take(self, keep: np.ndarray) -> Keypoints:
        """The keypoints selected by a mask or an index array."""
        return Keypoints(self.xy[keep], self.bits[keep], self.angle[keep], self.scale[keep])


NONE = Keypoints(
    np.zeros((0, 2), np.float32),
    np.zeros((0, 32), np.uint8),
    np.zeros(0, np.float32),
    np.zeros(0, np.float32),
)


def detect(
    image: np.ndarray,
    n: int,
    *,
    exclude: np.ndarray | None = None,
    pad: bool = False,
    budget: int | None = None,
) -> Keypoints:
    """Up to `n` ORB keypoints of a uint8 RGB image (H, W, 3) brought to WORK_SIZE pixels.

    ORB keeps its `budget` strongest (default `n`); of those, keypoints on a True pixel of
    `exclude` (WORK_SIZE x WORK_SIZE) are dropped, and the `n` strongest left are returned. With
    `pad`, the image is mirrored ORB_MARGIN pixels out beyond its edges first, so that
    keypoints near an edge are described too (ORB drops those whose patch does not fit), and
    keypoints found in the mirrored margin are dropped.
    """
    image = resize(image, WORK_SIZE)
    grey = rgb2gray(image)
    margin = ORB_MARGIN if pad else 0
    if margin:
        grey = np.pad(grey, margin, mode="reflect")
    orb = ORB(n_keypoints=budget or n, fast_threshold=FAST_THRESHOLD, n_scales=SCALES)
    try:
        orb.detect_and_extract(grey)
    except RuntimeError:  # "ORB found no features": a flat image, nothing to match
        return NONE
    rows, cols = (orb.keypoints - margin).T
    at = np.rint(rows).astype(int), np.rint(cols).astype(int)
    keep = (at[0] >= 0) & (at[1] >= 0) & (at[0] < WORK_SIZE) & (at[1] < WORK_SIZE)
    if exclude is not None:
        keep[keep] = ~exclude[at[0][keep], at[1][keep]]
    chosen = np.flatnonzero(keep)[:n]  # ORB lists its keypoints strongest first
    return Keypoints(
        np.column_stack([cols, rows])[chosen].astype(np.float32),
        np.packbits(orb.descriptors[chosen], axis=1),
        orb.orientations[chosen].astype(np.float32),
        orb.scales[chosen].astype(np.float32),
    )


_M1, _M2, _M4, _ONES = (
    np.uint64(m)
    for m in (0x5555555555555555, 0x3333333333333333, 0x0F0F0F0F0F0F0F0F, 0x0101010101010101)
)


def popcount(x: np.ndarray) -> np.ndarray:
    """The set bits of each uint64."""
    if hasattr(np, "bitwise_count"):  # NumPy 2: a ufunc, twice as fast as the arithmetic below
        return np.bitwise_count(x)
    x = x - ((x >> np.uint64(1)) & _M1)
    x = (x & _M2) + ((x >> np.uint64(2)) & _M2)
    x = (x + (x >> np.uint64(4))) & _M4
    return (x * _ONES) >> np.uint64(56)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, m) bits that differ between packed descriptors a (n, 32) and b (m, 32), uint8."""
    # Counted 64 bits at a time, in integers: a float matrix product would be faster alone, but
    # BLAS threads on matrices this small crawl when the cores are busy.
    x = a.view(np.uint64)[:, np.newaxis, :] ^ b.view(np.uint64)[np.newaxis, :, :]
    return popcount(x).sum(axis=2)


def match(a: Keypoints, b: Keypoints, ratio: float | None = None) -> np.ndarray:
    """(m, 2) indices of the keypoints of `a` and `b` that are each other's nearest by Hamming
    distance (of equal distances the first wins).

    With `ratio`, a pair is kept only where the nearest is clearly nearer than the next: at most
    `ratio` times its distance, both ways (Lowe's ratio test). A keypoint on a pattern repeated
    everywhere, such as the rim of a round cell, looks like many keypoints of the other image,
    and pairs with one of them by chance.
    """
    if not len(a.bits) or not len(b.bits):
        return np.zeros((0, 2), np.int64)
    distance = hamming(a.bits, b.bits)
    forward, backward = distance.argmin(axis=1), distance.argmin(axis=0)
    mutual = np.flatnonzero(backward[forward] == np.arange(len(forward)))
    if ratio is not None:
        mutual = mutual[
            _distinct(distance[mutual], ratio) & _distinct(distance.T, ratio)[forward[mutual]]
        ]
    return np.column_stack([mutual, forward[mutual]])


def _distinct(distance: np.ndarray, ratio: float) -> np.ndarray:
    """(n,) whether each row's smallest distance is at most `ratio` times its second smallest."""
    if distance.shape[1] < 2:
        return np.ones(len(distance), bool)
    two = np.partition(distance, 1, axis=1)[:, :2]
    return two[:, 0] < ratio * two[:, 1]  # strictly: two equally near are no match


def fit_affine(
    src: np.ndarray, dst: np.ndarray, stretch: float, rng: np.random.Generator
) -> np.ndarray:
    """RANSAC: which of the pairs (src[i], dst[i]) (m, 2) agree with the affine map that the most
    of them agree with, within RESIDUAL, among maps that do not mirror and stretch by no more
    than `stretch` nor less than its inverse; the map is refitted to its inliers. A boolean
    (m,) mask.

    All TRIALS samples are solved and scored at once, in NumPy (some 40 times faster than
    `skimage.measure.ransac`'s loop over as many samples).
    """
    m = len(src)
    none = np.zeros(m, bool)
    if m < 3:
        return none
    sample = rng.integers(0, m, (TRIALS, 3))
    sample = sample[(sample[:, 0] != sample[:, 1]) & (sample[:, 0] != sample[:, 2])]
    sample = sample[sample[:, 1] != sample[:, 2]]
    points = np.column_stack([src, np.ones(m)])  # dst ~ points @ map, map (3, 2)
    corners = points[sample]  # (T, 3, 3)
    corners_ok = np.abs(np.linalg.det(corners)) >= 2 * MIN_AREA
    sample, corners = sample[corners_ok], corners[corners_ok]
    if not len(sample):
        return none
    maps = np.linalg.solve(corners, dst[sample])  # (T, 3, 2)
    linear = maps[:, :2, :]
    singular = np.linalg.svd(linear, compute_uv=False)  # (T, 2), largest first
    allowed = (
        (np.linalg.det(linear) > 0) & (singular[:, 0] <= stretch) & (singular[:, 1] >= 1 / stretch)
    )
    if not allowed.any():
        return none
    maps = maps[allowed]
    residual = np.linalg.norm(points @ maps - dst, axis=2)  # (T, m)
    inliers = residual[(residual < RESIDUAL).sum(axis=1).argmax()] < RESIDUAL
    for _ in range(3):  # refit to the inliers while that gains some
        refit = np.linalg.lstsq(points[inliers], dst[inliers], rcond=None)[0]
        more = np.linalg.norm(points @ refit - dst, axis=1) < RESIDUAL
        if more.sum() <= inliers.sum():
            break
        inliers = more
    return inliers


def proposals(a: Keypoints, b: Keypoints, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each pair's own map from `a` to `b`: the rotation and scale between its keypoints'
    orientations and pyramid levels, about its keypoint in `a`. Returns (linear (m, 2, 2),
    shift (m, 2)) with dst = linear @ src + shift."""
    turn = (b.angle[pairs[:, 1]] - a.angle[pairs[:, 0]]).astype(np.float64)
    scale = (b.scale[pairs[:, 1]] / a.scale[pairs[:, 0]]).astype(np.float64)
    cos, sin = np.cos(turn) * scale, np.sin(turn) * scale
    linear = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)
    src, dst = a.xy[pairs[:, 0]].astype(np.float64), b.xy[pairs[:, 1]].astype(np.float64)
    return linear, dst - np.einsum("mij,mj->mi", linear, src)


@dataclass(frozen=True)
class Fit:
    """A map found between two images: the pairs that agree with it (a boolean mask over the
    pairs given), how many places of each image they stand on (the fewer of the two: ORB finds
    one corner at several scales, and a place counts once), and the map, dst = linear @ src +
    shift (None where no map was allowed)."""

    inliers: np.ndarray
    count: int = 0
    linear: np.ndarray | None = None
    shift: np.ndarray | None = None

    def describe(self) -> dict[str, float]:
        """The map in words a person checks: rotation (degrees), scale and shift (pixels at
        WORK_SIZE)."""
        if self.linear is None or self.shift is None:
            return {}
        (a, b), (c, d) = self.linear
        return {
            "rotation_deg": round(float(np.degrees(np.arctan2(c - b, a + d))), 1),
            "scale": round(float(np.sqrt(abs(a * d - b * c))), 3),
            "shift_x": round(float(self.shift[0]), 1),
            "shift_y": round(float(self.shift[1]), 1),
        }


def fit_similarity(
    a: Keypoints, b: Keypoints, pairs: np.ndarray, max_scale: float, max_anisotropy: float
) -> Fit:
    """Which pairs (indices into `a` and `b`, (m, 2)) agree with one map from `a` to `b`.

    Every pair proposes its own map (`proposals`); the proposal the most pairs agree with,
    within PROPOSAL_TOLERANCE, is refitted as an affine map to the pairs that agree with it, up
    to REFITS times, each time keeping the pairs within RESIDUAL. The map must not mirror, must
    scale by no more than `max_scale` nor less than its inverse, and stretch one direction no
    more than `max_anisotropy` times another; otherwise no pair agrees. Deterministic: no
    random sampling.
    """
    m = len(pairs)
    if m < 3:
        return Fit(np.zeros(m, bool))
    linear, shift = proposals(a, b, pairs)
    src, dst = a.xy[pairs[:, 0]].astype(np.float64), b.xy[pairs[:, 1]].astype(np.float64)
    predicted = np.einsum("pij,mj->pmi", linear, src) + shift[:, np.newaxis, :]  # (m, m, 2)
    agree = np.linalg.norm(predicted - dst, axis=2) < PROPOSAL_TOLERANCE
    inliers = agree[agree.sum(axis=1).argmax()]
    points = np.column_stack([src, np.ones(m)])
    best, fitted = np.zeros(m, bool), None
    for _ in range(REFITS):
        if inliers.sum() < 3:
            break
        refit = np.linalg.lstsq(points[inliers], dst[inliers], rcond=None)[0]  # (3, 2)
        inliers = np.linalg.norm(points @ refit - dst, axis=1) < RESIDUAL
        if inliers.sum() <= best.sum():
            break
        best, fitted = inliers, refit
    if fitted is None or best.sum() < 3:
        return Fit(np.zeros(m, bool))
    lin = fitted[:2].T
    singular = np.linalg.svd(lin, compute_uv=False)
    allowed = (
        np.linalg.det(lin) > 0
        and singular[1] >= 1 / max_scale
        and singular[0] <= max_scale
        and singular[0] <= max_anisotropy * singular[1]
    )
    if not allowed:
        return Fit(np.zeros(m, bool))
    places = min(len(np.unique(np.rint(xy[best]), axis=0)) for xy in (src, dst))
    return Fit(best, places, lin, fitted[2])
