"""Stage audit: the leakage audit, each test image's nearest training image.

Params: audit.*, and augment.fill_mode and augment.cval (the constant fill that augmentation
pads copies with is left out of the comparison). Input: the prepare stage's folder (the test and
train shards, streamed, and the tables that name each image and its source cell).
Outputs: a JSON report (test images; near-duplicates, those whose nearest training image is
closer than `audit.threshold`, as a count and a fraction; the threshold; the median nearest
distance; and from the tables, the ground truth on our own data: test images whose nearest
training image, or any training image, comes from the same source cell), JSON metrics with the
number of near-duplicates, and a CSV (a DVC plot) with one row per test image: test file,
nearest training file, distance, near_duplicate, same_source.
"""

from pathlib import Path

from blastcell import audit, runner
from blastcell.files import atomic_file, write_csv, write_json


def run(params, *, data: Path, metrics: Path, report: Path, nearest: Path) -> str:
    result = audit.audit(data, params.audit, params.augment)
    with atomic_file(nearest) as tmp:
        write_csv(tmp, audit.NEAREST_COLUMNS, result.rows)
    write_json(report, result.report)
    write_json(metrics, {"near_duplicates": result.report["near_duplicates"]})
    return result.summary()


if __name__ == "__main__":
    runner.main(run)
