"""The prepare stage's split: by source cell (no leakage) or the seed's leaky random split."""

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from blastcell import DEFAULT_CLASSES, augmented, images, params, prepare, prepared
from blastcell.augmented import Record
from blastcell.files import DataError

ROOT = Path(__file__).resolve().parents[1]


def _records(n_per_class: int, copies: int) -> list[Record]:
    rows = []
    for label in (0, 1):
        for i in range(n_per_class):
            src = f"Im{label * n_per_class + i:03d}_{label}.tif"
            rows += [Record(f"{src}_{k}.png", src, src, label, k) for k in range(copies + 1)]
    return rows


def test_source_split_keeps_every_copy_of_a_cell_on_one_side():
    records = _records(40, 4)
    parts = prepare.split_by_group(records, DEFAULT_CLASSES, 0.2, 0.15, np.random.default_rng(0))
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
    a = prepare.split_by_group(records, DEFAULT_CLASSES, 0.2, 0.2, np.random.default_rng(1))
    b = prepare.split_by_group(records, DEFAULT_CLASSES, 0.2, 0.2, np.random.default_rng(1))
    c = prepare.split_by_group(records, DEFAULT_CLASSES, 0.2, 0.2, np.random.default_rng(2))
    assert a == b
    assert a != c


def test_too_few_sources_says_how_many_are_needed():
    with pytest.raises(DataError, match=r"class 'not_blast' has 2 source images.*at least 4 "):
        prepare.split_by_group(
            _records(2, 1), DEFAULT_CLASSES, 0.2, 0.15, np.random.default_rng(0)
        )


def test_random_split_is_the_seeds_leaky_protocol():
    records = _records(130, 4)  # 1300 images, the seed had 1268
    parts = prepare.split_random(records, np.random.default_rng(0))
    assert len(parts["train"]) == round(1300 * 1020 / 1268)
    assert parts["test"] == parts["val"]
    leaked = {r.source for r in parts["train"]} & {r.source for r in parts["test"]}
    assert len(leaked) > 100  # copies of the same cell on both sides: the flaw it measures


def test_prepare_writes_the_prepared_folder_from_the_augmented_one(tmp_path):
    source, target = tmp_path / "augmented", tmp_path / "prepared"
    source.mkdir()
    records = _records(10, 1)
    rng = np.random.default_rng(0)
    for r in records:
        images.write(source / r.file, rng.integers(0, 256, (20, 20, 3), np.uint8))
    origin = augmented.Source("data", False, "0" * 64, 20, "stretch")
    augmented.write_index(source, DEFAULT_CLASSES, records, origin)
    settings = params.load(ROOT / "params.yaml", ["prepare.image_size=16"]).prepare
    counts, grouped = prepare.prepare(source, target, settings, seed=3)
    assert not grouped
    assert counts == {"train": 24, "val": 8, "test": 4}  # 6, 2, 2 sources a class; 1 copy
    spec = prepared.read_spec(target)
    assert (spec.image_size, spec.classes, spec.images) == (16, list(DEFAULT_CLASSES), counts)
    assert spec.source == origin  # carried on to the model
    test = prepared.read(target).table("test")
    assert [e.file for e in test] == [r.file for r in prepare.split(
        records, DEFAULT_CLASSES, settings, 3)["test"]]  # fmt: skip
    x, y = next(prepared.read(target).iterate("test", batch_size=10))
    assert x.shape == (4, 16, 16, 3)
    assert y.tolist() == [e.label for e in test]
    first = {p.name: p.read_bytes() for p in target.iterdir()}
    prepare.prepare(source, target, settings, seed=3)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == first  # byte-reproducible


def test_an_augmented_folder_without_its_index_is_named(tmp_path):
    with pytest.raises(DataError, match=r"index.csv is missing: .* is not an augmented folder"):
        augmented.read_index(tmp_path)


def _patients(n_patients: int, cells: int, copies: int = 1) -> list[Record]:
    """Patient p's cells are all of class p % 2, P000_c0.tif ...: several cells per group."""
    rows = []
    for p in range(n_patients):
        for c in range(cells):
            src = f"P{p:03d}_c{c}.tif"
            rows += [
                Record(f"{src}_{k}.png", src, f"P{p:03d}", p % 2, k) for k in range(copies + 1)
            ]
    return rows


def test_a_group_split_keeps_every_image_of_a_patient_on_one_side():
    records = _patients(20, cells=3)
    parts = prepare.split_by_group(records, DEFAULT_CLASSES, 0.2, 0.2, np.random.default_rng(0))
    sides = {name: {r.group for r in rows} for name, rows in parts.items()}
    assert not sides["train"] & sides["val"]
    assert not sides["train"] & sides["test"]
    assert not sides["val"] & sides["test"]
    assert [len(sides[name]) for name in ("train", "val", "test")] == [12, 4, 4]  # 6, 2, 2 a class
    assert len(parts["test"]) == 4 * 3  # every cell of the 4 test patients, originals only
    assert {r.label for r in parts["test"]} == {0, 1}


def test_a_patient_with_both_classes_counts_for_its_majority():
    records = _patients(12, cells=2)
    mixed = [Record(f"P000_x{k}.png", "P000_x.tif", "P000", 1, k) for k in range(2)]
    parts = prepare.split_by_group(
        [*records, *mixed], DEFAULT_CLASSES, 0.2, 0.2, np.random.default_rng(3)
    )
    side = next(name for name, rows in parts.items() if any(r.group == "P000" for r in rows))
    assert {r.source for r in parts[side] if r.group == "P000"} >= {"P000_c0.tif", "P000_x.tif"}


def test_too_few_groups_are_named():
    with pytest.raises(
        DataError, match=r"class 'not_blast' has 2 groups \(copies, data.group_by\).*at least"
    ):
        prepare.split_by_group(
            _patients(4, cells=4), DEFAULT_CLASSES, 0.2, 0.2, np.random.default_rng(0)
        )
