"""Reading users' data sets: both layouts, every common format, and bad input named or skipped."""

import os
import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageFile

from blastcell import ingest, params
from blastcell.files import DataError

ROOT = Path(__file__).resolve().parents[1]
DATA = params.load(ROOT / "params.yaml").data


def _pixels(seed: int, size: int = 24) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _save(path: Path, seed: int = 0, mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_pixels(seed)).convert(mode).save(path)
    return path


def _read(folder: Path, on_bad_image: str = "error", **data):
    """List and load a data folder with params.yaml's data section, changed by `data`."""
    listing = ingest.list_dataset(folder)
    report = ingest.Report(listing.classes)
    settings = DATA.model_copy(update={"on_bad_image": on_bad_image, **data})
    return listing, report, list(ingest.load(listing, report, settings))


def test_all_idb_flat_layout_ignores_hidden_and_system_files(tmp_path):
    _save(tmp_path / "Im002_0.tif", 2)
    _save(tmp_path / "Im001_1.tif", 1)
    (tmp_path / ".DS_Store").write_bytes(b"\0\1")
    (tmp_path / "._Im001_1.tif").write_bytes(b"AppleDouble")
    (tmp_path / "Thumbs.db").write_bytes(b"\0")
    (tmp_path / ".git").mkdir()
    listing, report, loaded = _read(tmp_path)
    assert listing.layout == "all_idb"
    assert listing.classes == ("not_blast", "blast")
    assert [(img.key, img.item.label) for img in loaded] == [
        ("Im001_1.tif", 1),
        ("Im002_0.tif", 0),
    ]
    assert report.metrics() == {
        "images": 2,
        "per_class": {"not_blast": 1, "blast": 1},
        "skipped": 0,
        "duplicates": 0,
        "converted": 0,
    }


def test_find_images_leaves_out_hidden_files_and_other_suffixes_unless_asked(tmp_path):
    _save(tmp_path / "b.png")
    _save(tmp_path / "a" / "z.JPG")
    _save(tmp_path / "a" / "y.tif")
    (tmp_path / "a" / "notes.txt").write_text("stain batch 4")
    _save(tmp_path / ".hidden.png")
    _save(tmp_path / ".cache" / "c.png")
    (tmp_path / "Thumbs.db").write_bytes(b"\0")
    images = [tmp_path / "a" / "y.tif", tmp_path / "a" / "z.JPG", tmp_path / "b.png"]
    assert ingest.find_images(tmp_path) == images
    with_notes = [tmp_path / "a" / "notes.txt", *images]
    assert ingest.find_images(tmp_path, include_non_images=True) == with_notes
    assert ingest.find_images(tmp_path / ".cache") == [tmp_path / ".cache" / "c.png"]
    with pytest.raises(DataError, match=r"nowhere: cannot list folder"):
        ingest.find_images(tmp_path / "nowhere")


def test_class_folder_layout_with_any_names_and_nested_folders(tmp_path):
    for i, name in enumerate(["Pro", "Benign", "Early", "Pre"]):
        _save(tmp_path / name / f"{i}a.jpg", i)
        _save(tmp_path / name / "patient7" / f"{i}b.jpg", 10 + i)
    listing, report, loaded = _read(tmp_path)
    assert listing.layout == "class_folders"
    assert listing.classes == ("Benign", "Early", "Pre", "Pro")
    assert loaded[1].key == "Benign/patient7/1b.jpg"
    assert report.metrics()["per_class"] == {"Benign": 2, "Early": 2, "Pre": 2, "Pro": 2}


def test_layout_errors_name_the_folder_or_file(tmp_path):
    with pytest.raises(DataError, match=r"nowhere does not exist"):
        ingest.list_dataset(tmp_path / "nowhere")
    with pytest.raises(DataError, match=rf"{tmp_path} holds no images"):
        ingest.list_dataset(tmp_path)
    _save(tmp_path / "blast" / "a.png")
    with pytest.raises(DataError, match=r"holds only class 'blast'"):
        ingest.list_dataset(tmp_path)
    (tmp_path / "normal").mkdir()
    with pytest.raises(DataError, match=r"class folder .*normal holds no images"):
        ingest.list_dataset(tmp_path)
    _save(tmp_path / "normal" / "b.png")
    _save(tmp_path / "stray.png")
    with pytest.raises(DataError, match=r"stray.png: a file beside class folders"):
        ingest.list_dataset(tmp_path)


def test_flat_folder_with_one_class_or_bad_names(tmp_path):
    _save(tmp_path / "Im001_1.tif")
    _save(tmp_path / "Im002_1.tif")
    with pytest.raises(DataError, match=r"holds only class 'blast'"):
        ingest.list_dataset(tmp_path)
    _save(tmp_path / "cell_7.tif")
    with pytest.raises(DataError, match=r"cell_7.tif: not an ALL-IDB2 image name"):
        ingest.list_dataset(tmp_path)


@pytest.mark.parametrize(
    ("name", "mode", "note"),
    [
        ("a.tif", "RGB", ""),
        ("a.png", "RGB", ""),
        ("a.bmp", "RGB", ""),
        ("a.png", "L", "grayscale to RGB"),
        ("a.jpg", "L", "grayscale to RGB"),
        ("a.png", "RGBA", "alpha composited over white"),
        ("a.png", "P", "palette to RGB"),
        ("a.png", "I;16", "16-bit to 8-bit; grayscale to RGB"),
    ],
)
def test_formats_and_modes_become_8_bit_rgb_with_a_note(tmp_path, name, mode, note):
    path = _save(tmp_path / name, 3, mode)
    pixels, got = ingest.decode(path)
    assert pixels.dtype == np.uint8
    assert pixels.shape == (24, 24, 3)
    assert got == note


def test_16_bit_rgb_tiff_and_alpha_values(tmp_path):
    wide = np.full((16, 16, 3), 65535, np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", wide)
    pixels, note = ingest.decode(tmp_path / "a.tif")
    assert note == "16-bit to 8-bit"
    assert pixels.max() == 255
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 3] = 0  # fully transparent black is white background
    assert ingest.to_rgb8(rgba)[0].tolist() == np.full((2, 2, 3), 255).tolist()


def _bad_files(folder: Path) -> dict[str, bytes]:
    good = (folder / "ok.jpg").read_bytes()
    tiff = (folder / "ok.tif").read_bytes()
    return {
        "empty.png": b"",
        "truncated.jpg": good[: len(good) // 3],
        "truncated.tif": tiff[:300],
        "text.tif": b"this is a text file, not a TIFF\n",
    }


@pytest.mark.parametrize("bad", ["empty.png", "truncated.jpg", "truncated.tif", "text.tif"])
def test_bad_files_are_named_or_skipped_and_reported(tmp_path, bad):
    cls = tmp_path / "blast"
    _save(cls / "ok.jpg", 1)
    _save(cls / "ok.tif", 2)
    _save(tmp_path / "normal" / "n.png", 3)
    (cls / bad).write_bytes(_bad_files(cls)[bad])
    with pytest.raises(ingest.BadImage, match=rf"{bad}: "):
        _read(tmp_path)
    _, report, loaded = _read(tmp_path, on_bad_image="skip")
    assert [img.key for img in loaded] == ["blast/ok.jpg", "blast/ok.tif", "normal/n.png"]
    assert report.metrics()["skipped"] == 1
    (row,) = [r for r in report.manifest() if r[2] == "skipped"]
    assert row[:3] == [f"blast/{bad}", "blast", "skipped"]


def test_a_non_image_file_is_not_silently_ignored(tmp_path):
    _save(tmp_path / "blast" / "a.png", 1)
    _save(tmp_path / "normal" / "b.png", 2)
    (tmp_path / "normal" / "notes.txt").write_text("stain batch 4")
    with pytest.raises(ingest.BadImage, match=r"notes.txt: not an image file"):
        _read(tmp_path)


def test_a_class_left_without_readable_images_is_an_error(tmp_path):
    _save(tmp_path / "blast" / "a.png", 1)
    (tmp_path / "normal").mkdir()
    (tmp_path / "normal" / "b.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"class 'normal' .* has no readable image left"):
        _read(tmp_path, on_bad_image="skip")


def test_duplicates_are_reported_and_grouped_and_cross_class_copies_refused(tmp_path):
    _save(tmp_path / "blast" / "a.png", 1)
    _save(tmp_path / "blast" / "copy_of_a.png", 1)
    _save(tmp_path / "normal" / "b.png", 2)
    _, report, loaded = _read(tmp_path)
    assert report.metrics()["duplicates"] == 1
    sources = {img.key: img.source for img in loaded}
    assert sources["blast/copy_of_a.png"] == "blast/a.png" == sources["blast/a.png"]
    _save(tmp_path / "normal" / "also_a.png", 1)
    with pytest.raises(DataError, match=r"also_a.png and .*a.png hold the same pixels"):
        _read(tmp_path)


def test_oversized_images_are_refused_before_decoding(tmp_path, monkeypatch):
    _save(tmp_path / "Im001_1.png", 1)
    _save(tmp_path / "Im002_0.png", 2)

    def never(image):
        raise AssertionError(f"decoded {image}")

    monkeypatch.setattr(ImageFile.ImageFile, "load", never)  # a decode would name "decoded"
    with pytest.raises(ingest.BadImage, match=r"24x24 pixels is over data.max_image_pixels=500"):
        _read(tmp_path, max_image_pixels=500)


def test_links_leaving_the_folder_are_refused(tmp_path):
    data, outside = tmp_path / "data", _save(tmp_path / "secret.png", 9)
    _save(data / "blast" / "a.png", 1)
    _save(data / "normal" / "b.png", 2)
    (data / "blast" / "inside.png").symlink_to(data / "normal" / "b.png")
    with pytest.raises(DataError, match=r"same pixels under two classes"):
        _read(data)  # a link inside the folder is followed like a file
    (data / "blast" / "inside.png").unlink()
    (data / "blast" / "outside.png").symlink_to(outside)
    with pytest.raises(ingest.BadImage, match=r"outside.png: a link to .*outside the data folder"):
        _read(data)


def test_params_yaml_defaults_are_ingests_constants():
    # blastcell predict's --max-image-pixels and --min-image-side default to these
    assert DATA.max_image_pixels == ingest.MAX_IMAGE_PIXELS == 40_000_000
    assert DATA.min_image_side == ingest.MIN_IMAGE_SIDE == 16
    assert DATA.square == ingest.SQUARE == "stretch"


def test_symlink_loops_are_named_or_skipped(tmp_path):
    _save(tmp_path / "blast" / "a.png", 1)
    _save(tmp_path / "normal" / "b.png", 2)
    loop = tmp_path / "normal" / "loop.png"
    loop.symlink_to(loop)
    with pytest.raises(ingest.BadImage, match=r"loop.png: cannot resolve link: "):
        _read(tmp_path)
    _, report, loaded = _read(tmp_path, on_bad_image="skip")
    assert [img.key for img in loaded] == ["blast/a.png", "normal/b.png"]
    (row,) = [r for r in report.manifest() if r[2] == "skipped"]
    assert row[0] == "normal/loop.png"
    assert row[-1].startswith("cannot resolve link: ")


def test_degenerate_images_are_skipped_and_squaring_is_in_the_manifest(tmp_path):
    _save(tmp_path / "blast" / "a.png", 1)
    Image.new("RGB", (1, 1)).save(tmp_path / "blast" / "dot.png")
    Image.new("RGB", (10000, 10)).save(tmp_path / "blast" / "strip.png")
    (tmp_path / "normal").mkdir()
    Image.fromarray(_pixels(2)[:, :16]).save(tmp_path / "normal" / "narrow.png")
    with pytest.raises(ingest.BadImage, match=r"dot.png: 1x1 pixels has a side under data.min"):
        _read(tmp_path)
    _, report, loaded = _read(tmp_path, on_bad_image="skip", square="center_crop")
    assert [img.pixels.shape for img in loaded] == [(24, 24, 3), (16, 16, 3)]
    rows = {row[0]: row for row in report.manifest()}
    assert rows["blast/dot.png"][2] == "skipped"
    assert rows["blast/strip.png"][-1] == (
        "10000x10 pixels has a side under data.min_image_side=16; refused before decoding"
    )
    assert rows["normal/narrow.png"][3:5] == [16, 16]
    assert rows["normal/narrow.png"][-1] == "cropped 16x24 to the centre 16x16"
    assert report.metrics()["converted"] == 1
    _, report, loaded = _read(tmp_path, on_bad_image="skip", min_image_side=1)
    assert {img.key: img.pixels.shape for img in loaded}["blast/strip.png"] == (10, 10000, 3)
    rows = {row[0]: row for row in report.manifest()}
    assert rows["blast/strip.png"][-1] == "aspect ratio 10000:10, stretched to a square by prepare"
    assert rows["normal/narrow.png"][-1] == ""  # stretch, 24:16 is no extreme


def test_a_relative_data_folder_with_a_link_inside_it(tmp_path, monkeypatch):
    _save(tmp_path / "data" / "blast" / "a.png", 1)
    _save(tmp_path / "data" / "normal" / "b.png", 2)
    (tmp_path / "data" / "normal" / "c.png").symlink_to(Path("..", "normal", "b.png"))
    monkeypatch.chdir(tmp_path)
    _, report, loaded = _read(Path("data"))
    assert [img.key for img in loaded] == ["blast/a.png", "normal/b.png", "normal/c.png"]
    assert report.metrics()["duplicates"] == 1


def _within(seconds: float, function):
    """function()'s result, or its exception, from a thread; a failure if it is still running
    after `seconds` (blocked opening a FIFO, or reading a device that never ends)."""
    outcome = {}

    def run() -> None:
        try:
            outcome["result"] = function()
        except Exception as err:  # handed to the test's thread
            outcome["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s: it opened a FIFO or device"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


@pytest.mark.skipif(not (hasattr(os, "mkfifo") and Path("/dev/zero").exists()), reason="POSIX")
def test_fifos_and_links_to_devices_are_refused_unopened(tmp_path):
    _save(tmp_path / "blast" / "a.png", 1)
    _save(tmp_path / "normal" / "b.png", 2)
    fifo = tmp_path / "normal" / "pipe.png"
    os.mkfifo(fifo)  # opening it would wait for a writer
    with pytest.raises(
        ingest.BadImage, match=r"pipe.png: not a regular file but a FIFO \(named pipe\); only"
    ):
        _within(10, lambda: _read(tmp_path))
    _, report, loaded = _within(10, lambda: _read(tmp_path, on_bad_image="skip"))
    assert [img.key for img in loaded] == ["blast/a.png", "normal/b.png"]
    (row,) = [r for r in report.manifest() if r[2] == "skipped"]
    assert row[0] == "normal/pipe.png"
    assert row[-1] == "not a regular file but a FIFO (named pipe); only image files are read"

    (tmp_path / "blast" / "linked.png").symlink_to(fifo)  # inside the folder: still refused
    with pytest.raises(ingest.BadImage, match=rf"linked.png: a link to {fifo}, not a regular"):
        _within(10, lambda: _read(tmp_path))
    (tmp_path / "blast" / "linked.png").unlink()
    fifo.unlink()
    (tmp_path / "normal" / "zero.png").symlink_to("/dev/zero")  # reading it never ends
    with pytest.raises(
        ingest.BadImage,
        match=r"zero.png: a link to /dev/zero, not a regular file but a character device",
    ):
        _within(10, lambda: _read(tmp_path))
    with pytest.raises(ingest.BadImage, match=r"zero.png: a link to /dev/zero, not a regular"):
        _within(10, lambda: ingest.decode(tmp_path / "normal" / "zero.png"))
