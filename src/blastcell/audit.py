"""The audit stage, a leakage audit: how close each test image comes to the training set.

An image is described by its colour distribution: the share of its pixels in each cell of a
`bins` x `bins` x `bins` grid over RGB, cube-rooted and scaled to unit length. The distance of
two images is one minus the cosine similarity of their descriptors: 0 for the same colours in
the same proportions, 1 for no colour in common. A colour distribution does not change when the
image is flipped, turned by any angle or shifted, and changes little when it is zoomed or sheared
or loses an edge strip to a shift, which is all the seed's augmentation does; the cube root
evens out the weight of common and rare colours, so those changes of proportion matter less.
Pixels of the constant fill that augmentation pads with (and the one-pixel seam where it meets
the image) are left out, so a padded copy matches its original.

A comparison of pixels, aligned, did not separate copies from other cells on the synthetic
data (16 x 16 thumbnails, even searched over the flips and 24 rotations: for most augmented
images some other cell came closer than any copy of their own); the colour distribution did
(see the README, "Leakage audit").

Descriptors are sparse (an image fills a few hundred of the bins^3 cells); training images are
streamed in batches and kept as descriptors only, never the images.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.ndimage
import scipy.sparse

from blastcell import prepared
from blastcell.files import DataError
from blastcell.params import AuditParams, AugmentParams

FILL_TOLERANCE = 3  # pixel levels: resizing leaves the fill within this of its value
EXPONENT = 1 / 3


def fill_mask(images: np.ndarray, fill: Sequence[float]) -> np.ndarray:
    """(N, S, S) True where a pixel is the fill colour, or touches such a pixel."""
    colour = np.asarray(fill, dtype=np.int16)
    exact = (np.abs(images.astype(np.int16) - colour) <= FILL_TOLERANCE).all(axis=-1)
    cross = np.zeros((1, 3, 3), bool)  # neighbours within each image, not across the batch
    cross[0, 1, :] = cross[0, :, 1] = True
    return scipy.ndimage.binary_dilation(exact, structure=cross)


def descriptors(
    images: np.ndarray, bins: int, fill: Sequence[float] | None = None
) -> scipy.sparse.csr_array:
    """Unit colour descriptors (N, bins**3), sparse, of a batch of uint8 RGB images (N, H, W, 3).

    With `fill`, pixels of that colour (the augmentation's constant padding) are left out; an
    image with no other pixel gets an all-zero descriptor, at distance 1 from everything.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"expected uint8 RGB images (N, H, W, 3), got {images.dtype} {images.shape}"
        )
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


def nearest(queries, references: Iterable) -> tuple[np.ndarray, np.ndarray]:
    """Index and distance of each query's nearest reference.

    `queries` (Q, D) and each batch that `references` yields (n, D) are unit descriptors, dense
    arrays or sparse matrices; the references are numbered in order across the batches. The
    distance is 1 - the cosine similarity. Of equal distances the first reference wins, so the
    answer does not depend on how the references are batched. Returns (index (Q,) int64,
    distance (Q,) float64); index -1 and distance inf where there were no references.
    """
    n_queries = queries.shape[0]
    best = np.full(n_queries, np.inf)
    index = np.full(n_queries, -1, dtype=np.int64)
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
        distance = 1.0 - np.asarray(similarity, dtype=np.float64)
        j = distance.argmin(axis=1)
        d = distance[np.arange(n_queries), j]
        better = d < best
        best[better] = d[better]
        index[better] = offset + j[better]
        offset += batch.shape[0]
    return index, np.maximum(best, 0.0)  # rounding can take a duplicate a hair below 0


@dataclass(frozen=True)
class Nearest:
    """Each test image's nearest training image (index into the train split) and distance."""

    index: np.ndarray
    distance: np.ndarray


def nearest_training(
    folder: Path, bins: int, batch_size: int, fill: Sequence[float] | None = None
) -> Nearest:
    """Compare every test image of a prepared folder with every training image.

    Both splits are streamed from their shards `batch_size` images at a time; only the training
    descriptors are kept.
    """
    train = [descriptors(x, bins, fill) for x, _ in prepared.iterate(folder, "train", batch_size)]
    indices, distances = [], []
    for x, _ in prepared.iterate(folder, "test", batch_size):
        i, d = nearest(descriptors(x, bins, fill), train)
        indices.append(i)
        distances.append(d)
    if not indices:
        return Nearest(np.zeros(0, np.int64), np.zeros(0))
    return Nearest(np.concatenate(indices), np.concatenate(distances))


def fill_colour(augment: AugmentParams) -> tuple[float, float, float] | None:
    """The constant fill that augmentation pads copies with, if it pads with one."""
    return (augment.cval,) * 3 if augment.fill_mode == "constant" else None


NEAREST_COLUMNS = ["test_file", "train_file", "distance", "near_duplicate", "same_source"]


@dataclass(frozen=True)
class Audit:
    """The audit's table (one row per test image, NEAREST_COLUMNS) and its report."""

    rows: list[list[str]]
    report: dict

    def summary(self) -> str:
        """One line: the near-duplicates found, and what the sources say."""
        r = self.report
        return (
            f"{r['near_duplicates']} of {r['test_images']} test images have a near-duplicate in "
            f"training (distance < {r['threshold']}); the sources say {r['source_in_train']} "
            "share a cell with it"
        )


def audit(folder: Path, params: AuditParams, augment: AugmentParams) -> Audit:
    """Each test image's nearest training image, flagged below `params.threshold`, and, from
    the prepared folder's tables, the ground truth on our own data: test images whose nearest
    training image, or any training image, comes from the same source cell."""
    test, train = (prepared.read_table(folder, name) for name in ("test", "train"))
    if not train:
        raise DataError(f"{folder / 'train.csv'} lists no images: nothing to compare with")
    found = nearest_training(folder, params.bins, params.batch_size, fill_colour(augment))
    rows, flagged, same_nearest = [], 0, 0
    for entry, i, d in zip(test, found.index, found.distance, strict=True):
        match = train[i]
        near, same = bool(d < params.threshold), match.source == entry.source
        flagged += near
        same_nearest += same
        rows.append([entry.file, match.file, f"{d:.6f}", str(near).lower(), str(same).lower()])
    n = len(test)
    train_sources = {entry.source for entry in train}
    report = {
        "test_images": n,
        "near_duplicates": flagged,
        "near_duplicate_fraction": round(flagged / n, 6) if n else 0.0,
        "threshold": params.threshold,
        "median_distance": round(float(np.median(found.distance)), 6) if n else None,
        "nearest_same_source": same_nearest,
        "source_in_train": sum(entry.source in train_sources for entry in test),
    }
    return Audit(rows, report)
