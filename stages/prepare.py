"""Stage prepare: split the augmented set into train / val / test and store TFRecord shards.

Params: base.seed (the split's seed, unless `--split-seed` gives another), prepare.*. Input: the
augment stage's folder.
Output folder: `{train,val,test}-NNNNN-of-NNNNN.tfrecord` shards (raw uint8 pixels resized to
`prepare.image_size`, and class index), `{split}.csv` (file, source, class) in record order, and
`spec.json` (image size, class names, images per split). Images are read, resized and written one
at a time, so memory does not grow with the data set.
"""

import argparse
import shutil
from pathlib import Path

import numpy as np

from blastcell import params as P
from blastcell import progress, runner, shards, split
from blastcell.data import atomic_dir, read_csv, read_json, write_csv


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument(
        "--split-seed",
        type=int,
        default=None,
        help="seed of the split (default: base.seed); the repeated splits of cv/dvc.yaml set it",
    )
    args = parser.parse_args(argv)
    if args.split_seed is not None and args.split_seed < 0:
        parser.error(f"--split-seed must be an integer >= 0, got {args.split_seed}")
    params = P.load(args.params)
    cfg = params.prepare
    classes = read_json(args.input / "classes.json")
    index = {name: i for i, name in enumerate(classes)}
    records = [
        split.Record(r["file"], r["source"], index[r["class"]], int(r["copy"]))
        for r in read_csv(args.input / "index.csv")
    ]
    seed = params.base.seed if args.split_seed is None else args.split_seed
    rng = np.random.default_rng(seed)
    if cfg.split == "source":
        parts = split.split_by_source(records, classes, cfg.test_fraction, cfg.val_fraction, rng)
    else:
        parts = split.split_random(records, rng)

    written: dict[tuple[split.Record, ...], list[Path]] = {}  # the random split's val is its test
    total = sum(len(rows) for rows in {tuple(rows) for rows in parts.values()})  # images to write
    with atomic_dir(args.output) as tmp, progress.bar(total, "prepare") as bar:
        for name, rows in parts.items():
            paths = shards.shard_paths(tmp, name, len(rows), cfg.shard_size)
            if tuple(rows) in written:
                for src, dst in zip(written[tuple(rows)], paths, strict=True):
                    shutil.copyfile(src, dst)
            else:
                examples = split.examples(rows, args.input, cfg.image_size)
                examples = progress.counted(examples, bar)
                written[tuple(rows)] = shards.write(tmp, name, examples, len(rows), cfg.shard_size)
            table = [[r.file, r.source, classes[r.label]] for r in rows]
            write_csv(tmp / f"{name}.csv", ["file", "source", "class"], table)
        counts = {name: len(rows) for name, rows in parts.items()}
        shards.write_spec(tmp, cfg.image_size, classes, counts)
    by = "by source cell" if cfg.split == "source" else "at random (the seed's leaky protocol)"
    print(
        f"prepare: split {by} with seed {seed}: "
        + ", ".join(f"{n} {name}" for name, n in counts.items())
        + f" images at {cfg.image_size} px in {args.output}"
    )
    P.trace("prepare")


if __name__ == "__main__":
    runner.run(main)
