"""The audit stage, a leakage audit: which test images are copies of a training image.

Augmentation makes several images of one cell (turned, shifted, sheared, zoomed, flipped, padded
with a constant fill); a split that puts copies of one cell on both sides leaks. The audit finds
such pairs in two steps, a cheap shortlist and a verification of each pair on it.

Shortlist, by colour. An image is described by its colour distribution: the share of its pixels
in each cell of a `bins` x `bins` x `bins` grid over RGB, cube-rooted and scaled to unit length;
the distance of two images is one minus the cosine similarity of their descriptors (0: the same
colours in the same proportions, 1: no colour in common). Geometry barely changes a colour
distribution, and the fill (with its one-pixel seam) is left out, so a copy lands among the
`audit.candidates` training images nearest to it in colour. Colour alone cannot say which of them
is a copy: crops from one lab share stain, light and background, and lie as close in colour as
copies do.

Verification, by geometry. Each image is brought to WORK_SIZE pixels and described by up to
`audit.keypoints` ORB keypoints (scikit-image: FAST corners over a scale pyramid, each with an
oriented 256-bit binary descriptor). The keypoints of a test image and of a candidate are paired
where each is the other's nearest by Hamming distance, and RANSAC fits an affine map to the pairs
among the maps the augmentation can make between two copies (no mirror; stretched no more than
zoom and shear allow, `max_stretch`). ORB descriptors are not mirror-invariant, so when the
augmentation flips, the mirrored test image is matched too. A pair verifies, and the test image is
a near-duplicate, when at least `audit.min_inliers` pairs, and at least `audit.min_inlier_ratio`
of them, agree with the map within RESIDUAL pixels: a property of geometric agreement, measured
at one resolution, that does not depend on the image size or on the colours of a data set
(`bench/audit_precision.py` measures it; docs/parameters.md, "Leakage audit", has the figures).
A test image with fewer than `audit.min_inliers` keypoints (a nearly blank one: a copy shifted
off its cell) cannot verify; the report counts them.

Memory is bounded by the data's descriptors, never its images: the training split is streamed
twice (colour descriptors, kept; then keypoints of the shortlisted images, used and dropped) and
the test split once (its colour descriptors and keypoints are kept).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.ndimage
import scipy.sparse

from blastcell import prepared
from blastcell.files import DataError
from blastcell.images import resize
from blastcell.keypoints import WORK_SIZE, Keypoints, detect, fit_affine, match
from blastcell.params import AuditParams, AugmentParams

FILL_TOLERANCE = 3  # pixel levels: resizing leaves the fill within this of its value
EXPONENT = 1 / 3
FILL_MARGIN = 4  # pixels: keypoints this near the fill are dropped (its corners are in every copy)
STRETCH_SLACK = 1.15  # on the stretch the augmentation allows, for keypoint noise
OVERLAY_BUDGET = (
    2  # with an overlay, ORB keeps this many times the keypoints before it is left out
)


def fill_mask(images: np.ndarray, fill: Sequence[float]) -> np.ndarray:
    """(N, S, S) True where a pixel is the fill colour, or touches such a pixel."""
    colour = np.asarray(fill, dtype=np.int16)
    exact = (np.abs(images.astype(np.int16) - colour) <= FILL_TOLERANCE).all(axis=-1)
    cross = np.zeros((1, 3, 3), bool)  # neighbours within each image, not across the batch
    cross[0, 1, :] = cross[0, :, 1] = True
    return scipy.ndimage.binary_dilation(exact, structure=cross)


def _check_batch(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"expected uint8 RGB images (N, H, W, 3), got {images.dtype} {images.shape}"
        )
    return images


def descriptors(
    images: np.ndarray, bins: int, fill: Sequence[float] | None = None
) -> scipy.sparse.csr_array:
    """Unit colour descriptors (N, bins**3), sparse, of a batch of uint8 RGB images (N, H, W, 3).

    With `fill`, pixels of that colour (the augmentation's constant padding) are left out; an
    image with no other pixel gets an all-zero descriptor, at distance 1 from everything.
    """
    images = _check_batch(images)
    level = images.astype(np.int64) * bins // 256
    cell = (level[..., 0] * bins + level[..., 1]) * bins + level[..., 2]
    keep = ~fill_mask(images, fill) if fill is not None else np.ones(cell.shape, bool)
    columns, values, indptr = [], [], [0]
    for cells, kept in zip(cell, keep, strict=True):
        counts = np.bincount(cells[kept], minlength=bins**3)
        occupied = np.flatnonzero(counts)
        root = counts[occupied] ** EXPONENT  # counts, not shares: unit length cancels the scale
        norm = np.linalg.norm(root)
        columns.append(occupied)
        values.append(root / norm if norm else root)
        indptr.append(indptr[-1] + len(occupied))
    return scipy.sparse.csr_array(
        (
            np.concatenate([*values, np.zeros(0)]),
            np.concatenate([*columns, np.zeros(0, int)]),
            np.array(indptr),
        ),
        shape=(len(images), bins**3),
    )


def shortlist(queries, references: Iterable, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Index and distance of each query's `k` nearest references, nearest first.

    `queries` (Q, D) and each batch that `references` yields (n, D) are unit descriptors, dense
    arrays or sparse matrices; the references are numbered in order across the batches. The
    distance is 1 - the cosine similarity. Of equal distances the first reference wins, so the
    answer does not depend on how the references are batched. Returns (index (Q, k) int64,
    distance (Q, k) float64); index -1 and distance inf where there are fewer than k references.
    """
    n_queries = queries.shape[0]
    best = np.full((n_queries, k), np.inf)
    index = np.full((n_queries, k), -1, dtype=np.int64)
    offset = 0
    for batch in references:
        if batch.ndim != 2 or batch.shape[1] != queries.shape[1]:
            raise ValueError(
                f"reference batch of shape {batch.shape}; queries are {queries.shape}"
            )
        if batch.shape[0] == 0:
            continue
        similarity = queries @ batch.T
        if scipy.sparse.issparse(similarity):
            similarity = similarity.toarray()
        distance = np.concatenate([best, 1.0 - np.asarray(similarity, np.float64)], axis=1)
        numbers = np.broadcast_to(offset + np.arange(batch.shape[0]), (n_queries, batch.shape[0]))
        numbers = np.concatenate([index, numbers], axis=1)
        order = np.argsort(distance, axis=1, kind="stable")[:, :k]  # earlier first among ties
        best = np.take_along_axis(distance, order, axis=1)
        index = np.take_along_axis(numbers, order, axis=1)
        offset += batch.shape[0]
    return index, np.maximum(best, 0.0)  # rounding can take a duplicate a hair below 0


def keypoints(
    image: np.ndarray,
    n: int,
    fill: Sequence[float] | None = None,
    overlay: np.ndarray | None = None,
) -> Keypoints:
    """Up to `n` ORB keypoints of a uint8 RGB image (H, W, 3) at WORK_SIZE; with `fill`, none
    within FILL_MARGIN pixels of that colour (the augmentation's padding); with `overlay` (a
    WORK_SIZE mask, `copied.Copies.overlay`), none on it, the `n` strongest of the rest."""
    exclude = None
    if fill is not None:
        small = resize(_check_batch(image[np.newaxis])[0], WORK_SIZE)
        exclude = scipy.ndimage.binary_dilation(
            fill_mask(small[np.newaxis], fill)[0], iterations=FILL_MARGIN
        )
    if overlay is None or not overlay.any():  # the n strongest, then those off the fill
        return detect(_check_batch(image[np.newaxis])[0], n, exclude=exclude)
    exclude = overlay if exclude is None else exclude | overlay
    return detect(image, n, exclude=exclude, budget=OVERLAY_BUDGET * n)


def views(image: np.ndarray, augment: AugmentParams) -> list[np.ndarray]:
    """The image, and mirrored when the augmentation flips (a vertical flip is a mirror turned
    by 180 degrees): the views of a test image matched against its candidates."""
    flips = (augment.horizontal_flip, augment.vertical_flip)  # both read: both are declared
    return [image, image[:, ::-1]] if any(flips) else [image]


def max_stretch(augment: AugmentParams) -> float:
    """The largest stretch (singular value of the linear part) of the affine map from one copy of
    an image to another, with STRETCH_SLACK; its inverse is the smallest. Zoom and shear set it;
    turns and shifts do not stretch."""
    shear = np.deg2rad(augment.shear_range)
    low, high = np.linalg.svd([[1, -np.sin(shear)], [0, np.cos(shear)]], compute_uv=False)[::-1]
    low, high = low * (1 - augment.zoom_range), high * (1 + augment.zoom_range)
    return STRETCH_SLACK * high / low if low > 0 else np.inf


def agreement(test: Sequence[Keypoints], train: Keypoints, stretch: float) -> tuple[int, int]:
    """(inliers, pairs) of the best-agreeing view of a test image (see `views`) with a training
    image: the most inliers, then the fewest pairs."""
    found = []
    for view in test:
        pairs = match(view, train)
        inliers = fit_affine(
            view.xy[pairs[:, 0]], train.xy[pairs[:, 1]], stretch, np.random.default_rng(0)
        )
        found.append((int(inliers.sum()), len(pairs)))
    return max(found, key=lambda f: (f[0], -f[1]), default=(0, 0))


@dataclass(frozen=True)
class Found:
    """Each test image's shortlist, (Q, k) arrays: training index (into the train split; -1
    where there were fewer than k), colour distance, the verification's inliers and pairs, and
    whether the pair verified; and (Q,) each test image's keypoints, counted in its richer view."""

    index: np.ndarray
    distance: np.ndarray
    inliers: np.ndarray
    pairs: np.ndarray
    verified: np.ndarray
    keypoint_counts: np.ndarray

    @property
    def flagged(self) -> np.ndarray:
        """(Q,) True where a candidate verified: a near-duplicate."""
        return self.verified.any(axis=1)

    def best(self) -> np.ndarray:
        """(Q,) the column of each test image's best candidate: verified first, then the most
        inliers, then the nearest in colour."""
        shape = self.index.shape
        columns = np.broadcast_to(np.arange(shape[1]), shape)
        return np.lexsort((columns, -self.inliers, ~self.verified), axis=1)[:, 0]


def compare(
    test: Iterable[np.ndarray],
    train: Callable[[], Iterable[np.ndarray]],
    params: AuditParams,
    augment: AugmentParams,
    overlay: np.ndarray | None = None,
) -> Found:
    """Shortlist and verify every test image against the training images.

    `test` yields batches of uint8 RGB test images (n, H, W, 3); `train()` yields the training
    images the same way, and is called twice (colour descriptors first, then the keypoints of
    the shortlisted ones). `overlay`: the data set's burned-in overlay (a WORK_SIZE mask, found
    by the copies stage), where no keypoint is taken.
    """
    fill = fill_colour(augment)
    k = params.candidates
    colours = [descriptors(x, params.bins, fill) for x in train()]
    index, distance, test_keypoints = [np.zeros((0, k), np.int64)], [np.zeros((0, k))], []
    for x in test:
        i, d = shortlist(descriptors(x, params.bins, fill), colours, k)
        index.append(i)
        distance.append(d)
        test_keypoints += [
            [keypoints(view, params.keypoints, fill, overlay) for view in views(image, augment)]
            for image in x
        ]
    index, distance = np.concatenate(index), np.concatenate(distance)
    wanted = defaultdict(list)  # training index -> the (test image, column) that shortlist it
    for q, j in zip(*np.nonzero(index >= 0), strict=True):
        wanted[int(index[q, j])].append((q, j))
    inliers, pairs = np.zeros(index.shape, np.int64), np.zeros(index.shape, np.int64)
    stretch = max_stretch(augment)
    offset = 0
    for x in train():
        for t, image in enumerate(x):
            if offset + t not in wanted:
                continue
            theirs = keypoints(image, params.keypoints, fill, overlay)
            for q, j in wanted[offset + t]:
                inliers[q, j], pairs[q, j] = agreement(test_keypoints[q], theirs, stretch)
        offset += len(x)
    verified = (inliers >= params.min_inliers) & (inliers >= params.min_inlier_ratio * pairs)
    counts = np.array([max(len(v.xy) for v in shown) for shown in test_keypoints], np.int64)
    return Found(index, distance, inliers, pairs, verified, counts)


def fill_colour(augment: AugmentParams) -> tuple[float, float, float] | None:
    """The constant fill that augmentation pads copies with, if it pads with one."""
    return (augment.cval,) * 3 if augment.fill_mode == "constant" else None


NEAREST_COLUMNS = [
    "test_file",
    "train_file",
    "distance",
    "inliers",
    "inlier_ratio",
    "near_duplicate",
    "same_source",
]


@dataclass(frozen=True)
class Audit:
    """The audit's table (one row per test image, NEAREST_COLUMNS) and its report."""

    rows: list[list[str]]
    report: dict

    def summary(self) -> str:
        """One line: the near-duplicates found, and what the sources say."""
        r = self.report
        return (
            f"{r['near_duplicates']} of {r['test_images']} test images are copies of a training "
            f"image (of the {r['candidates']} nearest in colour, one with at least "
            f"{r['min_inliers']} keypoint pairs, {r['min_inlier_ratio']:.0%} of those found, "
            f"agreeing with one affine map); the sources say {r['source_in_train']} share a cell "
            f"with training, the groups {r['group_in_train']} a patient"
        )


def audit(
    folder: Path,
    params: AuditParams,
    augment: AugmentParams,
    overlay: np.ndarray | None = None,
) -> Audit:
    """Each test image's best match in training, flagged where it verifies, and, from the
    prepared folder's tables, the ground truth on our own data: test images whose best match,
    or any training image, comes from the same source cell, and test images whose group
    (patient, slide or sample: `data.group_by`, joined by the copies found) also has images in
    training. `overlay`: the data set's burned-in overlay (see `compare`)."""
    data = prepared.read(folder)
    test, train = (data.table(name) for name in ("test", "train"))
    if not train:
        raise DataError(f"{folder / 'train.csv'} lists no images: nothing to compare with")

    def images_of(split: str) -> Iterable[np.ndarray]:
        return (x for x, _ in data.iterate(split, params.batch_size))

    found = compare(images_of("test"), lambda: images_of("train"), params, augment, overlay)
    if len(found.index) != len(test):
        raise DataError(
            f"{folder}: the test shards hold {len(found.index)} images, test.csv {len(test)}"
        )
    rows, same_best, best_inliers = [], 0, []
    for q, (entry, j) in enumerate(zip(test, found.best(), strict=True)):
        other = train[found.index[q, j]]
        near, same = bool(found.verified[q, j]), other.source == entry.source
        inliers, pairs = int(found.inliers[q, j]), int(found.pairs[q, j])
        same_best += same
        best_inliers.append(inliers)
        rows.append(
            [
                entry.file,
                other.file,
                f"{found.distance[q, j]:.6f}",
                str(inliers),
                f"{inliers / pairs if pairs else 0.0:.4f}",
                str(near).lower(),
                str(same).lower(),
            ]
        )
    n, flagged = len(test), int(found.flagged.sum())
    train_sources = {entry.source for entry in train}
    train_groups = {entry.group for entry in train}
    report = {
        "test_images": n,
        "near_duplicates": flagged,
        "near_duplicate_fraction": round(flagged / n, 6) if n else 0.0,
        "candidates": params.candidates,
        "min_inliers": params.min_inliers,
        "min_inlier_ratio": params.min_inlier_ratio,
        "median_distance": round(float(np.median(found.distance[:, 0])), 6) if n else None,
        "median_inliers": float(np.median(best_inliers)) if n else None,
        "too_few_keypoints": int((found.keypoint_counts < params.min_inliers).sum()),
        "overlay_pixels": int(overlay.sum()) if overlay is not None else 0,
        "nearest_same_source": same_best,
        "source_in_train": sum(entry.source in train_sources for entry in test),
        "group_in_train": sum(entry.group in train_groups for entry in test),
    }
    return Audit(rows, report)
