"""Read an input data set of any common layout into checked 8-bit RGB images.

Two layouts are recognised:

* ALL-IDB2's flat folder: `ImNNN_L.tif`, L = 1 blast, L = 0 not blast (classes `not_blast`,
  `blast`, in that order, so the label in the name is the class index);
* one sub-folder per class, any folder names (classes in sorted order), images anywhere below.

TIFF, PNG, JPEG and BMP are read; grayscale, RGBA, palette and 16-bit images are converted to
8-bit RGB and the conversion is noted. Hidden and system files are ignored. A file that cannot
be used (unreadable, not an image, too large, a link leaving the folder) is an error naming it,
or, with `on_bad_image: skip`, is left out and reported. Exact duplicates (same pixels) are
reported and kept together on one side of every split; the same pixels under two classes are an
error.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import tifffile
from PIL import Image as PILImage

from blastcell import DEFAULT_CLASSES
from blastcell.files import DataError

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")
SYSTEM_FILES = ("thumbs.db", "desktop.ini", "ehthumbs.db")
_ALL_IDB_NAME = re.compile(r"Im(\d+)_([01])", re.IGNORECASE)


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
    group: str  # key of the first image with the same pixels (itself if unique)


MANIFEST_COLUMNS = (
    "path", "class", "status", "width", "height", "file_sha256", "pixel_sha256",
    "duplicate_of", "note",
)  # fmt: skip


@dataclass
class Report:
    """What reading a data set found: a manifest row per file, skips, duplicates, conversions."""

    classes: tuple[str, ...]
    rows: list[list[object]] = field(default_factory=list)  # MANIFEST_COLUMNS, one per file
    skipped: int = 0
    duplicates: int = 0
    converted: int = 0

    def add(self, img: Loaded) -> None:
        h, w = img.pixels.shape[:2]
        duplicate_of = img.group if img.group != img.key else ""
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
                img.note,
            ]
        )

    def skip(self, key: str, label: int, why: str) -> None:
        self.skipped += 1
        self.rows.append([key, self.classes[label], "skipped", "", "", "", "", "", why])

    def manifest(self) -> list[list[object]]:
        """The manifest rows sorted by path."""
        return sorted(self.rows, key=lambda row: str(row[0]))

    def metrics(self) -> dict[str, object]:
        """Counts: images used, per class, skipped, duplicates and converted."""
        used = [row for row in self.rows if row[2] == "used"]
        per_class = {name: sum(row[1] == name for row in used) for name in self.classes}
        return {
            "images": len(used),
            "per_class": per_class,
            "skipped": self.skipped,
            "duplicates": self.duplicates,
            "converted": self.converted,
        }

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


def _require_content(path: Path) -> None:
    """Refuse a file that cannot be opened or holds no bytes, naming it."""
    try:
        size = path.stat().st_size
    except OSError as err:
        raise BadImage(f"{path}: cannot read image: {err.strerror or err}") from err
    if size == 0:
        raise BadImage(f"{path}: empty file (0 bytes)")


def _check_file(path: Path, folder: Path, max_pixels: int) -> None:
    """Refuse links leaving the folder, unknown suffixes, empty files and oversized images."""
    if path.is_symlink() and not path.resolve().is_relative_to(folder.resolve()):
        raise BadImage(f"{path}: a link to {path.resolve()}, outside the data folder {folder}")
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise BadImage(f"{path}: not an image file; suffixes read: {list(IMAGE_SUFFIXES)}")
    _require_content(path)
    width, height = _dimensions(path)
    if width * height > max_pixels:
        raise BadImage(
            f"{path}: {width}x{height} pixels is over data.max_image_pixels={max_pixels}; "
            "refused before decoding"
        )


def _dimensions(path: Path) -> tuple[int, int]:
    """Width and height from the file's header, without decoding the pixels."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            with tifffile.TiffFile(path) as tif:
                page = tif.pages[0]
                return int(page.imagewidth), int(page.imagelength)
        with PILImage.open(path) as image:
            return image.size
    except Exception as err:  # header parsers raise many types; all mean "not this format"
        raise BadImage(f"{path}: cannot read image header: {err}") from err


def to_rgb8(pixels: np.ndarray) -> tuple[np.ndarray, str]:
    """Convert a decoded image to 8-bit RGB; the note says what was changed ('' if nothing)."""
    notes = []
    if pixels.dtype == np.uint16:
        pixels = np.rint(pixels / 257.0).astype(np.uint8)
        notes.append("16-bit to 8-bit")
    elif pixels.dtype == bool:
        pixels = pixels.astype(np.uint8) * 255
        notes.append("1-bit to 8-bit")
    elif pixels.dtype != np.uint8:
        raise ValueError(f"pixel type {pixels.dtype} is not 8- or 16-bit")
    if pixels.ndim == 2:
        pixels = pixels[..., np.newaxis]
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"shape {pixels.shape} is not an image")
    channels = pixels.shape[2]
    if channels in (2, 4):  # composite over white: transparent areas become background
        alpha = pixels[..., -1:].astype(np.float32) / 255
        colour = pixels[..., :-1].astype(np.float32)
        pixels = np.rint(colour * alpha + 255 * (1 - alpha)).astype(np.uint8)
        notes.append("alpha composited over white")
    if pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
        notes.append("grayscale to RGB")
    return np.ascontiguousarray(pixels), "; ".join(notes)


def decode(path: Path) -> tuple[np.ndarray, str]:
    """Decode an image file to 8-bit RGB, with a note on any conversion; errors name the file."""
    _require_content(path)
    try:
        pixels = iio.imread(path, index=0)
    except Exception as err:  # decoders raise many types; all mean "unreadable"
        raise BadImage(f"{path}: cannot read image: {err}") from err
    frames = ""
    if pixels.ndim == 4:  # a multi-page TIFF stored as one series
        frames, pixels = f"first of {len(pixels)} frames", pixels[0]
    try:
        pixels, note = to_rgb8(pixels)
    except ValueError as err:
        raise BadImage(f"{path}: {err}") from err
    return pixels, "; ".join(n for n in (frames, note) if n)


def load(
    listing: Listing, report: Report, *, on_bad_image: str, max_pixels: int
) -> Iterator[Loaded]:
    """Decode every listed image in order, filling `report`; skips bad files only if asked."""
    first_of: dict[str, tuple[Item, str]] = {}  # by pixel digest: (item, key), not the pixels
    for item in listing.items:
        key = listing.key(item)
        try:
            _check_file(item.path, listing.folder, max_pixels)
            pixels, note = decode(item.path)
        except BadImage as err:
            if on_bad_image != "skip":
                raise
            report.skip(key, item.label, str(err).removeprefix(f"{item.path}: "))
            continue
        digest = hashlib.sha256(pixels.tobytes() + str(pixels.shape).encode()).hexdigest()
        first, group = first_of.setdefault(digest, (item, key))
        if first.label != item.label:
            raise DataError(
                f"{item.path} and {first.path} hold the same pixels under two classes, "
                f"'{listing.classes[item.label]}' and '{listing.classes[first.label]}'"
            )
        file_sha256 = hashlib.sha256(item.path.read_bytes()).hexdigest()
        loaded = Loaded(item, key, pixels, note, file_sha256, digest, group)
        report.add(loaded)
        yield loaded
    per_class = report.metrics()["per_class"]
    empty = [name for name, n in per_class.items() if n == 0]
    if empty:
        raise DataError(f"class '{empty[0]}' in {listing.folder} has no readable image left")
