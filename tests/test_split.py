"""The prepare stage's split: by source cell (no leakage) or the seed's leaky random split."""

from collections import Counter

import numpy as np
import pytest

from blastcell import split
from blastcell.data import DataError

CLASSES = ("not_blast", "blast")


def _records(n_per_class: int, copies: int) -> list[split.Record]:
    rows = []
    for label in (0, 1):
        for i in range(n_per_class):
            src = f"Im{label * n_per_class + i:03d}_{label}.tif"
            rows += [split.Record(f"{src}_{k}.png", src, label, k) for k in range(copies + 1)]
    return rows


def test_source_split_keeps_every_copy_of_a_cell_on_one_side():
    records = _records(40, 4)
    parts = split.split_by_source(records, CLASSES, 0.2, 0.15, np.random.default_rng(0))
    sides = {name: {r.source for r in rows} for name, rows in parts.items()}
    assert not sides["train"] & sides["val"]
    assert not sides["train"] & sides["test"]
    assert not sides["val"] & sides["test"]
    assert all(r.copy == 0 for r in parts["test"])
    assert set(Counter(r.source for r in parts["train"]).values()) == {5}
    # stratified: 20 % of each class's 40 sources in test, 15 % in val
    assert Counter(r.label for r in parts["test"]) == {0: 8, 1: 8}
    assert Counter(r.label for r in parts["val"] if r.copy == 0) == {0: 6, 1: 6}
    assert sum(len(v) for v in sides.values()) == 80


def test_source_split_is_deterministic_and_seed_dependent():
    records = _records(20, 2)
    a = split.split_by_source(records, CLASSES, 0.2, 0.2, np.random.default_rng(1))
    b = split.split_by_source(records, CLASSES, 0.2, 0.2, np.random.default_rng(1))
    c = split.split_by_source(records, CLASSES, 0.2, 0.2, np.random.default_rng(2))
    assert a == b
    assert a != c


def test_too_few_sources_says_how_many_are_needed():
    with pytest.raises(DataError, match=r"class 'not_blast' has 2 source images.*at least 4 "):
        split.split_by_source(_records(2, 1), CLASSES, 0.2, 0.15, np.random.default_rng(0))


def test_random_split_is_the_seeds_leaky_protocol():
    records = _records(130, 4)  # 1300 images, the seed had 1268
    parts = split.split_random(records, np.random.default_rng(0))
    assert len(parts["train"]) == round(1300 * 1020 / 1268)
    assert parts["test"] == parts["val"]
    leaked = {r.source for r in parts["train"]} & {r.source for r in parts["test"]}
    assert len(leaked) > 100  # copies of the same cell on both sides: the flaw it measures


def test_resize_keeps_uint8_and_shape():
    image = np.random.default_rng(0).integers(0, 256, (57, 57, 3), dtype=np.uint8)
    out = split.resize(image, 32)
    assert out.shape == (32, 32, 3)
    assert out.dtype == np.uint8
    assert split.resize(image, 57) is image
