"""Stage copies: find the source images that show the same cells, before any split.

Params: data.dir, data.on_bad_image, data.max_image_pixels, data.min_image_side, data.square
(the images are read as augment reads them), copies.*.
Input: the data folder `data.dir` (read from params.yaml, never through the shell; `--input`
instead, for tests and one-off runs).
Outputs: --output, the copies folder (`blastcell.copied`: each image in a group of copies, its
group and whether it is kept, and the mask of the overlay burned into the data set's images),
which augment and the audit read; --metrics, the groups of copies (a DVC metric); --report, the
counts (sources, groups, images in them, label conflicts, files dropped, pairs verified) and
every group with its files and what made them copies (identical pixels, or the keypoint pairs
that agree and the map: turn, scale, shift, flip); --gallery, a PNG of the overlay mask and the
pairs a person should check first.
"""

from pathlib import Path

from blastcell import copied, copies, runner
from blastcell.files import atomic_dir, atomic_file, write_json
from blastcell.runner import Output


def run(
    params,
    *,
    output: Output,
    metrics: Output,
    report: Output,
    gallery: Output,
    input: Path | None = None,
) -> str:
    """`--input`: the data folder, instead of `data.dir` (for tests and one-off runs)."""
    input = input or Path(params.data.dir)
    result = copies.find(input, params.data, params.copies)
    # Imported here: the workers re-run this script's imports, and need no matplotlib.
    from blastcell import figures

    with atomic_dir(output) as tmp:
        copied.write(tmp, result.members(), result.overlay)
    with atomic_file(gallery) as tmp:
        figures.save(copies.gallery(result, input, params.data), tmp)
    write_json(report, result.report())
    write_json(metrics, result.metrics())
    return result.summary()


if __name__ == "__main__":
    runner.main(run)
