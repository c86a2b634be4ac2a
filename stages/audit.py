"""Stage audit: the leakage audit, each test image's nearest training image.

Params: audit.*, and augment.fill_mode and augment.cval (the constant fill that augmentation
pads copies with is left out of the comparison). Input: the prepare stage's folder (the test and
train shards, streamed, and the CSVs that name each image and its source cell).
Outputs: a JSON report (test images; near-duplicates, those whose nearest training image is
closer than `audit.threshold`, as a count and a fraction; the threshold; the median nearest
distance; and from the CSVs, the ground truth on our own data: test images whose nearest
training image, or any training image, comes from the same source cell), JSON metrics with the
number of near-duplicates, and a CSV (a DVC plot) with one row per test image: test file,
nearest training file, distance, near_duplicate, same_source.
"""

import argparse
from pathlib import Path

import numpy as np

from blastcell import audit, runner
from blastcell import params as P
from blastcell.data import DataError, atomic_file, read_csv, write_csv, write_json


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--nearest", type=Path, required=True)
    args = parser.parse_args(argv)
    params = P.load(args.params)
    cfg = params.audit

    test, train = (read_csv(args.data / f"{name}.csv") for name in ("test", "train"))
    if not train:
        raise DataError(f"{args.data / 'train.csv'} lists no images: nothing to compare with")
    padding = params.augment
    fill = (padding.cval,) * 3 if padding.fill_mode == "constant" else None
    found = audit.nearest_training(args.data, cfg.bins, cfg.batch_size, fill)
    if len(found.index) != len(test):
        raise DataError(
            f"{args.data}: the test shards hold {len(found.index)} images, test.csv lists "
            f"{len(test)}; rerun the prepare stage"
        )

    train_sources = {row["source"] for row in train}
    rows, flagged, same_nearest = [], 0, 0
    for row, i, d in zip(test, found.index, found.distance, strict=True):
        match = train[i]
        near, same = bool(d < cfg.threshold), match["source"] == row["source"]
        flagged += near
        same_nearest += same
        rows.append([row["file"], match["file"], f"{d:.6f}", str(near).lower(), str(same).lower()])
    header = ["test_file", "train_file", "distance", "near_duplicate", "same_source"]
    with atomic_file(args.nearest) as tmp:
        write_csv(tmp, header, rows)

    n = len(test)
    metrics = {
        "test_images": n,
        "near_duplicates": flagged,
        "near_duplicate_fraction": round(flagged / n, 6) if n else 0.0,
        "threshold": cfg.threshold,
        "median_distance": round(float(np.median(found.distance)), 6) if n else None,
        "nearest_same_source": same_nearest,
        "source_in_train": sum(row["source"] in train_sources for row in test),
    }
    write_json(args.report, metrics)
    write_json(args.metrics, {"near_duplicates": flagged})
    print(
        f"audit: {flagged} of {n} test images have a near-duplicate in training (distance < "
        f"{cfg.threshold}); the sources say {metrics['source_in_train']} share a cell with it"
    )
    P.trace("audit")


if __name__ == "__main__":
    runner.run(main)
