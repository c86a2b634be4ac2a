"""The prepare stage: split the augmented set into train / val / test, resized for the model.

The default `source` split assigns whole source cells to one side, stratified by class: every
augmented copy of a cell, and every exact duplicate of it, lands where its original does, and the
test set holds originals only.
The `random` split reproduces the seed's leaky protocol (augment everything, shuffle, cut at
1020:248) so that its inflation can be measured; there the validation set is the test set, as in
the seed, which reported on it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from blastcell import augmented, images, prepared, progress
from blastcell.augmented import Record
from blastcell.files import DataError, atomic_dir
from blastcell.params import PrepareParams

SEED_TRAIN_SHARE = 1020 / 1268  # the seed's cut of its 1268 augmented images


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
    splits: dict[str, list[Record]] = {name: [] for name in prepared.SPLITS}
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


def split(
    records: Sequence[Record], classes: Sequence[str], params: PrepareParams, seed: int
) -> dict[str, list[Record]]:
    """The `params.split` split of the records, drawn with `seed`."""
    rng = np.random.default_rng(seed)
    if params.split == "source":
        return split_by_source(records, classes, params.test_fraction, params.val_fraction, rng)
    return split_random(records, rng)


def prepare(source: Path, target: Path, params: PrepareParams, seed: int) -> dict[str, int]:
    """Split the augmented folder `source` and write the prepared folder `target`, one image at
    a time; returns the images per split."""
    classes, records = augmented.read_index(source)
    splits = split(records, classes, params, seed)
    total = sum(len(rows) for rows in {tuple(rows) for rows in splits.values()})  # to encode
    with atomic_dir(target) as tmp, progress.bar(total, "prepare") as bar:

        def pixels(row: Record) -> np.ndarray:
            bar.update(1)
            return images.resize(images.read(source / row.file), params.image_size)

        prepared.write(tmp, splits, classes, params.image_size, params.shard_size, pixels)
    return {name: len(rows) for name, rows in splits.items()}
