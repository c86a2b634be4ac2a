"""The pipeline's own files: lossless deterministic images (images.py), clear errors, atomic
outputs (files.py)."""

import json
from pathlib import Path

import numpy as np
import pytest

from blastcell import images
from blastcell.files import (
    DataError,
    atomic_dir,
    atomic_file,
    atomic_json_files,
    is_temporary,
    remove_temporaries,
    scratch_dir,
    scratch_file,
)


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
    # What `kill -9` during augment, a JSON write, the cv stage or a model save leaves.
    (tmp_path / ".augmented.blastcell-tmp-k3_9x0ab").mkdir()
    (tmp_path / ".augmented.blastcell-tmp-k3_9x0ab" / "Im001_1.tif").write_bytes(b"partial")
    (tmp_path / ".train.blastcell-tmp-a1b2c3d4.json").write_text("{")
    (tmp_path / ".cv-work.blastcell-tmp-a1b2c3d4").mkdir()
    (tmp_path / ".model.unstamped.blastcell-tmp-a1b2c3d4.keras").write_text("PK")
    keep = [
        tmp_path / ".augmented.blastcell-tmp-keep",  # not a temporary's name: left alone
        tmp_path / ".augmented.k3_9x0ab",  # another tool's
        tmp_path / ".model.blastcell-tmp-a1b2c3d4.keras",  # another output's: its own run's
        tmp_path / "notes.json",
    ]
    for path in keep:
        path.write_text("{}")

    with atomic_dir(tmp_path / "augmented") as tmp:
        (tmp / "done.txt").write_text("ok")
    with atomic_file(tmp_path / "train.json") as tmp:
        tmp.write_text("{}")
    with scratch_dir(tmp_path, "cv-work"), scratch_file(tmp_path, "model.unstamped.keras"):
        pass

    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["augmented", "train.json", *(p.name for p in keep)]
    )


def test_every_temporary_is_named_by_one_pattern_and_keeps_its_suffix(tmp_path):
    with (
        atomic_dir(tmp_path / "augmented") as folder,
        atomic_file(tmp_path / "loss.json") as file,
        scratch_dir(tmp_path, "cv-work") as scratch,
        scratch_file(tmp_path, "model.unstamped.keras") as raw,
    ):
        made = [folder, file, scratch, raw]
        assert [p.name.split(".blastcell-tmp-")[0] for p in made] == [
            ".augmented",
            ".loss",
            ".cv-work",
            ".model.unstamped",
        ]
        assert all(is_temporary(p.name) for p in made)
        assert (file.suffix, raw.suffix) == (".json", ".keras")  # what Keras goes by
        assert sorted(tmp_path.iterdir()) == sorted(made)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["augmented", "loss.json"]  # no scratch
    for name in (".blastcell-synthetic", ".gitignore", "data.dvc", ".loss.a1b2c3d4.json"):
        assert not is_temporary(name)


def test_remove_temporaries_removes_them_in_subfolders_and_nothing_else(tmp_path):
    data, plots, outside = tmp_path / "data", tmp_path / "plots" / "train", tmp_path / "outside"
    for folder in (data, plots, outside):
        folder.mkdir(parents=True)
    left = [
        data / ".augmented.blastcell-tmp-k3_9x0ab",
        plots / ".loss.blastcell-tmp-a1b2c3d4.json",
    ]
    left[0].mkdir()
    (left[0] / ".nested.blastcell-tmp-a1b2c3d4").write_text("inside: goes with it")
    left[1].write_text("[")
    kept = [
        data / ".gitignore",
        data / "augmented.dvc",
        data / ".hidden",
        plots / "loss.json",
        outside / ".loss.blastcell-tmp-a1b2c3d4.json",  # not in the folders swept
    ]
    for path in kept:
        path.write_text("kept\n")
    (data / "linked").symlink_to(outside)  # not followed

    assert remove_temporaries([tmp_path / "data", tmp_path / "plots", tmp_path / "none"]) == left
    assert not any(p.exists() for p in left)
    assert all(p.read_text() == "kept\n" for p in kept)
    assert remove_temporaries([tmp_path / "data", tmp_path / "plots"]) == []


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_atomic_json_files_replace_the_files_only_when_the_block_succeeds(tmp_path, error):
    loss, accuracy = tmp_path / "loss.json", tmp_path / "accuracy.json"
    loss.write_text("[]\n")  # the previous run's

    def interrupted_training() -> None:
        with atomic_json_files() as write:
            for epoch in range(1, 4):
                write(loss, list(range(epoch)))
                write(accuracy, list(range(epoch)))
            raise error("interrupted")

    with pytest.raises(error):
        interrupted_training()
    assert [p.name for p in tmp_path.iterdir()] == ["loss.json"]
    assert loss.read_text() == "[]\n"

    with atomic_json_files() as write:
        for epoch in range(1, 4):
            write(loss, list(range(epoch)))
    assert [p.name for p in tmp_path.iterdir()] == ["loss.json"]
    assert json.loads(loss.read_text()) == [0, 1, 2]
    assert loss.read_text() == json.dumps([0, 1, 2], indent=2) + "\n"  # as write_json writes
