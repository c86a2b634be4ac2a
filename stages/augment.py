"""Stage augment: the seed's ImageDataGenerator augmentation, applied to every source image.

Params: base.seed, augment.*. Input: the data folder (`data.dir`).
Outputs: a folder with each original (copy 0) and its augmented copies as PNG, an `index.csv`
(file, source, class, copy) and `classes.json`; a preview grid PNG of originals beside copies.
"""

import argparse
from pathlib import Path

from blastcell import augment, figures
from blastcell import params as P
from blastcell.data import (
    atomic_dir,
    atomic_file,
    list_all_idb,
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
    args = parser.parse_args(argv)
    params = P.load(args.params)
    listing = list_all_idb(args.input)

    rows, preview = [], {}
    with atomic_dir(args.output) as tmp:
        for out in augment.augment_dataset(listing, params.augment, params.base.seed):
            write_image(tmp / out.file, out.image)
            rows.append([out.file, out.source, listing.classes[out.label], out.copy])
            shown = {src for src, lab in preview if lab == out.label}
            if out.source in shown or len(shown) < PREVIEW_PER_CLASS:
                preview.setdefault((out.source, out.label), []).append(out.image)
        write_csv(tmp / "index.csv", ["file", "source", "class", "copy"], rows)
        write_json(tmp / "classes.json", list(listing.classes))

    titles = ["original"] + [f"copy {k}" for k in range(1, params.augment.copies + 1)]
    fig = figures.image_grid(
        list(preview.values()),
        [f"{src}\n{listing.classes[lab]}" for src, lab in preview],
        titles,
    )
    with atomic_file(args.preview) as tmp:
        figures.save(fig, tmp)
    P.trace("augment")


if __name__ == "__main__":
    main()
