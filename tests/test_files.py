"""The pipeline's own files: lossless deterministic images (images.py), clear errors, atomic
outputs (files.py)."""

from pathlib import Path

import numpy as np
import pytest

from blastcell import images
from blastcell.files import DataError, atomic_dir, atomic_file


def _write(folder: Path, name: str, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    image = np.random.default_rng(seed).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    images.write(folder / name, image)
    return folder / name


def test_write_is_byte_identical_and_lossless(tmp_path):
    a = _write(tmp_path / "a", "Im001_1.tif", 5)
    b = _write(tmp_path / "b", "Im001_1.tif", 5)
    assert a.read_bytes() == b.read_bytes()
    expected = np.random.default_rng(5).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    np.testing.assert_array_equal(images.read(a), expected)


def test_corrupt_and_non_rgb_images_are_named(tmp_path):
    (tmp_path / "Im001_1.tif").write_bytes(b"this is not a tiff")
    with pytest.raises(DataError, match=r"Im001_1.tif: cannot read image"):
        images.read(tmp_path / "Im001_1.tif")
    images.write(tmp_path / "Im002_1.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(DataError, match=r"Im002_1.png: expected 8-bit RGB"):
        images.read(tmp_path / "Im002_1.png")


def test_resize_keeps_uint8_and_shape():
    image = np.random.default_rng(0).integers(0, 256, (57, 57, 3), dtype=np.uint8)
    out = images.resize(image, 32)
    assert out.shape == (32, 32, 3)
    assert out.dtype == np.uint8
    assert images.resize(image, 57) is image


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


def test_a_killed_runs_temporaries_are_removed_by_the_next_run(tmp_path):
    # What `kill -9` during augment or a JSON write leaves: mkdtemp/mkstemp names beside it.
    (tmp_path / ".augmented.k3_9x0ab").mkdir()
    (tmp_path / ".augmented.k3_9x0ab" / "Im001_1.tif").write_bytes(b"partial")
    (tmp_path / ".train.a1b2c3d4.json").write_text("{")
    keep = [tmp_path / ".augmented.keep", tmp_path / "augmented.k3_9x0ab", tmp_path / "notes.json"]
    keep[0].mkdir()  # not a temporary's name: another tool's file, left alone
    keep[1].mkdir()
    keep[2].write_text("{}")

    with atomic_dir(tmp_path / "augmented") as tmp:
        (tmp / "done.txt").write_text("ok")
    with atomic_file(tmp_path / "train.json") as tmp:
        tmp.write_text("{}")

    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["augmented", "train.json", *(p.name for p in keep)]
    )
