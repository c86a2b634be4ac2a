"""Read an input data set of any common layout into checked 8-bit RGB images.

Two layouts are recognised:

* ALL-IDB2's flat folder: `ImNNN_L.tif`, L = 1 blast, L = 0 not blast (classes `not_blast`,
  `blast`, in that order, so the label in the name is the class index);
* one sub-folder per class, any folder names (classes in sorted order), images anywhere below.

TIFF, PNG, JPEG and BMP are read as a person sees them, each from the first page only (later pages
of a multi-page file are noted, not read): grayscale, 1-bit, 16-bit, palette, CMYK and
transparent images are converted to 8-bit RGB, the EXIF orientation is applied, and a non-square
image is made square as `data.square` says; every change is noted in the manifest. The header is
checked before any pixel is decoded (`data.max_image_pixels`, `data.min_image_side`; with
`data.square: pad`, the padded square too). Conversions go a block of rows at a time, so memory
holds the decoder's image and the 8-bit RGB result, not float copies of the whole image. Hidden
and system files are ignored. A file that cannot be used (unreadable, not a regular file, not an
image, too large or too small, a link leaving the folder or looping) is an error naming it, or,
with `on_bad_image: skip`, is left out and reported. Exact duplicates (same pixels) are reported
and kept together on one side of every split; the same pixels under two classes are an error.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import stat
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from PIL import Image as PILImage
from PIL import ImageChops

from blastcell import DEFAULT_CLASSES
from blastcell.files import DataError

if TYPE_CHECKING:
    from blastcell.params import DataParams

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")
SYSTEM_FILES = ("thumbs.db", "desktop.ini", "ehthumbs.db")
MAX_IMAGE_PIXELS = 40_000_000  # the default: params.yaml's data.max_image_pixels, predict's flag
MIN_IMAGE_SIDE = 16  # the default: params.yaml's data.min_image_side, predict's flag
SQUARE = "stretch"  # the default: params.yaml's data.square, predict's flag
SETTING_NAMES = ("data.max_image_pixels", "data.min_image_side")  # named when a size is refused
_ALL_IDB_NAME = re.compile(r"Im(\d+)_([01])", re.IGNORECASE)
_PILLOW_FORMATS = ("TIFF", "PNG", "JPEG", "BMP")  # what Pillow may open (JPEG: MPO too), no other
_ORIENTATION, _BITS_PER_SAMPLE, _INK_SET, _SAMPLE_FORMAT = 274, 258, 332, 339  # TIFF/EXIF tags
_ORIENTATIONS = {  # EXIF orientation: what turns the stored pixels the way they are seen
    2: "mirrored left to right",
    3: "rotated 180 degrees",
    4: "mirrored top to bottom",
    5: "transposed",
    6: "rotated 90 degrees clockwise",
    7: "transversed",
    8: "rotated 90 degrees counterclockwise",
}
_PILLOW_MODES = ("1", "L", "LA", "RGB", "RGBA", "P", "PA", "CMYK", "RGBa", "La", "RGBX", "YCbCr")
_MODES_READ = "read: 1-bit, grayscale, RGB, palette and CMYK, 8- or 16-bit, with or without alpha"


class _Read(NamedTuple):
    """A file's first page as decoded, before `to_rgb8`: samples, notes and EXIF orientation."""

    pixels: np.ndarray
    notes: list[str]
    orientation: int  # as the file says: 1 (as stored) to 8
    turned: bool  # whether the decoder has applied it already (Pillow does for TIFF)


class _Limits(NamedTuple):
    """What `decode` refuses from the header, and the settings its errors name."""

    max_pixels: int
    min_side: int
    names: tuple[str, str]
    square: str  # `pad` makes the image max(width, height) pixels square: that must fit too


class BadImage(DataError):
    """One file cannot be used as an image; with `on_bad_image: skip` it is left out."""


@dataclass(frozen=True)
class Item:
    """One input file: its path and class index into the data set's class names."""

    path: Path
    label: int


@dataclass(frozen=True)
class Listing:
    """An input data set: its folder, layout, class names (index = label) and files by path."""

    folder: Path
    layout: str  # "all_idb" or "class_folders"
    classes: tuple[str, ...]
    items: tuple[Item, ...]

    def key(self, item: Item) -> str:
        """The file's path relative to the data folder, with forward slashes."""
        return item.path.relative_to(self.folder).as_posix()


@dataclass(frozen=True)
class Loaded:
    """A decoded image: its listing entry, 8-bit RGB pixels and what the manifest records."""

    item: Item
    key: str
    pixels: np.ndarray
    note: str
    file_sha256: str
    pixel_sha256: str
    source: str  # key of the first image with the same pixels (itself if unique)
    group: str  # its patient, slide or sample (`data.group_by`); without one, `source`


MANIFEST_COLUMNS = (
    "path", "class", "status", "width", "height", "file_sha256", "pixel_sha256",
    "duplicate_of", "group", "note",
)  # fmt: skip


@dataclass
class Report:
    """What reading a data set found: a manifest row per file, skips, duplicates, conversions."""

    classes: tuple[str, ...]
    rows: list[list[object]] = field(default_factory=list)  # MANIFEST_COLUMNS, one per file
    skipped: int = 0
    duplicates: int = 0
    converted: int = 0
    dropped: int = 0

    def add(self, img: Loaded) -> None:
        h, w = img.pixels.shape[:2]
        duplicate_of = img.source if img.source != img.key else ""
        self.duplicates += bool(duplicate_of)
        self.converted += bool(img.note)
        self.rows.append(
            [
                img.key,
                self.classes[img.item.label],
                "used",
                w,
                h,
                img.file_sha256,
                img.pixel_sha256,
                duplicate_of,
                img.group,
                img.note,
            ]
        )

    def skip(self, key: str, label: int, why: str) -> None:
        self.skipped += 1
        self.rows.append([key, self.classes[label], "skipped", "", "", "", "", "", "", why])

    def drop(self, key: str, label: int, why: str) -> None:
        """A file left out for a label conflict (`copies.on_label_conflict: drop`)."""
        self.dropped += 1
        self.rows.append([key, self.classes[label], "dropped", "", "", "", "", "", "", why])

    def regroup(self, new_group: Mapping[str, str]) -> None:
        """Rename the group of every used file as `new_group` says (groups joined by copies)."""
        at = MANIFEST_COLUMNS.index("group")
        for row in self.rows:
            if row[2] == "used":
                row[at] = new_group.get(str(row[at]), row[at])

    def manifest(self) -> list[list[object]]:
        """The manifest rows sorted by path."""
        return sorted(self.rows, key=lambda row: str(row[0]))

    def metrics(self) -> dict[str, object]:
        """Counts: images used, per class, skipped, duplicates, converted and, where any were,
        dropped for a label conflict."""
        used = [row for row in self.rows if row[2] == "used"]
        per_class = {name: sum(row[1] == name for row in used) for name in self.classes}
        counts: dict[str, object] = {
            "images": len(used),
            "per_class": per_class,
            "skipped": self.skipped,
            "duplicates": self.duplicates,
            "converted": self.converted,
        }
        if self.dropped:
            counts["dropped"] = self.dropped
        return counts

    def per_class(self) -> list[list[object]]:
        """One row per class: its name, images used and files skipped."""
        return [
            [
                name,
                sum(row[1] == name and row[2] == "used" for row in self.rows),
                sum(row[1] == name and row[2] == "skipped" for row in self.rows),
            ]
            for name in self.classes
        ]


def is_hidden(path: Path) -> bool:
    """Hidden and system files and folders (`.DS_Store`, `._*`, `Thumbs.db`, dot-folders)."""
    return path.name.startswith(".") or path.name.lower() in SYSTEM_FILES


def find_images(folder: Path, *, include_non_images: bool = False) -> list[Path]:
    """The image files below `folder` (by suffix), sorted; hidden files and folders left out.

    With `include_non_images`, files and links of any other suffix are kept too, so that a data
    set's stray file is named as a bad image instead of silently dropped. Linked folders are not
    entered. DataError names a folder that cannot be listed.
    """
    try:
        entries = sorted(folder.iterdir())
    except OSError as err:
        raise DataError(f"{folder}: cannot list folder: {err.strerror or err}") from err
    found = []
    for entry in entries:
        if is_hidden(entry):
            continue
        if entry.is_dir() and not entry.is_symlink():
            found += find_images(entry, include_non_images=include_non_images)
        elif include_non_images or entry.suffix.lower() in IMAGE_SUFFIXES:
            found.append(entry)
    return found


def list_dataset(folder: Path) -> Listing:
    """List a data folder in either layout; checks the layout, names and classes, not pixels."""
    if not folder.is_dir():
        raise DataError(f"data folder {folder} does not exist or is not a folder")
    entries = [e for e in sorted(folder.iterdir()) if not is_hidden(e)]
    subdirs = [e for e in entries if e.is_dir() and not e.is_symlink()]
    if not entries:
        raise DataError(f"data folder {folder} holds no images")
    if subdirs:
        stray = next((e for e in entries if e not in subdirs), None)
        if stray is not None:
            raise DataError(
                f"{stray}: a file beside class folders; put every image in its class's folder "
                "(or use ALL-IDB2's flat layout with no folders)"
            )
        listing = _class_folders(folder, subdirs)
    else:
        listing = _all_idb(folder, entries)
    if len(listing.classes) < 2:
        raise DataError(
            f"data folder {folder} holds only class '{listing.classes[0]}'; a classifier needs "
            "images of at least two classes"
        )
    return listing


def _all_idb(folder: Path, entries: list[Path]) -> Listing:
    items = []
    for path in entries:
        match = _ALL_IDB_NAME.fullmatch(path.stem)
        if match is None:
            raise DataError(
                f"{path}: not an ALL-IDB2 image name; expected ImNNN_L.tif (L = 1 blast, "
                "0 not blast), or put images in one folder per class"
            )
        items.append(Item(path, int(match.group(2))))
    labels = {item.label for item in items}
    if len(labels) == 1:
        (only,) = labels
        return Listing(folder, "all_idb", (DEFAULT_CLASSES[only],), tuple(items))
    return Listing(folder, "all_idb", DEFAULT_CLASSES, tuple(items))


def _class_folders(folder: Path, subdirs: list[Path]) -> Listing:
    classes, items = [], []
    for subdir in subdirs:
        files = find_images(subdir, include_non_images=True)
        if not files:
            raise DataError(f"class folder {subdir} holds no images")
        items += [Item(path, len(classes)) for path in files]
        classes.append(subdir.name)
    return Listing(folder, "class_folders", tuple(classes), tuple(items))


_NOT_REGULAR = (  # what a path that is not a regular file is, by its stat mode
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)  # anything else is "other"


def _regular_file(path: Path) -> os.stat_result:
    """The status of a regular file (links followed); BadImage names a path that cannot be read
    or is not a regular file. Nothing is opened: opening a FIFO blocks until something writes to
    it, and a device such as /dev/zero never ends."""
    try:
        status = path.stat()
    except OSError as err:
        raise BadImage(f"{path}: cannot read image: {err.strerror or err}") from err
    if not stat.S_ISREG(status.st_mode):
        kind = next((name for test, name in _NOT_REGULAR if test(status.st_mode)), "other")
        link = f"a link to {path.resolve()}, " if path.is_symlink() else ""
        raise BadImage(f"{path}: {link}not a regular file but {kind}; only image files are read")
    return status


def _require_content(path: Path) -> None:
    """Refuse a file that cannot be read, is not a regular file or holds no bytes, naming it,
    before anything opens it."""
    if _regular_file(path).st_size == 0:
        raise BadImage(f"{path}: empty file (0 bytes)")


def _check_file(path: Path, folder: Path) -> None:
    """Refuse links looping, what is not a regular file (a FIFO, a link to a device), links
    leaving the folder, and unknown suffixes; nothing is opened."""
    try:
        link = path.is_symlink()
        target = path.resolve(strict=True) if link else path
    except (OSError, RuntimeError) as err:  # RuntimeError: a link loop, before Python 3.13
        reason = err.strerror if isinstance(err, OSError) and err.strerror else err
        raise BadImage(f"{path}: cannot resolve link: {reason}") from err
    _regular_file(path)
    if link and not target.is_relative_to(folder.resolve()):
        raise BadImage(f"{path}: a link to {target}, outside the data folder {folder}")
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise BadImage(f"{path}: not an image file; suffixes read: {list(IMAGE_SUFFIXES)}")


def _check_size(path: Path, width: int, height: int, limits: _Limits) -> None:
    """Refuse an image by its header's size: too many pixels, or a side too short."""
    if width * height > limits.max_pixels:
        raise BadImage(
            f"{path}: {width}x{height} pixels is over {limits.names[0]}={limits.max_pixels}; "
            "refused before decoding"
        )
    if min(width, height) < limits.min_side:
        raise BadImage(
            f"{path}: {width}x{height} pixels has a side under {limits.names[1]}="
            f"{limits.min_side}; refused before decoding"
        )
    side = max(width, height)
    if limits.square == "pad" and side * side > limits.max_pixels:
        raise BadImage(
            f"{path}: {width}x{height} pixels, padded to {side}x{side}, is over "
            f"{limits.names[0]}={limits.max_pixels}; refused before decoding"
        )


def _pages_note(pages: int, sizes: set[tuple[int, int]]) -> list[str]:
    """The note on a multi-page file, of which only the first page is read."""
    if pages < 2:
        return []
    return [f"first of {pages} pages" + (" (pages differ in size)" if len(sizes) > 1 else "")]


_BLOCK_SAMPLES = 2**20  # converted a block of rows at a time: float copies of a block, not of
# the image (a 6300 x 6300 image is 119 MB as 8-bit RGB, 950 MB as float64)


def _row_blocks(pixels: np.ndarray) -> Iterator[slice]:
    """Slices of `pixels`' rows (axis 0), of about _BLOCK_SAMPLES samples each."""
    height = pixels.shape[0]
    rows = max(1, _BLOCK_SAMPLES * height // max(pixels.size, 1))
    return (slice(top, top + rows) for top in range(0, height, rows))


def to_rgb8(pixels: np.ndarray) -> tuple[np.ndarray, str]:
    """Convert a decoded image to 8-bit RGB; the note says what was changed ('' if nothing)."""
    notes = []
    if pixels.dtype == np.uint16:
        notes.append("16-bit to 8-bit")
    elif pixels.dtype == bool:
        notes.append("1-bit to 8-bit")
    elif pixels.dtype != np.uint8:
        raise ValueError(f"pixel type {pixels.dtype} is not 8- or 16-bit")
    if pixels.ndim == 2:
        pixels = pixels[..., np.newaxis]
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"shape {pixels.shape} is not an image")
    channels = pixels.shape[2]
    if channels in (2, 4):
        notes.append("alpha composited over white")
    if channels in (1, 2):
        notes.append("grayscale to RGB")
    if not notes:
        return np.ascontiguousarray(pixels), ""
    out = np.empty((*pixels.shape[:2], 3), np.uint8)
    for rows in _row_blocks(pixels):
        out[rows] = _rgb8_rows(pixels[rows])  # grey (h, w, 1) fills the 3 channels
    return out, "; ".join(notes)


def _rgb8_rows(pixels: np.ndarray) -> np.ndarray:
    """`to_rgb8`'s conversion of some rows (h, w, C) of 16-, 8- or 1-bit samples: 8-bit colour
    (h, w, 1 or 3)."""
    if pixels.dtype == np.uint16:
        pixels = np.rint(pixels / 257.0).astype(np.uint8)
    elif pixels.dtype == bool:
        pixels = pixels.astype(np.uint8) * 255
    if pixels.shape[2] in (2, 4):  # composite over white: transparent areas become background
        alpha = pixels[..., -1:].astype(np.float32) / 255
        colour = pixels[..., :-1].astype(np.float32)
        pixels = np.rint(colour * alpha + 255 * (1 - alpha)).astype(np.uint8)
    return pixels


def cmyk_to_rgb(ink: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """RGB (H, W, 3) from ink amounts (H, W, 4), C, M, Y, K, 0 = no ink, as 8- or 16-bit
    integers: R = (1 - C)(1 - K) in full scale, rounded (as Pillow converts). Written to `out`
    if given (it may be `ink[..., :3]`: each block of rows is read before it is written)."""
    full = float(np.iinfo(ink.dtype).max)
    out = np.empty((*ink.shape[:-1], 3), ink.dtype) if out is None else out
    for rows in _row_blocks(ink):
        paper = full - ink[rows].astype(np.float64)  # the light each ink lets through
        out[rows] = np.rint(paper[..., :3] * paper[..., 3:] / full)
    return out


def _orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (2 to 8) to (H, W, C) pixels, as PIL.ImageOps.exif_transpose."""
    if orientation in (5, 6, 7, 8):
        pixels = np.rot90(pixels, -1 if orientation in (5, 6) else 1)  # 6: 90 degrees clockwise
    if orientation in (2, 5, 7):
        pixels = pixels[:, ::-1]
    elif orientation in (3, 4):
        pixels = pixels[::-1] if orientation == 4 else pixels[::-1, ::-1]
    return np.ascontiguousarray(pixels)


def _is_tiff(path: Path) -> bool:
    """Whether a file starts as a TIFF (or BigTIFF) does, whatever its suffix."""
    try:
        with path.open("rb") as f:
            return f.read(4) in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")
    except OSError:  # as unreadable as it was to Pillow, whose error is reported
        return False


def _tiff_for_tifffile(image: PILImage.Image) -> bool:
    """Whether Pillow would read this TIFF wrong: more than 8 bits (it drops the low byte of
    16-bit RGB), or samples that are not unsigned integers."""
    if image.format != "TIFF":
        return False
    bits = np.atleast_1d(image.tag_v2.get(_BITS_PER_SAMPLE, 1))
    kinds = np.atleast_1d(image.tag_v2.get(_SAMPLE_FORMAT, 1))
    return bool(bits.max() > 8 or (kinds != 1).any())  # SampleFormat 1: unsigned integers


def _raw_mode(tile: Any) -> str:
    """The raw mode a Pillow tile is decoded with (PNG: 'RGB;16B' for 16-bit RGB)."""
    args = tile.args
    return args if isinstance(args, str) else str(args[0]) if args else ""


def _pillow_array(
    image: PILImage.Image, convert: Callable[[PILImage.Image], np.ndarray] = np.asarray
) -> np.ndarray:
    """`convert(image)` (by default `np.asarray(image)`) for a loaded Pillow image whose
    conversion goes pixel by pixel, made a block of rows at a time: memory holds the image and
    the array, not also Pillow's whole copies (`np.asarray` copies the image twice over, as
    `tobytes` joins its chunks) and conversions."""
    width, height = image.size
    rows = max(1, _BLOCK_SAMPLES // width)
    out = None
    for top in range(0, height, rows):
        block = convert(image.crop((0, top, width, min(top + rows, height))))
        if out is None:
            out = np.empty((height, *block.shape[1:]), block.dtype)
        out[top : top + rows] = block
    assert out is not None  # an image has a row; `_check_size` saw to it
    return out


def _pillow_rows(rows: PILImage.Image, flip_ink: bool) -> np.ndarray:
    """Rows of a loaded Pillow image as to_rgb8 takes them: palettes to RGB(A), premultiplied
    alpha to straight, CMYK to RGB (Pillow's conversion, `cmyk_to_rgb`'s to the bit; the inks
    inverted first if `flip_ink`), 16-bit grey in native byte order."""
    mode = rows.mode
    if mode in ("P", "PA"):
        alpha = mode == "PA" or "transparency" in rows.info
        return np.asarray(rows.convert("RGBA" if alpha else "RGB"))
    if mode == "CMYK":
        return np.asarray((ImageChops.invert(rows) if flip_ink else rows).convert("RGB"))
    if mode in ("RGBa", "La"):
        return np.asarray(rows.convert(mode[:-1] + "A"))
    if mode in ("RGBX", "YCbCr"):
        return np.asarray(rows.convert("RGB"))
    if mode.startswith("I;16"):
        return np.asarray(rows).astype(np.uint16)
    return np.asarray(rows)


def _from_pillow(image: PILImage.Image) -> tuple[np.ndarray, list[str]]:
    """The pixels of a loaded Pillow image, as to_rgb8 takes them, and the conversion's note."""
    mode = image.mode
    if mode not in _PILLOW_MODES and not mode.startswith("I;16"):
        raise ValueError(f"colour mode {mode} is not read; {_MODES_READ}")
    # Pillow always assumes Adobe's inverted CMYK in a JPEG; without APP14 it isn't
    flip_ink = image.format in ("JPEG", "MPO") and "adobe" not in image.info
    pixels = _pillow_array(image, functools.partial(_pillow_rows, flip_ink=flip_ink))
    notes = {"P": ["palette to RGB"], "PA": ["palette to RGB"], "CMYK": ["CMYK to RGB"]}
    return pixels, notes.get(mode, [])


def _read_pillow(path: Path, image: PILImage.Image, limits: _Limits) -> _Read:
    """Check the header, then decode the first frame."""
    try:
        width, height = image.size
        pages = getattr(image, "n_frames", 1)
        sizes = {image.size}
        if pages > 1 and image.format in ("TIFF", "MPO"):  # seeking reads a header, no pixels
            for page in range(1, pages):
                image.seek(page)
                sizes.add(image.size)
            image.seek(0)
    except Exception as err:  # header parsers raise many types; all mean "not this format"
        raise BadImage(f"{path}: cannot read image header: {err}") from err
    _check_size(path, width, height, limits)
    # Pillow decodes 16-bit PNG colour to 8 bits by dropping the low byte; say so
    wide = image.format == "PNG" and any(_raw_mode(t).endswith(";16B") for t in image.tile)
    try:
        orientation = image.getexif().get(_ORIENTATION, 1)  # a PNG's may follow its pixels
        image.load()
        pixels, notes = _from_pillow(image)
    except ValueError as err:
        raise BadImage(f"{path}: {err}") from err
    except Exception as err:  # decoders raise many types; all mean "unreadable"
        raise BadImage(f"{path}: cannot read image: {err}") from err
    if wide and not image.mode.startswith("I;16"):
        notes.insert(0, "16-bit to 8-bit")
    # Pillow turns a TIFF upright as it loads it (since 8.3), dropping the tag it applied
    turned = image.format == "TIFF" and _ORIENTATION not in image.getexif()
    return _Read(pixels, _pages_note(pages, sizes) + notes, orientation, turned)


def _from_tifffile(page: Any, data: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """A TIFF page's decoded samples as to_rgb8 takes them, by photometric, and a note."""
    if data.dtype not in (np.uint8, np.uint16, bool):
        raise ValueError(f"pixel type {data.dtype} is not 8- or 16-bit")
    if data.ndim == 3 and int(page.planarconfig) == 2 and page.samplesperpixel > 1:
        data = np.moveaxis(data, 0, -1)  # (S, H, W) to (H, W, S)
    if data.ndim == 2:
        data = data[..., np.newaxis]
    photometric = int(page.photometric)
    colours = {0: 1, 1: 1, 2: 3, 3: 1, 5: 4}.get(photometric)
    inks = page.tags.valueof(_INK_SET, 1)
    if colours is None or (photometric == 5 and (inks != 1 or data.shape[2] < 4)):
        name = getattr(page.photometric, "name", photometric)
        raise ValueError(f"TIFF photometric {name} is not read; {_MODES_READ}")
    if not data.flags.writeable:
        data = data.copy()
    # colour and alpha are views of `data`, converted in place: no copy of the image
    colour, extra = data[..., :colours], data[..., colours:]
    alpha = extra[..., :1] if tuple(page.extrasamples[:1]) in ((1,), (2,)) else extra[..., :0]
    notes = []
    if alpha.size and page.extrasamples[0] == 1 and colour.dtype != bool:  # premultiplied
        full = np.iinfo(colour.dtype).max
        for rows in _row_blocks(colour):
            a = alpha[rows].astype(np.float64)
            straight = np.where(a > 0, colour[rows] * (full / np.maximum(a, 1)), 0)
            colour[rows] = np.rint(np.clip(straight, 0, full))
    if photometric == 0:  # white is zero
        if colour.dtype == bool:
            np.invert(colour, out=colour)
        else:
            np.subtract(np.iinfo(colour.dtype).max, colour, out=colour)
    elif photometric == 3:
        palette = np.rint(page.colormap / 257.0).astype(np.uint8)  # (3, 2**bits), 16-bit
        colour, notes = palette[:, colour[..., 0]].transpose(1, 2, 0), ["palette to RGB"]
    elif photometric == 5:
        colour, notes = cmyk_to_rgb(colour, out=colour[..., :3]), ["CMYK to RGB"]
    if not alpha.size:
        return colour, notes
    if alpha.dtype != colour.dtype:  # palette: 8-bit colour, 16-bit alpha
        alpha = np.rint(alpha / 257.0).astype(np.uint8)
    if photometric in (0, 1, 2):  # colour and alpha side by side in `data` still
        return data[..., : colours + 1], notes
    return np.concatenate([colour, alpha], axis=2), notes


def _read_tifffile(path: Path, limits: _Limits) -> _Read:
    """Pillow's `_read_pillow` with tifffile, for TIFFs Pillow would read wrong or not at all:
    check the header, then decode the first page only."""
    import tifffile  # imported here: most images never need it

    try:
        tif = tifffile.TiffFile(path)
    except Exception as err:  # header parsers raise many types; all mean "not this format"
        raise BadImage(f"{path}: cannot read image header: {err}") from err
    with tif:
        try:
            page = tif.pages.first
            width, height = int(page.imagewidth), int(page.imagelength)
            pages = len(tif.pages)
            sizes = {(int(p.imagewidth), int(p.imagelength)) for p in tif.pages[1:]}
            sizes.add((width, height))
            orientation = page.tags.valueof(_ORIENTATION, 1)
        except Exception as err:  # as above
            raise BadImage(f"{path}: cannot read image header: {err}") from err
        _check_size(path, width, height, limits)
        try:
            data = page.asarray()
            pixels, notes = _from_tifffile(page, data)
        except ValueError as err:
            raise BadImage(f"{path}: {err}") from err
        except Exception as err:  # decoders raise many types; all mean "unreadable"
            raise BadImage(f"{path}: cannot read image: {err}") from err
    return _Read(pixels, _pages_note(pages, sizes) + notes, orientation, turned=False)


def _squared(pixels: np.ndarray, square: str) -> tuple[np.ndarray, str]:
    """The pixels made square by `images.square`, and the note saying how ('' if square)."""
    height, width = pixels.shape[:2]
    if height == width:
        return pixels, ""
    if square == "stretch":  # left to prepare, which stretches every image when resizing
        if max(width, height) > 2 * min(width, height):
            return pixels, f"aspect ratio {width}:{height}, stretched to a square by prepare"
        return pixels, ""
    from blastcell import images  # scikit-image: a second to import, not for `blastcell --help`

    side = max(width, height) if square == "pad" else min(width, height)
    done = images.square(pixels, square)
    if square == "pad":
        return done, f"padded {width}x{height} to {side}x{side}"
    return done, f"cropped {width}x{height} to the centre {side}x{side}"


def decode(
    path: Path,
    *,
    max_pixels: int = MAX_IMAGE_PIXELS,
    min_side: int = MIN_IMAGE_SIDE,
    square: str = SQUARE,
    names: tuple[str, str] = SETTING_NAMES,
) -> tuple[np.ndarray, str]:
    """Decode an image file's first page to 8-bit RGB as a person sees it, made square as
    `images.square` does; the note lists every change ('' if none).

    The header is checked before any pixel is decoded: more than `max_pixels` pixels in the
    first page (or in the square that `pad` makes of it), or a side under `min_side`, is refused
    with an error naming the settings `names` (max_pixels's, min_side's). Anything but a regular
    file is refused unopened. BadImage names the file.
    """
    _require_content(path)
    limits = _Limits(max_pixels, min_side, names, square)
    try:
        with warnings.catch_warnings():  # our own limit applies, checked next
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            image = PILImage.open(path, formats=_PILLOW_FORMATS)
    except PILImage.DecompressionBombError as err:  # Pillow's own limit, 2 * MAX_IMAGE_PIXELS
        limit = 2 * (PILImage.MAX_IMAGE_PIXELS or 0)
        over = f"{names[0]}={max_pixels}" if max_pixels < limit else "Pillow's limit"
        raise BadImage(
            f"{path}: more than {limit} pixels is over {over}; refused before decoding"
        ) from err
    except Exception as err:  # header parsers raise many types; all mean "not this format"
        if not _is_tiff(path):
            raise BadImage(f"{path}: cannot read image header: {err}") from err
        image = None  # a TIFF Pillow cannot open: BigTIFF, odd sample layouts, ...
    if image is None or _tiff_for_tifffile(image):
        if image is not None:
            image.close()
        read = _read_tifffile(path, limits)
    else:
        with image:
            read = _read_pillow(path, image, limits)
    try:
        pixels, note = to_rgb8(read.pixels)
    except ValueError as err:
        raise BadImage(f"{path}: {err}") from err
    notes = [*read.notes, note]
    if read.orientation in _ORIENTATIONS:
        pixels = pixels if read.turned else _orient(pixels, read.orientation)
        notes.append(f"EXIF orientation {read.orientation}: {_ORIENTATIONS[read.orientation]}")
    pixels, note = _squared(pixels, square)
    notes.append(note)
    return pixels, "; ".join(n for n in notes if n)


def _file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in chunks (a file can be far larger than its image)."""
    try:
        with path.open("rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError as err:
        raise BadImage(f"{path}: cannot read image: {err.strerror or err}") from err


def _pixel_sha256(pixels: np.ndarray) -> str:
    """The SHA-256 of the pixels' bytes and then their shape, read in place (no copy)."""
    digest = hashlib.sha256(np.ascontiguousarray(pixels).data)
    digest.update(str(pixels.shape).encode())
    return digest.hexdigest()


def grouping(pattern: str | None, folder: Path) -> Callable[[str], str]:
    """The group of an image from its path in the data folder: the first group of `pattern`
    (`data.group_by`) searched in the path, or, without a pattern, the path itself."""
    if pattern is None:
        return lambda key: key
    regex = re.compile(pattern)

    def group(key: str) -> str:
        match = regex.search(key)
        if match is None or not match.group(1):
            raise DataError(
                f"{folder / key}: data.group_by '{pattern}' finds no group in its path '{key}'"
            )
        return match.group(1)

    return group


def load(
    listing: Listing,
    report: Report,
    data: DataParams,
    *,
    grouped: bool = True,
    drop: Mapping[str, str] | None = None,
    across_classes: bool = False,
) -> Iterator[Loaded]:
    """Decode every listed image in order as `data` says (limits, squaring, bad images, and
    with `grouped` the groups of `data.group_by`), filling `report`; skips bad files only if
    `data.on_bad_image` is `skip`. Files in `drop` (key: why) are left out, undecoded, and
    listed as dropped. The same pixels under two classes are an error, unless `across_classes`
    (the copies stage, which applies `copies.on_label_conflict` to them): then the later file is
    a duplicate of the earlier one, like any other."""
    first_of: dict[str, tuple[Item, str]] = {}  # by pixel digest: (item, key), not the pixels
    group_of = grouping(data.group_by if grouped else None, listing.folder)
    skip_bad = data.on_bad_image == "skip"
    drop = drop or {}
    for item in listing.items:
        key = listing.key(item)
        if key in drop:
            report.drop(key, item.label, drop[key])
            continue
        try:
            _check_file(item.path, listing.folder)
            pixels, note = decode(
                item.path,
                max_pixels=data.max_image_pixels,
                min_side=data.min_image_side,
                square=data.square,
            )
            file_sha256 = _file_sha256(item.path)
        except BadImage as err:
            if not skip_bad:
                raise
            report.skip(key, item.label, str(err).removeprefix(f"{item.path}: "))
            continue
        digest = _pixel_sha256(pixels)
        first, source = first_of.setdefault(digest, (item, key))
        if first.label != item.label and not across_classes:
            raise DataError(
                f"{item.path} and {first.path} hold the same pixels under two classes, "
                f"'{listing.classes[item.label]}' and '{listing.classes[first.label]}'"
            )
        group = group_of(source)  # an exact duplicate goes with the image it duplicates
        loaded = Loaded(item, key, pixels, note, file_sha256, digest, source, group)
        report.add(loaded)
        yield loaded
    per_class = report.metrics()["per_class"]
    empty = [name for name, n in per_class.items() if n == 0]
    if empty:
        raise DataError(f"class '{empty[0]}' in {listing.folder} has no readable image left")
