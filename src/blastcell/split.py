"""Split the augmented set into train / val / test, resized for the model.

The default `source` split assigns whole source cells to one side, stratified by class: every
augmented copy of a cell, and every exact duplicate of it, lands where its original does, and the
test set holds originals only.
The `random` split reproduces the seed's leaky protocol (augment everything, shuffle, cut at
1020:248) so that its inflation can be measured; there the validation set is the test set, as in
the seed, which reported on it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import skimage.transform

from blastcell.data import DataError, read_image

SPLITS = ("train", "val", "test")
SEED_TRAIN_SHARE = 1020 / 1268  # the seed's cut of its 1268 augmented images


@dataclass(frozen=True)
class Record:
    """One image of the augmented set: file, the original it came from, class, copy number."""

    file: str
    source: str
    label: int
    copy: int  # 0 = the original itself


def _counts(n: int, test_fraction: float, val_fraction: float) -> tuple[int, int]:
    return round(n * test_fraction), round(n * val_fraction)


def split_by_source(
    records: Sequence[Record],
    classes: Sequence[str],
    test_fraction: float,
    val_fraction: float,
    rng: np.random.Generator,
) -> dict[str, list[Record]]:
    """Stratified split by source cell; the test set keeps only the originals."""
    sources_by_class: dict[int, set[str]] = defaultdict(set)
    for r in records:
        sources_by_class[r.label].add(r.source)  # duplicates share a source: one group
    side: dict[str, str] = {}
    for label in sorted(sources_by_class):
        sources = sorted(sources_by_class[label])
        n = len(sources)
        fr = (test_fraction, val_fraction)
        n_test, n_val = _counts(n, *fr)
        if min(n_test, n_val, n - n_test - n_val) < 1:
            need = next(
                k for k in range(3, 10**6) if min(*_counts(k, *fr), k - sum(_counts(k, *fr))) >= 1
            )
            raise DataError(
                f"class '{classes[label]}' has {n} source images; prepare.test_fraction="
                f"{test_fraction} and prepare.val_fraction={val_fraction} need at least {need} "
                "so that train, val and test each get one"
            )
        order = rng.permutation(n)
        for rank, i in enumerate(order):
            side[sources[i]] = (
                "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
            )
    splits: dict[str, list[Record]] = {name: [] for name in SPLITS}
    for r in records:
        if side[r.source] != "test" or r.copy == 0:
            splits[side[r.source]].append(r)
    return {name: _shuffled(rows, rng) for name, rows in splits.items()}


def split_random(records: Sequence[Record], rng: np.random.Generator) -> dict[str, list[Record]]:
    """The seed's protocol: shuffle every image, originals and copies, and cut at 1020:248."""
    rows = _shuffled(list(records), rng)
    cut = round(len(rows) * SEED_TRAIN_SHARE)
    if cut < 1 or cut >= len(rows):
        raise DataError(f"{len(rows)} images are too few for the seed's 1020:248 random split")
    return {"train": rows[:cut], "val": rows[cut:], "test": rows[cut:]}


def _shuffled(rows: list[Record], rng: np.random.Generator) -> list[Record]:
    return [rows[i] for i in rng.permutation(len(rows))]


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """Resize an RGB uint8 image to (size, size) with anti-aliasing, keeping uint8."""
    if image.shape[:2] == (size, size):
        return image
    out = skimage.transform.resize(
        image, (size, size), order=1, anti_aliasing=True, preserve_range=True
    )
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def examples(rows: Sequence[Record], folder: Path, size: int) -> Iterator[tuple[np.ndarray, int]]:
    """(image resized to `size`, label) for each row, read one at a time."""
    for r in rows:
        yield resize(read_image(folder / r.file), size), r.label
