"""Listing and reading input data: ALL-IDB2 names, clear errors, atomic outputs."""

from pathlib import Path

import numpy as np
import pytest

from blastcell.data import DataError, atomic_dir, list_all_idb, read_image, write_image


def _write(folder: Path, name: str, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    image = np.random.default_rng(seed).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    write_image(folder / name, image)
    return folder / name


def test_lists_all_idb_names_with_labels_and_ignores_hidden_files(tmp_path):
    for i, name in enumerate(["Im002_0.tif", "Im001_1.tif", "Im003_0.TIF"]):
        _write(tmp_path, name, i)
    (tmp_path / ".DS_Store").write_bytes(b"\0")
    listing = list_all_idb(tmp_path)
    assert listing.classes == ("not_blast", "blast")
    assert [(i.path.name, i.label) for i in listing.items] == [
        ("Im001_1.tif", 1),
        ("Im002_0.tif", 0),
        ("Im003_0.TIF", 0),
    ]


def test_missing_empty_and_one_class_folders_are_named(tmp_path):
    with pytest.raises(DataError, match=r"nowhere does not exist"):
        list_all_idb(tmp_path / "nowhere")
    with pytest.raises(DataError, match=rf"{tmp_path} holds no images"):
        list_all_idb(tmp_path)
    _write(tmp_path, "Im001_1.tif")
    _write(tmp_path, "Im002_1.tif")
    with pytest.raises(DataError, match=r"holds only class 'blast'"):
        list_all_idb(tmp_path)


@pytest.mark.parametrize("name", ["cell_1.tif", "Im001_2.tif", "Im001.tif", "Im001_1.txt"])
def test_names_that_do_not_parse_are_named(tmp_path, name):
    _write(tmp_path, "Im001_1.tif")
    _write(tmp_path, "Im002_0.tif")
    (tmp_path / name).write_bytes(b"x")
    with pytest.raises(DataError, match=rf"{name}: not an ALL-IDB2 image name"):
        list_all_idb(tmp_path)


def test_write_is_byte_identical_and_lossless(tmp_path):
    a = _write(tmp_path / "a", "Im001_1.tif", 5)
    b = _write(tmp_path / "b", "Im001_1.tif", 5)
    assert a.read_bytes() == b.read_bytes()
    expected = np.random.default_rng(5).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    np.testing.assert_array_equal(read_image(a), expected)


def test_corrupt_and_non_rgb_images_are_named(tmp_path):
    (tmp_path / "Im001_1.tif").write_bytes(b"this is not a tiff")
    with pytest.raises(DataError, match=r"Im001_1.tif: cannot read image"):
        read_image(tmp_path / "Im001_1.tif")
    write_image(tmp_path / "Im002_1.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(DataError, match=r"Im002_1.png: expected 8-bit RGB"):
        read_image(tmp_path / "Im002_1.png")


def test_atomic_dir_leaves_nothing_when_the_block_fails(tmp_path):
    target = tmp_path / "out"

    def failing_stage() -> None:
        with atomic_dir(target) as tmp:
            (tmp / "half.txt").write_text("half-written")
            raise RuntimeError("stage failed")

    with pytest.raises(RuntimeError):
        failing_stage()
    assert list(tmp_path.iterdir()) == []
    with atomic_dir(target) as tmp:
        (tmp / "done.txt").write_text("ok")
    assert [p.name for p in target.iterdir()] == ["done.txt"]
