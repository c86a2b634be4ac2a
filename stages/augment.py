"""Stage augment: read the input data set, then apply the seed's ImageDataGenerator augmentation.

Params: base.seed, data.on_bad_image, data.max_image_pixels, augment.*.
Input: the data folder (`data.dir`), ALL-IDB2's flat layout or one folder per class.
Outputs: a folder with each source image (copy 0) and its augmented copies as PNG, `index.csv`
(file, source, class, copy; duplicates share a source) and `classes.json`; a preview grid PNG;
a manifest of every input file (path, class, size, checksums, skipped or converted and why);
a JSON report counting images per class, skipped files, duplicates and conversions; and a CSV
plot of the images used and the files skipped per class.

This process reads, checks and decodes the images in order (about 1 ms each) and
`augment.workers` processes (0 = one per CPU core) augment them and write the PNGs (about
75 ms each at 257 px, 4 copies); the outputs do not depend on that number.
"""

import argparse
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from blastcell import augment, ingest, progress, runner
from blastcell import params as P
from blastcell.data import (
    DataError,
    atomic_dir,
    atomic_file,
    write_csv,
    write_image,
    write_json,
)

PREVIEW_PER_CLASS = 2


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--preview", type=Path, required=True)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--classes", type=Path, required=True)
    args = parser.parse_args(argv)
    params = P.load(args.params)
    listing = ingest.list_dataset(args.input)
    report = ingest.Report(listing.classes)
    images = ingest.load(
        listing,
        report,
        on_bad_image=params.data.on_bad_image,
        max_pixels=params.data.max_image_pixels,
    )

    n_files = params.augment.copies + 1  # the original and its copies
    index: list[list[object]] = []
    stems: dict[str, Path] = {}
    kept_class: dict[str, int] = {}  # the sources kept for the preview

    def sources() -> Iterator[augment.Source]:
        """Check each image's output names, index its files, keep the first few per class."""
        for img in images:
            stem, name = augment.output_stem(img.key), listing.classes[img.item.label]
            if stem in stems:
                raise DataError(f"{img.item.path} and {stems[stem]} would share outputs {stem}_*")
            stems[stem] = img.item.path
            index.extend([f"{stem}_{k}.png", img.group, name, k] for k in range(n_files))
            keep = sum(c == img.item.label for c in kept_class.values()) < PREVIEW_PER_CLASS
            if keep:
                kept_class[img.key] = img.item.label
            yield augment.Source(str(img.item.path), img.key, stem, img.pixels, keep)

    preview: dict[tuple[str, int], list[np.ndarray]] = {}
    with atomic_dir(args.output) as tmp:
        written = augment.write_sets(
            tmp,
            sources(),
            params.augment,
            params.base.seed,
            workers=params.augment.workers,
            write=write_image,
        )
        for source, kept in progress.track(written, len(listing.items), "augment"):
            if kept is not None:
                preview[(source.key, kept_class[source.key])] = kept
        write_csv(tmp / "index.csv", ["file", "source", "class", "copy"], index)
        write_json(tmp / "classes.json", list(listing.classes))

    # Imported here, not above: the workers re-run this script's imports, and need no matplotlib.
    from blastcell import figures

    with atomic_file(args.manifest) as tmp:
        write_csv(tmp, list(ingest.MANIFEST_COLUMNS), report.manifest())
    titles = ["original"] + [f"copy {k}" for k in range(1, params.augment.copies + 1)]
    labels = [f"{key}\n{listing.classes[label]}" for key, label in preview]
    with atomic_file(args.preview) as tmp:
        figures.save(figures.image_grid(list(preview.values()), labels, titles), tmp)
    with atomic_file(args.classes) as tmp:
        write_csv(tmp, ["class", "images", "skipped"], report.per_class())
    counts = report.metrics()
    write_json(args.report, counts)
    print(
        f"augment: {counts['images']} images in {len(listing.classes)} classes "
        f"({counts['skipped']} skipped, {counts['duplicates']} duplicates, "
        f"{counts['converted']} converted), {params.augment.copies} copies each: "
        f"{len(index)} files in {args.output}"
    )
    P.trace("augment")


if __name__ == "__main__":
    runner.run(main)
