"""Tests for blastcell.augment: the augment stage's reading, augmenting and writing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from matplotlib import pyplot

from blastcell import augment, augmented, images
from blastcell.files import DataError
from blastcell.params import AugmentParams, DataParams
from blastcell.transform import augment_image, source_rng

ROOT = Path(__file__).resolve().parents[1]
SEED = 7


def data_params(on_bad_image: str = "error", group_by: str | None = None) -> DataParams:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())["data"]
    return DataParams(**{**raw, "on_bad_image": on_bad_image, "group_by": group_by})


def augment_params(**overrides: object) -> AugmentParams:
    """params.yaml's augment section, with these keys changed."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())["augment"]
    return AugmentParams(**{**raw, "copies": 2, "workers": 1, **overrides})


def random_image(rng: np.random.Generator, side: int = 24) -> np.ndarray:
    return rng.integers(0, 256, (side, side, 3), np.uint8)


@pytest.fixture
def all_idb(tmp_path) -> Path:
    """ALL-IDB2's flat layout: 4 blasts, 3 not blasts, Im007_0 a duplicate of Im006_0."""
    folder = tmp_path / "data"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(1, 7):
        images.write(folder / f"Im{i:03d}_{int(i <= 4)}.tif", random_image(rng))
    (folder / "Im007_0.tif").write_bytes((folder / "Im006_0.tif").read_bytes())
    return folder


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_writes_every_source_and_its_copies_with_the_index(tmp_path, all_idb):
    settings = augment_params()
    result = augment.augment(all_idb, tmp_path / "out", data_params(), settings, SEED)
    assert result.classes == ("not_blast", "blast")
    assert result.files == 7 * 3
    assert result.report.metrics()["duplicates"] == 1
    classes, records, source = augmented.read_index(tmp_path / "out")
    assert classes == ["not_blast", "blast"]
    expected = [
        augmented.Record(f"Im{i:03d}_{int(i <= 4)}_{k}.png", first, first, int(i <= 4), k)
        for i, first in [(i, f"Im{i:03d}_{int(i <= 4)}.tif") for i in range(1, 7)]
        + [(7, "Im006_0.tif")]  # a duplicate shares its first copy's source
        for k in range(3)
    ]
    assert records == expected
    assert (source.images, source.synthetic, source.square) == (7, False, "stretch")
    assert source.data_dir == str(all_idb)
    written = files(tmp_path / "out")
    indexes = ["classes.json", "index.csv", "source.json"]
    assert sorted(written) == sorted([r.file for r in records] + indexes)
    for i in (1, 5):  # the original as copy 0, then the copies from the source's own stream
        key = f"Im{i:03d}_{int(i <= 4)}.tif"
        original = images.read(all_idb / key)
        rng = source_rng(SEED, key)
        made = [original, *(augment_image(original, rng, settings) for _ in range(2))]
        assert augment.copies(original, key, settings, SEED)[1].tobytes() == made[2].tobytes()
        for k, pixels in enumerate(made):
            stem = augment.output_stem(key)
            assert images.read(tmp_path / "out" / f"{stem}_{k}.png").tobytes() == pixels.tobytes()


def test_output_is_byte_identical_for_any_number_of_workers(tmp_path, all_idb):
    outputs = {}
    for workers in (1, 2):
        target = tmp_path / f"out{workers}"
        settings = augment_params(workers=workers, vertical_flip=True, fill_mode="reflect")
        result = augment.augment(all_idb, target, data_params(), settings, SEED)
        outputs[workers] = (files(target), result.report.manifest(), result.files)
        previews = [
            (kept.key, kept.label, [a.tobytes() for a in kept.images]) for kept in result.kept
        ]
        outputs[workers] += (previews,)
    assert len(outputs[1][0]) == 7 * 3 + 3  # and index.csv, classes.json, source.json
    assert outputs[2] == outputs[1]


def test_preview_keeps_the_first_sources_of_each_class_in_input_order(tmp_path, all_idb):
    settings = augment_params(copies=3)
    result = augment.augment(all_idb, tmp_path / "out", data_params(), settings, SEED)
    assert [(kept.key, kept.label) for kept in result.kept] == [
        ("Im001_1.tif", 1),
        ("Im002_1.tif", 1),
        ("Im005_0.tif", 0),
        ("Im006_0.tif", 0),
    ]
    for kept in result.kept:
        stem = augment.output_stem(kept.key)
        assert len(kept.images) == 4
        for k, pixels in enumerate(kept.images):
            assert np.array_equal(images.read(tmp_path / "out" / f"{stem}_{k}.png"), pixels)
    fig = augment.preview(result)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 4 * 4
    assert [ax.get_title() for ax in fig.axes[:4]] == ["original", "copy 1", "copy 2", "copy 3"]
    assert fig.axes[8].get_ylabel() == "Im005_0.tif\nnot_blast"
    pyplot.close(fig)


def test_class_folders_give_stems_with_the_folder(tmp_path):
    data = tmp_path / "data"
    rng = np.random.default_rng(1)
    for path in ("blast/a.png", "blast/deeper/b.png", "normal/c.png"):
        (data / path).parent.mkdir(parents=True, exist_ok=True)
        images.write(data / path, random_image(rng))
    result = augment.augment(data, tmp_path / "out", data_params(), augment_params(), SEED)
    classes, records, _ = augmented.read_index(tmp_path / "out")
    assert classes == ["blast", "normal"]
    assert result.classes == ("blast", "normal")
    assert [(r.file, r.source, r.label) for r in records if r.copy == 0] == [
        ("blast__a_0.png", "blast/a.png", 0),
        ("blast__deeper__b_0.png", "blast/deeper/b.png", 0),
        ("normal__c_0.png", "normal/c.png", 1),
    ]


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize(("first", "second"), [("a.png", "a.tif"), ("x/y.png", "x__y.png")])
def test_outputs_sharing_a_name_are_an_error_naming_both_files(tmp_path, workers, first, second):
    data = tmp_path / "data"
    rng = np.random.default_rng(2)
    for path in (f"blast/{first}", f"blast/{second}", "normal/c.png"):
        (data / path).parent.mkdir(parents=True, exist_ok=True)
        images.write(data / path, random_image(rng))
    settings = augment_params(workers=workers)
    with pytest.raises(DataError, match="would share outputs") as error:
        augment.augment(data, tmp_path / "out", data_params(), settings, SEED)
    assert str(data / "blast" / first) in str(error.value)
    assert str(data / "blast" / second) in str(error.value)
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.glob(".out*")) == []  # no temporary folder left either


@pytest.mark.parametrize("workers", [1, 2])
def test_an_error_in_a_worker_names_the_file_and_leaves_no_output(tmp_path, workers):
    data = tmp_path / "data"
    (data / "blast").mkdir(parents=True)
    (data / "normal").mkdir()
    long = data / "blast" / ("a" * 251 + ".png")  # readable, but its outputs' names are too long
    rng = np.random.default_rng(3)
    images.write(long, random_image(rng))
    images.write(data / "blast" / "b.png", random_image(rng))
    images.write(data / "normal" / "c.png", random_image(rng))
    settings = augment_params(workers=workers)
    with pytest.raises(
        DataError, match=r"cannot augment or write its copies: .*too long"
    ) as error:
        augment.augment(data, tmp_path / "out", data_params(), settings, SEED)
    assert str(error.value).startswith(f"{long}: ")
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.glob(".out*")) == []


def test_a_skipped_file_is_reported_and_not_written(tmp_path, all_idb):
    (all_idb / "Im008_0.tif").write_bytes(b"not an image")
    result = augment.augment(
        all_idb, tmp_path / "out", data_params("skip"), augment_params(copies=0), SEED
    )
    assert result.report.metrics()["skipped"] == 1
    _, records, _ = augmented.read_index(tmp_path / "out")
    assert [r.file for r in records] == [f"Im{i:03d}_{int(i <= 4)}_0.png" for i in range(1, 8)]
    assert result.files == 7
    fig = augment.preview(result)
    assert [ax.get_title() for ax in fig.axes[:1]] == ["original"]
    pyplot.close(fig)


def test_group_by_names_each_images_patient_and_refuses_a_path_it_cannot_match(tmp_path):
    folder = tmp_path / "data"
    rng = np.random.default_rng(1)
    for name in ["blast/P01_a.png", "blast/P01_b.png", "normal/P02_a.png", "normal/x.png"]:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        images.write(folder / name, random_image(rng))
    pattern = r"/(P\d+)_"
    with pytest.raises(DataError, match=r"x\.png: data\.group_by '/\(P\\d\+\)_' finds no group"):
        augment.augment(
            folder, tmp_path / "out", data_params(group_by=pattern), augment_params(), 1
        )
    assert not (tmp_path / "out").exists()
    (folder / "normal/x.png").rename(folder / "normal/P03_x.png")
    augment.augment(folder, tmp_path / "out", data_params(group_by=pattern), augment_params(), 1)
    _, records, _ = augmented.read_index(tmp_path / "out")
    assert {r.source: r.group for r in records} == {
        "blast/P01_a.png": "P01",
        "blast/P01_b.png": "P01",
        "normal/P02_a.png": "P02",
        "normal/P03_x.png": "P03",
    }


def test_the_synthetic_marker_is_recorded(all_idb, tmp_path):
    from blastcell import SYNTHETIC_MARKER

    (all_idb / SYNTHETIC_MARKER).write_text("{}")  # hidden: not an image of the data set
    result = augment.augment(all_idb, tmp_path / "out", data_params(), augment_params(), SEED)
    assert result.report.metrics()["images"] == 7
    assert augmented.read_index(tmp_path / "out")[2].synthetic
