"""The augment stage's work: read a data set and write each image with its augmented copies.

`augment` reads, checks and decodes the input images in order in this process
(`blastcell.ingest`, about 1 ms each) while `augment.workers` processes (`blastcell.parallel`)
augment them (`blastcell.transform`) and write the PNGs (about 75 ms each at 257 px, 4 copies);
the files do not depend on the number of workers. The augmented folder's format is
`blastcell.augmented`'s: source `data/x/y.tif` gives `x__y_0.png` (the original, converted to
8-bit RGB) and `x__y_1.png` ... (its copies), listed in `index.csv`. What the stage writes
besides (the manifest, the counts, the preview) comes back in a `Result`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from blastcell import SYNTHETIC_MARKER, augmented, copied, images, ingest, parallel, progress
from blastcell.augmented import Record
from blastcell.files import DataError, atomic_dir, csv_text
from blastcell.params import AugmentParams, DataParams
from blastcell.transform import augment_image, source_rng

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PREVIEW_PER_CLASS = 2  # sources shown per class, the first ones in input order
PREVIEW_SIDE = 1024  # pixels: a larger image is kept for the preview shrunk (`images.shrunk`);
# matplotlib took 2 GB and 8 s to draw one of 6300 x 6300


class Kept(NamedTuple):
    """A source kept for the preview: its path in the data folder, its class, its images."""

    key: str
    label: int
    images: list[np.ndarray]  # the original, then its copies; at most PREVIEW_SIDE a side


@dataclass(frozen=True)
class Result:
    """What the augment stage needs once the augmented folder is written."""

    classes: tuple[str, ...]
    report: ingest.Report  # the manifest rows and the counts (used, skipped, duplicates, ...)
    files: int  # images written: the originals and their copies
    kept: tuple[Kept, ...]  # for the preview: the first PREVIEW_PER_CLASS sources of each class


class _Source(NamedTuple):
    """One source image, as sent to a worker."""

    path: Path  # the input file, named in errors
    key: str  # its path in the data folder: seeds its copies (see source_rng)
    label: int
    stem: str  # its files are {stem}_{k}.png, k = 0 for the original, 1.. for the copies
    pixels: np.ndarray
    keep: bool  # hand the original and its copies back, for the preview


def output_stem(key: str) -> str:
    """The file-name stem of a source's augmented set: its relative path, '/' as '__'."""
    return str(PurePosixPath(key).with_suffix("")).replace("/", "__")


def copies(image: np.ndarray, key: str, settings: AugmentParams, seed: int) -> list[np.ndarray]:
    """The `settings.copies` augmented copies of one source image, from its own random stream
    (`source_rng(seed, key)`), so they do not depend on the other images or their order."""
    return list(_copies(image, key, settings, seed))


def _copies(
    image: np.ndarray, key: str, settings: AugmentParams, seed: int
) -> Iterator[np.ndarray]:
    """`copies`, one at a time."""
    rng = source_rng(seed, key)
    return (augment_image(image, rng, settings) for _ in range(settings.copies))


def _write_set(folder: Path, settings: AugmentParams, seed: int, source: _Source) -> Kept | None:
    """Augment one source and write it with its copies, each copy as it is made (memory holds
    one at a time); run in a worker process."""
    shown = []
    try:
        made = _copies(source.pixels, source.key, settings, seed)
        for k, image in enumerate(itertools.chain([source.pixels], made)):
            images.write(folder / f"{source.stem}_{k}.png", image)
            if source.keep:
                shown.append(images.shrunk(image, PREVIEW_SIDE))
    except Exception as err:  # anything: name the file, whichever process it happened in
        raise DataError(f"{source.path}: cannot augment or write its copies: {err}") from err
    return Kept(source.key, source.label, shown) if source.keep else None


def augment(
    input_folder: Path,
    output_folder: Path,
    data: DataParams,
    settings: AugmentParams,
    seed: int,
    found: copied.Copies | None = None,
) -> Result:
    """Read the data set in `input_folder` and write the augmented folder `output_folder`.

    Every image (copy 0) and its `settings.copies` copies are written as PNG, with the index
    (file, source, group, class, copy; exact duplicates share a source, the images of one
    patient or slide a group: `data.group_by`, joined with every group that holds a copy of one
    of its images: `found`, the copies stage's), the class names and what the data set is
    (`augmented.Source`). The files `found` drops (label conflicts) are left out, listed in the
    manifest.
    `output_folder` is replaced only if everything succeeds. A bad input file is an error naming
    it, or is skipped with `data.on_bad_image: skip`; two inputs whose outputs would share a
    name (`a.tif` and `a.png`, or `x/y.tif` and `x__y.tif` in one class folder) are an error
    naming both.
    """
    found = found or copied.Copies()
    listing = ingest.list_dataset(input_folder)
    report = ingest.Report(listing.classes)
    loaded = ingest.load(listing, report, data, drop=found.dropped)
    group_of: dict[str, str] = {}  # each file's group before copies join them
    records: list[Record] = []
    first_with_stem: dict[str, Path] = {}
    kept_per_class = [0] * len(listing.classes)

    def sources() -> Iterator[_Source]:
        """Check each image's output names, index its files, keep the first few per class."""
        for img in loaded:
            path, label, stem = img.item.path, img.item.label, output_stem(img.key)
            if stem in first_with_stem:
                raise DataError(f"{path} and {first_with_stem[stem]} would share outputs {stem}_*")
            first_with_stem[stem] = path
            group_of[img.key] = img.group
            records.extend(
                Record(f"{stem}_{k}.png", img.source, img.group, label, k)
                for k in range(settings.copies + 1)
            )
            keep = kept_per_class[label] < PREVIEW_PER_CLASS
            kept_per_class[label] += keep
            yield _Source(path, img.key, label, stem, img.pixels, keep)

    kept: list[Kept] = []
    with atomic_dir(output_folder) as tmp:
        task = functools.partial(_write_set, tmp, settings, seed)
        written = parallel.map_ordered(task, sources(), workers=settings.workers)
        for done in progress.track(written, len(listing.items), "augment"):
            if done is not None:
                kept.append(done)
        joined = copied.merge(group_of, found)
        records = [dataclasses.replace(r, group=joined[r.group]) for r in records]
        report.regroup(joined)
        manifest = csv_text(list(ingest.MANIFEST_COLUMNS), report.manifest())
        source = augmented.Source(
            data_dir=str(input_folder),
            synthetic=(input_folder / SYNTHETIC_MARKER).is_file(),
            manifest_sha256=hashlib.sha256(manifest.encode()).hexdigest(),
            images=sum(r.copy == 0 for r in records),
            square=data.square,
        )
        augmented.write_index(tmp, listing.classes, records, source)
    return Result(listing.classes, report, len(records), tuple(kept))


def preview(result: Result) -> Figure:
    """A grid of the sources kept: one row each, the original then its copies, in input order."""
    from blastcell import figures  # matplotlib: only here, never in the worker processes

    copies_each = max((len(kept.images) for kept in result.kept), default=1) - 1
    titles = ["original", *(f"copy {k}" for k in range(1, copies_each + 1))]
    labels = [f"{kept.key}\n{result.classes[kept.label]}" for kept in result.kept]
    return figures.image_grid([kept.images for kept in result.kept], labels, titles)
