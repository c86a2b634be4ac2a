"""Measure: how far augmented copies of a cell lie from each other, and from other cells, by the
leakage audit's distance. The evidence behind the default `audit.threshold`.

    python bench/audit_distances.py [--input data/augmented] [--params params.yaml] [--splits 20]

Reads the augment stage's folder (every original and its copies, `index.csv` naming each one's
source), resizes every image to `prepare.image_size` as prepare does, and describes it as the
audit does (`audit.bins`, leaving out the constant fill). Prints quantiles of
- each image's nearest copy of the same cell, and its nearest other cell, over the whole set;
- the nearest training image of each test image over `--splits` seeds of the seed's random
  split (nearly every test image has copies in training) and of the source split (none has);
and, for a few thresholds, how many leaked test images are flagged and how many test images
are flagged though their nearest training image is another cell. It asserts nothing.
"""

import argparse
from pathlib import Path

import numpy as np

from blastcell import audit, split
from blastcell import params as P
from blastcell.data import read_csv, read_image, read_json

QUANTILES = (0, 0.01, 0.05, 0.5, 0.95, 0.99, 1)


def quantiles(values: np.ndarray) -> str:
    return " ".join(f"{v:.4f}" for v in np.quantile(values, QUANTILES))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=Path("data/augmented"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--splits", type=int, default=20)
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.04, 0.05, 0.06, 0.07])
    args = parser.parse_args()
    params = P.load(args.params)
    size, bins = params.prepare.image_size, params.audit.bins
    fill = (params.augment.cval,) * 3 if params.augment.fill_mode == "constant" else None
    fractions = (params.prepare.test_fraction, params.prepare.val_fraction)

    rows = read_csv(args.input / "index.csv")
    classes = read_json(args.input / "classes.json")
    images = np.stack([split.resize(read_image(args.input / r["file"]), size) for r in rows])
    x = audit.descriptors(images, bins, fill)
    distance = 1 - (x @ x.T).toarray()
    np.fill_diagonal(distance, np.inf)
    source = np.array([r["source"] for r in rows])
    same = source[:, None] == source[None, :]
    print(f"{len(rows)} images of {args.input} at {size} px, audit.bins {bins}, fill {fill}")
    print(f"quantiles {list(QUANTILES)}")
    print(f"nearest copy of the same cell: {quantiles(np.where(same, distance, np.inf).min(1))}")
    print(f"nearest other cell:            {quantiles(np.where(~same, distance, np.inf).min(1))}")

    records = [
        split.Record(r["file"], r["source"], classes.index(r["class"]), int(r["copy"]))
        for r in rows
    ]
    for how in ("random", "source"):
        found, same_cell, leaked = [], [], []
        for seed in range(1, args.splits + 1):
            rng = np.random.default_rng(seed)
            parts = (
                split.split_random(records, rng)
                if how == "random"
                else split.split_by_source(records, classes, *fractions, rng)
            )
            index = {r.file: i for i, r in enumerate(records)}
            test = np.array([index[r.file] for r in parts["test"]])
            train = np.array([index[r.file] for r in parts["train"]])
            block = distance[np.ix_(test, train)]
            nearest = train[block.argmin(1)]
            found.append(block.min(1))
            same_cell.append(source[test] == source[nearest])
            leaked.append(np.isin(source[test], source[train]))
        d, s, leak = (np.concatenate(v) for v in (found, same_cell, leaked))
        print(
            f"\n{how} split, {args.splits} seeds: {len(d)} test images, {leak.sum()} with copies "
            f"in training, {s.sum()} whose nearest training image is the same cell"
        )
        if s.any():
            print(f"  nearest, same cell:  {quantiles(d[s])}")
        if (~s).any():
            print(f"  nearest, other cell: {quantiles(d[~s])}")
        for t in args.thresholds:
            print(
                f"  threshold {t}: {np.sum(leak & (d < t))} of {leak.sum()} leaked flagged, "
                f"{np.sum(~s & (d < t))} flagged whose nearest is another cell"
            )


if __name__ == "__main__":
    main()
