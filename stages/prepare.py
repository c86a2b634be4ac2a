"""Stage prepare: split the augmented set into train / val / test and store uint8 arrays.

Params: base.seed, prepare.*. Input: the augment stage's folder.
Output folder: `{train,val,test}_x.npy` (N, S, S, 3) uint8 raw pixels, `{split}_y.npy` one-hot
uint8 labels, `{split}.csv` (file, source, class) in array order, and `classes.json`.
"""

import argparse
from pathlib import Path

import numpy as np

from blastcell import params as P
from blastcell import split
from blastcell.data import atomic_dir, read_csv, read_json, write_csv, write_json


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)
    params = P.load(args.params)
    cfg = params.prepare
    classes = read_json(args.input / "classes.json")
    index = {name: i for i, name in enumerate(classes)}
    records = [
        split.Record(r["file"], r["source"], index[r["class"]], int(r["copy"]))
        for r in read_csv(args.input / "index.csv")
    ]
    rng = np.random.default_rng(params.base.seed)
    if cfg.split == "source":
        parts = split.split_by_source(records, classes, cfg.test_fraction, cfg.val_fraction, rng)
    else:
        parts = split.split_random(records, rng)

    done: dict[tuple[split.Record, ...], tuple] = {}  # the random split's val is its test
    with atomic_dir(args.output) as tmp:
        for name, rows in parts.items():
            if tuple(rows) not in done:
                done[tuple(rows)] = split.arrays(rows, args.input, cfg.image_size, len(classes))
            split.save(tmp, name, *done[tuple(rows)])
            table = [[r.file, r.source, classes[r.label]] for r in rows]
            write_csv(tmp / f"{name}.csv", ["file", "source", "class"], table)
        write_json(tmp / "classes.json", classes)
    P.trace("prepare")


if __name__ == "__main__":
    main()
