"""Reading and writing the pipeline's image data: ALL-IDB2 listings, image files, atomic outputs.

ALL-IDB2 stores one flat folder of crops named `ImNNN_L.tif`, L = 1 for a blast and L = 0 for
not blast. The label in the name is the class index: class 0 is `not_blast`, class 1 `blast`.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import skimage.io

ALL_IDB_CLASSES = ("not_blast", "blast")
IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")
_ALL_IDB_NAME = re.compile(r"Im(\d+)_([01])", re.IGNORECASE)


class DataError(ValueError):
    """The input data is missing, malformed or unreadable; the message names the path."""


@dataclass(frozen=True)
class Item:
    """One input image: its path and class index into the data set's class names."""

    path: Path
    label: int


@dataclass(frozen=True)
class Listing:
    """An input data set: its class names (index = label) and its images, sorted by path."""

    classes: tuple[str, ...]
    items: tuple[Item, ...]


def list_all_idb(folder: Path) -> Listing:
    """List a flat ALL-IDB2-style folder, checking every name and that both classes occur."""
    if not folder.is_dir():
        raise DataError(f"data folder {folder} does not exist or is not a folder")
    items = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):  # .DS_Store, ._* and dot-folders are not data
            continue
        match = _ALL_IDB_NAME.fullmatch(path.stem)
        if path.suffix.lower() not in IMAGE_SUFFIXES or match is None or not path.is_file():
            raise DataError(
                f"{path}: not an ALL-IDB2 image name; expected ImNNN_L.tif "
                f"(L = 1 blast, 0 not blast) with a suffix in {list(IMAGE_SUFFIXES)}"
            )
        items.append(Item(path, int(match.group(2))))
    if not items:
        raise DataError(f"data folder {folder} holds no images")
    present = {item.label for item in items}
    if len(present) < len(ALL_IDB_CLASSES):
        (only,) = present
        raise DataError(
            f"data folder {folder} holds only class '{ALL_IDB_CLASSES[only]}' "
            f"(every name ends in _{only}); a classifier needs images of both classes"
        )
    return Listing(ALL_IDB_CLASSES, tuple(items))


def read_image(path: Path) -> np.ndarray:
    """Read an RGB image as uint8 (H, W, 3), with an error naming the file if it can't."""
    try:
        image = skimage.io.imread(path)
    except Exception as err:  # decoders raise many types; all mean "unreadable"
        raise DataError(f"{path}: cannot read image: {err}") from err
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise DataError(
            f"{path}: expected 8-bit RGB, got dtype {image.dtype} and shape {image.shape}"
        )
    return image


def write_image(path: Path, image: np.ndarray) -> None:
    """Write an image losslessly (format by suffix); identical arrays give identical bytes."""
    # PNG at zlib level 1: 2.5x faster to write than the default level, 15 % larger.
    options = {"compress_level": 1} if path.suffix.lower() == ".png" else {}
    iio.imwrite(path, image, **options)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temporary folder that replaces `target` only if the block succeeds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private; outputs get the usual mode
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


@contextlib.contextmanager
def atomic_file(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target` that replaces it only if the block succeeds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    tmp.chmod(0o666 & ~_umask())
    try:
        yield tmp
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, obj: object) -> None:
    """Write JSON atomically, keys in insertion order."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")


def read_json(path: Path) -> object:
    """Read a JSON file."""
    return json.loads(path.read_text())


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    """Write a CSV table (unix line endings)."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def read_csv(path: Path) -> list[dict[str, str]]:
    """Read a CSV table as a list of row dicts."""
    with path.open(newline="") as f:
        return list(csv.DictReader(f))
