"""Stage audit: the leakage audit, which test images are copies of a training image.

Params: audit.*; augment.fill_mode and augment.cval (the fill, left out of the comparison);
augment.zoom_range, augment.shear_range, augment.horizontal_flip and augment.vertical_flip (the
transforms a copy can have undergone).
Inputs: the prepare stage's folder (the test and train shards, streamed, and the tables that name
each image and its source cell); the copies stage's folder, for the overlay burned into the data
set's images (a scale bar, text), where no keypoint is taken.
Outputs: a JSON report (test images; near-duplicates, those with a training image among their
`audit.candidates` nearest in colour whose keypoints agree with one affine map, at least
`audit.min_inliers` pairs and `audit.min_inlier_ratio` of them, as a count and a fraction; those
params; the median colour distance to the nearest training image and the median best inlier count;
test images with too few keypoints to verify, fewer than `audit.min_inliers`, as nearly blank ones
have; and from the tables, the ground truth on our own data: test images whose best match, or any
training image, comes from the same source cell), JSON metrics with the number of near-duplicates,
and a CSV (a DVC plot) with one row per test image: test file, its best match in training (verified
first, then the most inliers, then the nearest in colour), their colour distance, inliers, inlier
ratio, near_duplicate, same_source.
"""

from pathlib import Path

from blastcell import audit, copied, runner
from blastcell.files import atomic_file, write_csv, write_json
from blastcell.runner import Output


def run(
    params, *, data: Path, copies: Path, metrics: Output, report: Output, nearest: Output
) -> str:
    overlay = copied.read(copies).overlay
    result = audit.audit(data, params.audit, params.augment, overlay)
    with atomic_file(nearest) as tmp:
        write_csv(tmp, audit.NEAREST_COLUMNS, result.rows)
    write_json(report, result.report)
    write_json(metrics, {"near_duplicates": result.report["near_duplicates"]})
    return result.summary()


if __name__ == "__main__":
    runner.main(run)
