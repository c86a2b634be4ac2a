"""Stage augment: read the input data set, then apply the seed's ImageDataGenerator augmentation.

Params: base.seed, data.*, augment.*.
Inputs: the data folder `data.dir` (read from params.yaml, never through the shell; `--input`
instead, for tests and one-off runs), ALL-IDB2's flat layout or one folder per class;
--copies, the copies stage's folder (`blastcell.copied`): the groups of source images that
show the same cells, joined into one group each, and the files to drop for label conflicts.
Outputs: --output, a folder with each source image (copy 0) and its augmented copies as PNG,
`index.csv` (file, source, class, copy; duplicates share a source) and `classes.json`
(`blastcell.augmented`); --preview, a grid PNG of the first sources of each class and their
copies; --manifest, every input file (path, class, size, checksums, skipped or converted and
why); --report, a JSON count of images per class, skipped files, duplicates and conversions;
--classes, a CSV plot of the images used and the files skipped per class.
`augment.workers` processes (0 = one per CPU core) augment and write; the outputs do not
depend on that number.
"""

from pathlib import Path

from blastcell import augment, copied, ingest, runner
from blastcell.files import atomic_file, write_csv, write_json
from blastcell.runner import Output


def run(
    params,
    *,
    copies: Path,
    output: Output,
    preview: Output,
    classes: Output,
    manifest: Output,
    report: Output,
    input: Path | None = None,
) -> str:
    """`--input`: the data folder, instead of `data.dir` (for tests and one-off runs)."""
    input = input or Path(params.data.dir)
    found = copied.read(copies)
    result = augment.augment(input, output, params.data, params.augment, params.base.seed, found)
    # Imported here: the workers re-run this script's imports, and need no matplotlib.
    from blastcell import figures

    with atomic_file(manifest) as tmp:
        write_csv(tmp, list(ingest.MANIFEST_COLUMNS), result.report.manifest())
    with atomic_file(preview) as tmp:
        figures.save(augment.preview(result), tmp)
    with atomic_file(classes) as tmp:
        write_csv(tmp, ["class", "images", "skipped"], result.report.per_class())
    counts = result.report.metrics()
    write_json(report, counts)
    dropped = f", {counts['dropped']} dropped" if "dropped" in counts else ""
    return (
        f"{counts['images']} images in {len(result.classes)} classes ({counts['skipped']} "
        f"skipped{dropped}, {counts['duplicates']} duplicates, {counts['converted']} converted), "
        f"{params.augment.copies} copies each: {result.files} files in {output}"
    )


if __name__ == "__main__":
    runner.main(run)
