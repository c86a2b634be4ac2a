"""Decoding images as a person sees them: colour models, orientation, pages, size and shape,
each pinned against a reference computed independently of the decoder."""

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageFile, ImageOps

from blastcell import images, ingest

RED = (220, 30, 40)
RED_INK = (0, 220, 209, 35)  # C, M, Y, K that print RED: R = (255 - C)(255 - K) / 255, ...


def _pixels(seed: int, shape=(30, 20, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _ink_to_rgb(ink: np.ndarray) -> np.ndarray:
    """The reference: R = (255 - C)(255 - K) / 255 rounded, in integers (no ties occur)."""
    ink = ink.astype(np.int64)
    paper = 255 - ink
    return ((paper[..., :3] * paper[..., 3:] + 127) // 255).astype(np.uint8)


def _without_adobe_marker(jpeg: bytes) -> bytes:
    """A JPEG with its APP14 'Adobe' segment taken out (its CMYK then reads as plain ink)."""
    start = jpeg.index(b"\xff\xeeAdobe"[:2])
    (length,) = struct.unpack(">H", jpeg[start + 2 : start + 4])
    assert jpeg[start + 4 : start + 9] == b"Adobe"
    return jpeg[:start] + jpeg[start + 2 + length :]


def _png16(path: Path, samples: np.ndarray) -> Path:
    """Write a 16-bit PNG (gray, gray+alpha, RGB or RGBA) by hand: Pillow cannot."""
    height, width, channels = samples.shape
    rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in samples)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    signature = b"\x89PNG\r\n\x1a\n"
    path.write_bytes(
        signature
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    return path


def test_cmyk_tiff_is_converted_by_the_ink_formula_exactly(tmp_path):
    ink = _pixels(1, (20, 24, 4))
    ink[0, 0] = RED_INK
    tifffile.imwrite(tmp_path / "a.tif", ink, photometric="separated")
    pixels, note = ingest.decode(tmp_path / "a.tif")
    assert note == "CMYK to RGB"
    np.testing.assert_array_equal(pixels, _ink_to_rgb(ink))
    assert tuple(pixels[0, 0]) == RED


def test_16_bit_cmyk_tiff_is_read_by_tifffile_with_the_same_formula(tmp_path):
    ink = np.random.default_rng(2).integers(0, 65536, (16, 18, 4), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", ink, photometric="separated")
    pixels, note = ingest.decode(tmp_path / "a.tif")
    assert note == "CMYK to RGB; 16-bit to 8-bit"
    paper = 65535 - ink.astype(np.int64)
    rgb16 = (paper[..., :3] * paper[..., 3:] + 32767) // 65535
    np.testing.assert_array_equal(pixels, (rgb16 * 2 + 257) // 514)  # rint(rgb16 / 257)


@pytest.mark.parametrize("adobe", [True, False])
def test_cmyk_jpeg_with_or_without_adobe_inversion_gives_its_colour(tmp_path, adobe):
    # Pillow writes CMYK JPEGs the Adobe way, inverted with an APP14 marker. Written inverted
    # and stripped of the marker, the file holds plain ink values, as other software writes.
    ink = np.array(RED_INK, np.uint8) if adobe else 255 - np.array(RED_INK, np.uint8)
    path = tmp_path / "red.jpg"
    Image.new("CMYK", (32, 24), tuple(int(v) for v in ink)).save(path, quality=95)
    if not adobe:
        path.write_bytes(_without_adobe_marker(path.read_bytes()))
        assert "adobe" not in Image.open(path).info
    pixels, note = ingest.decode(path)
    assert note == "CMYK to RGB"
    assert pixels.shape == (24, 32, 3)
    np.testing.assert_allclose(pixels.reshape(-1, 3), [RED] * (24 * 32), atol=3)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_and_noted(tmp_path, orientation):
    stored = _pixels(3)  # 20 wide, 30 high: every orientation gives different pixels
    path = tmp_path / "a.tif"
    tifffile.imwrite(path, stored, extratags=[(274, "H", 1, orientation, True)])
    pixels, note = ingest.decode(path)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)))  # Pillow's reading
    np.testing.assert_array_equal(pixels, expected)
    turned = {6: np.rot90(stored, -1), 8: np.rot90(stored, 1), 3: stored[::-1, ::-1]}
    if orientation in turned:
        np.testing.assert_array_equal(pixels, turned[orientation])
    if orientation == 1:
        assert note == ""
    else:
        assert note.startswith(f"EXIF orientation {orientation}: ")
    if orientation == 6:
        assert note == "EXIF orientation 6: rotated 90 degrees clockwise"


def test_a_sideways_jpeg_is_turned_upright(tmp_path):
    stored = _pixels(4, (24, 40, 3))  # a portrait photographed sideways: stored landscape
    exif = Image.Exif()
    exif[274] = 6
    path = tmp_path / "portrait.jpg"
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    decoded_as_stored = np.asarray(Image.open(path))
    pixels, note = ingest.decode(path)
    assert pixels.shape == (40, 24, 3)
    np.testing.assert_array_equal(pixels, np.rot90(decoded_as_stored, -1))
    assert note == "EXIF orientation 6: rotated 90 degrees clockwise"


def test_palette_png_gives_its_palettes_colours(tmp_path):
    palette = np.array([[200, 180, 190], [90, 20, 120], [255, 255, 255], [10, 200, 30]], np.uint8)
    index = np.random.default_rng(5).integers(0, 4, (20, 24), dtype=np.uint8)
    image = Image.fromarray(index, "P")
    image.putpalette(palette.tobytes())
    image.save(tmp_path / "a.png")
    pixels, note = ingest.decode(tmp_path / "a.png")
    assert note == "palette to RGB"
    np.testing.assert_array_equal(pixels, palette[index])

    image.save(tmp_path / "clear.png", transparency=1)  # colour 1 transparent: white
    pixels, note = ingest.decode(tmp_path / "clear.png")
    assert note == "palette to RGB; alpha composited over white"
    expected = palette[index]
    expected[index == 1] = 255
    np.testing.assert_array_equal(pixels, expected)


def test_white_is_zero_tiff_and_16_bit_png_read_as_seen(tmp_path):
    stored = _pixels(6, (20, 22))
    tifffile.imwrite(tmp_path / "w.tif", stored, photometric="miniswhite")
    pixels, note = ingest.decode(tmp_path / "w.tif")
    assert note == "grayscale to RGB"
    np.testing.assert_array_equal(pixels[..., 0], 255 - stored)

    wide = np.random.default_rng(7).integers(0, 65536, (18, 20, 3), dtype=np.uint16)
    pixels, note = ingest.decode(_png16(tmp_path / "wide.png", wide))
    assert note == "16-bit to 8-bit"
    np.testing.assert_array_equal(pixels, wide >> 8)  # Pillow keeps the high byte
    gray = wide[..., :1]
    pixels, note = ingest.decode(_png16(tmp_path / "gray.png", gray))
    assert note == "16-bit to 8-bit; grayscale to RGB"
    np.testing.assert_array_equal(pixels[..., 1], np.rint(gray[..., 0] / 257))


def test_only_the_first_page_is_read_and_the_pages_are_noted(tmp_path):
    pages = [_pixels(10 + k) for k in range(3)]
    with tifffile.TiffWriter(tmp_path / "same.tif") as tif:
        for page in pages:
            tif.write(page)
    pixels, note = ingest.decode(tmp_path / "same.tif")
    np.testing.assert_array_equal(pixels, pages[0])
    assert note == "first of 3 pages"

    with tifffile.TiffWriter(tmp_path / "mixed.tif") as tif:
        tif.write(pages[0])
        tif.write(np.zeros((5000, 5000, 3), np.uint8), compression="zlib")  # never decoded
    pixels, note = ingest.decode(tmp_path / "mixed.tif", max_pixels=20 * 30)
    np.testing.assert_array_equal(pixels, pages[0])
    assert note == "first of 2 pages (pages differ in size)"

    wide = [np.full((20, 30, 3), 257 * k, np.uint16) for k in (100, 7)]  # read by tifffile
    with tifffile.TiffWriter(tmp_path / "wide.tif") as tif:
        for page in wide:
            tif.write(page)
    pixels, note = ingest.decode(tmp_path / "wide.tif")
    assert note == "first of 2 pages; 16-bit to 8-bit"
    assert (pixels == 100).all()


MEASURE = """
import sys
from pathlib import Path
from blastcell import ingest

def status(key):  # KiB
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))

ingest.decode(Path(sys.argv[2]))  # warm up: every import and plugin loaded
before = status("VmRSS")
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak (VmHWM) starts again from the current size
except OSError:
    pass  # the peak so far counts too: a larger figure, never a smaller one
pixels, note = ingest.decode(Path(sys.argv[1]), max_pixels=1000 * 1000)
print(pixels.shape, note, (status("VmHWM") - before) / 1024, sep="|")
"""


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="measures Linux's /proc")
def test_a_400_page_tiff_is_refused_or_read_in_bounded_memory(tmp_path, monkeypatch):
    # 400 pages of 1000 x 1000: 400 MB decoded, 0.4 MB on disk
    path = tmp_path / "stack.tif"
    page = np.zeros((1000, 1000), np.uint8)
    page[::7] = 200
    with tifffile.TiffWriter(path) as tif:
        tif.write(
            (page for _ in range(400)), shape=(400, 1000, 1000), dtype=np.uint8, compression="zlib"
        )
    assert path.stat().st_size < 2_000_000
    small = tmp_path / "small.png"
    Image.fromarray(_pixels(0)).save(small)
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, str(path), str(small)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    shape, note, grown_mb = out.split("|")
    assert shape == "(1000, 1000, 3)"
    assert note == "first of 400 pages; grayscale to RGB"
    print(f"peak memory of decoding 400 pages: +{float(grown_mb):.1f} MB")
    assert float(grown_mb) < 60  # a full decode takes 400 MB

    # the limit counts the page decoded, not the pages: one pixel less refuses it, unread
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda image: pytest.fail("decoded"))
    with pytest.raises(ingest.BadImage, match=r"1000x1000 pixels is over data.max_image_pix"):
        ingest.decode(path, max_pixels=1000 * 1000 - 1)


@pytest.mark.parametrize(("width", "height"), [(1, 1), (10000, 10), (15, 40)])
def test_images_with_a_short_side_are_refused_before_decoding(
    tmp_path, monkeypatch, width, height
):
    path = tmp_path / "thin.png"
    Image.new("RGB", (width, height), RED).save(path)
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda image: pytest.fail("decoded"))
    message = rf"thin.png: {width}x{height} pixels has a side under data.min_image_side=16; "
    with pytest.raises(ingest.BadImage, match=message + "refused before decoding"):
        ingest.decode(path)
    with pytest.raises(ingest.BadImage, match=r"side under --min-image-side=20"):
        ingest.decode(path, min_side=20, names=("--max-image-pixels", "--min-image-side"))


def test_squaring_pads_with_the_background_crops_the_centre_or_notes_a_stretch(tmp_path):
    background = np.array([200, 180, 190], np.uint8)
    cell = np.full((80, 120, 3), background)
    cell[10:70, 30:90] = _pixels(8, (60, 60, 3))  # the cell, inside the slide's background
    cell[0, :7] = 0  # a few dark pixels on the border do not move the median
    path = tmp_path / "wide.png"
    Image.fromarray(cell).save(path)

    pixels, note = ingest.decode(path, square="pad")
    assert note == "padded 120x80 to 120x120"
    assert pixels.shape == (120, 120, 3)
    np.testing.assert_array_equal(pixels[20:100], cell)
    assert (pixels[:20] == background).all()
    assert (pixels[100:] == background).all()

    pixels, note = ingest.decode(path, square="center_crop")
    assert note == "cropped 120x80 to the centre 80x80"
    np.testing.assert_array_equal(pixels, cell[:, 20:100])

    pixels, note = ingest.decode(path, square="stretch")  # prepare stretches: as stored
    assert note == ""
    np.testing.assert_array_equal(pixels, cell)
    Image.fromarray(np.zeros((20, 100, 3), np.uint8)).save(tmp_path / "strip.png")
    pixels, note = ingest.decode(tmp_path / "strip.png")
    assert note == "aspect ratio 100:20, stretched to a square by prepare"
    assert pixels.shape == (20, 100, 3)


def test_square_function_pads_odd_differences_after_and_refuses_unknown_modes():
    image = np.arange(2 * 5 * 1, dtype=np.uint8).reshape(2, 5, 1) + 1
    image[0, 0] = 0  # border: 1..10 with one 0: median 5.5 rounds to 6 (half to even)
    padded = images.square(image, "pad")
    assert padded.shape == (5, 5, 1)
    np.testing.assert_array_equal(padded[1:3], image)  # 3 rows to add: 1 before, 2 after
    assert (padded[[0, 3, 4]] == 6).all()
    np.testing.assert_array_equal(images.square(image, "center_crop"), image[:, 1:3])
    assert images.square(image, "stretch") is image
    with pytest.raises(ValueError, match=r"square must be stretch, pad or center_crop"):
        images.square(image, "fit")


def test_unreadable_colour_models_are_refused_naming_what_is_read(tmp_path):
    Image.new("F", (20, 20)).save(tmp_path / "float.tif")
    with pytest.raises(ingest.BadImage, match=r"float.tif: pixel type float32 is not 8- or 16"):
        ingest.decode(tmp_path / "float.tif")
    tifffile.imwrite(tmp_path / "lab.tif", _pixels(9, (20, 20, 3)), photometric="cielab")
    with pytest.raises(ingest.BadImage, match=r"lab.tif: .* is not read; read: 1-bit, gray"):
        ingest.decode(tmp_path / "lab.tif")


def test_1_bit_and_gray_with_alpha_pngs(tmp_path):
    bits = np.random.default_rng(11).integers(0, 2, (20, 18)).astype(bool)
    Image.fromarray(bits).save(tmp_path / "bits.png")
    pixels, note = ingest.decode(tmp_path / "bits.png")
    assert note == "1-bit to 8-bit; grayscale to RGB"
    np.testing.assert_array_equal(pixels, np.repeat(bits[..., None] * 255, 3, axis=2))

    gray, alpha = _pixels(12, (20, 18)), _pixels(13, (20, 18))
    Image.fromarray(np.dstack([gray, alpha]), "LA").save(tmp_path / "la.png")
    pixels, note = ingest.decode(tmp_path / "la.png")
    assert note == "alpha composited over white; grayscale to RGB"
    gray, alpha = gray.astype(np.int64), alpha.astype(np.int64)
    over_white = (gray * alpha + 255 * (255 - alpha) + 127) // 255
    np.testing.assert_allclose(pixels[..., 2], over_white, atol=1)  # float32 rounding


@pytest.mark.parametrize("block", [7, 160])  # 1 row a block; 8 (or 2) rows, the last block short
def test_conversions_a_block_of_rows_at_a_time_give_the_whole_images_pixels(
    tmp_path, monkeypatch, block
):
    rgba = _pixels(14, (23, 19, 4))
    wide = np.random.default_rng(15).integers(0, 65536, (23, 19, 4), dtype=np.uint16)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    Image.fromarray(rgba[..., :3]).convert("CMYK").save(tmp_path / "cmyk.jpg")
    jpeg = (tmp_path / "cmyk.jpg").read_bytes()
    (tmp_path / "plain_cmyk.jpg").write_bytes(_without_adobe_marker(jpeg))
    Image.fromarray(rgba[..., :3]).convert("CMYK").save(tmp_path / "cmyk.tif")
    Image.fromarray(rgba[..., :3]).convert("P").save(tmp_path / "p.png", transparency=3)
    Image.fromarray(rgba[..., :2], "LA").save(tmp_path / "la.png")
    Image.fromarray(rgba[..., 0] > 99).save(tmp_path / "bits.png")
    _png16(tmp_path / "wide.png", wide[..., :3])
    tifffile.imwrite(tmp_path / "cmyk16.tif", wide, photometric="separated")
    tifffile.imwrite(tmp_path / "premultiplied.tif", wide, photometric="rgb", extrasamples=[1])
    tifffile.imwrite(tmp_path / "white.tif", rgba[..., 0], photometric="miniswhite")
    files = sorted(tmp_path.iterdir())
    whole = [ingest.decode(path) for path in files]
    monkeypatch.setattr(ingest, "_BLOCK_SAMPLES", block)
    for path, (pixels, note) in zip(files, whole, strict=True):
        by_rows, by_rows_note = ingest.decode(path)
        assert by_rows_note == note, path.name
        np.testing.assert_array_equal(by_rows, pixels, err_msg=path.name)


def test_padding_to_a_square_over_the_pixel_limit_is_refused_before_decoding(
    tmp_path, monkeypatch
):
    path = tmp_path / "strip.png"
    Image.fromarray(_pixels(16, (20, 300, 3))).save(path)  # 6,000 pixels; padded, 90,000
    assert ingest.decode(path, max_pixels=10_000)[0].shape == (20, 300, 3)
    assert ingest.decode(path, max_pixels=10_000, square="center_crop")[0].shape == (20, 20, 3)
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda image: pytest.fail("decoded"))
    with pytest.raises(
        ingest.BadImage,
        match=r"strip.png: 300x20 pixels, padded to 300x300, is over data.max_image_pixels=10000;"
        r" refused before decoding",
    ):
        ingest.decode(path, max_pixels=10_000, square="pad")
