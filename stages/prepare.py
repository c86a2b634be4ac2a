"""Stage prepare: split the augmented set into train / val / test and store TFRecord shards.

Params: base.seed (the split's seed, unless `--split-seed` gives another), prepare.*.
Input: the augment stage's folder. Output: the prepared folder (`blastcell.prepared`): each
split's shards of raw uint8 pixels resized to `prepare.image_size`, its table (file, source,
class) in record order, and `spec.json`. Images are read, resized and written one at a time,
so memory does not grow with the data set.
"""

from pathlib import Path

from blastcell import prepare, runner
from blastcell.runner import Output


def run(params, *, input: Path, output: Output, split_seed: int | None = None) -> str:
    """`--split-seed`: the seed of the split (default base.seed); cv/dvc.yaml sets it."""
    seed = params.base.seed if split_seed is None else split_seed
    counts, grouped = prepare.prepare(input, output, params.prepare, seed)
    if params.prepare.split == "random":
        by = "at random (the seed's leaky protocol)"
    else:
        by = "by group (copies found, data.group_by)" if grouped else "by source cell"
    images = ", ".join(f"{n} {name}" for name, n in counts.items())
    size = params.prepare.image_size
    return f"split {by} with seed {seed}: {images} images at {size} px in {output}"


if __name__ == "__main__":
    runner.main(run)
