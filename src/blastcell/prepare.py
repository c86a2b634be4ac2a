"""The prepare stage: split the augmented set into train / val / test, resized for the model.

The default `source` split assigns whole groups to one side, stratified by class: a group is a
source cell, or with `data.group_by` every cell of one patient, slide or sample; every augmented
copy of a cell, and every exact duplicate of it, lands where its original does, and the test set
holds originals only, each cell once (an exact duplicate is not scored again).
The `random` split reproduces the seed's leaky protocol (augment everything, shuffle, cut at
1020:248) so that its inflation can be measured; there the validation set is the test set, as in
the seed, which reported on it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
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


def split_by_group(
    records: Sequence[Record],
    classes: Sequence[str],
    test_fraction: float,
    val_fraction: float,
    rng: np.random.Generator,
) -> dict[str, list[Record]]:
    """Stratified split by group; the test set keeps only the originals, each cell once (one
    file of each set of exact duplicates).

    A group is one source cell (and its exact duplicates), or with `data.group_by` all the
    images of one patient, slide or sample: every image of a group, copies included, lands on
    one side. Groups are stratified by class, a group counting for the class most of its source
    images have (the lowest label on a tie), so that each side gets each class's share of groups.
    """
    sources: dict[str, Counter[int]] = defaultdict(Counter)
    for r in records:
        if r.copy == 0:
            sources[r.group][r.label] += 1
    groups_by_class: dict[int, list[str]] = defaultdict(list)
    for group, labels in sources.items():
        top = max(labels.values())
        groups_by_class[min(k for k, n in labels.items() if n == top)].append(group)
    grouped = any(r.group != r.source for r in records)
    unit = "groups (copies, data.group_by)" if grouped else "source images"
    side: dict[str, str] = {}
    for label in sorted(groups_by_class):
        groups = sorted(groups_by_class[label])
        n = len(groups)
        fr = (test_fraction, val_fraction)
        n_test, n_val = _counts(n, *fr)
        if min(n_test, n_val, n - n_test - n_val) < 1:
            need = next(
                k for k in range(3, 10**6) if min(*_counts(k, *fr), k - sum(_counts(k, *fr))) >= 1
            )
            raise DataError(
                f"class '{classes[label]}' has {n} {unit}; prepare.test_fraction="
                f"{test_fraction} and prepare.val_fraction={val_fraction} need at least {need} "
                "so that train, val and test each get one"
            )
        order = rng.permutation(n)
        for rank, i in enumerate(order):
            side[groups[i]] = (
                "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
            )
    splits: dict[str, list[Record]] = {name: [] for name in prepared.SPLITS}
    tested: set[str] = set()
    for r in records:
        if side[r.group] != "test":
            splits[side[r.group]].append(r)
        elif r.copy == 0 and r.source not in tested:  # an exact duplicate is the same cell
            tested.add(r.source)
            splits["test"].append(r)
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
        return split_by_group(records, classes, params.test_fraction, params.val_fraction, rng)
    return split_random(records, rng)


def prepare(
    source: Path, target: Path, params: PrepareParams, seed: int
) -> tuple[dict[str, int], bool]:
    """Split the augmented folder `source` and write the prepared folder `target`, one image at
    a time; returns the images per split, and whether images were grouped (`data.group_by`)."""
    classes, records, origin = augmented.read_index(source)
    splits = split(records, classes, params, seed)
    total = sum(len(rows) for rows in {tuple(rows) for rows in splits.values()})  # to encode
    with atomic_dir(target) as tmp, progress.bar(total, "prepare") as bar:

        def pixels(row: Record) -> np.ndarray:
            bar.update(1)
            return images.resize(images.read(source / row.file), params.image_size)

        prepared.write(tmp, splits, classes, params.image_size, params.shard_size, pixels, origin)
    grouped = any(r.group != r.source for r in records)
    return {name: len(rows) for name, rows in splits.items()}, grouped
