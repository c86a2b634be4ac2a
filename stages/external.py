"""Stage external (one per set of `external` in params.yaml): the trained model on another data
set, e.g. another lab's, scored as evaluate scores the test split.

Params: external.<name> (the set's folder, read from params.yaml, never through the shell),
base.seed, data.on_bad_image, data.max_image_pixels, data.min_image_side, data.square (how
images are read, as copies and augment read data.dir), evaluate.*. Inputs: the data folder (any
layout the augment stage reads; its class names must be among the model's) and the trained
model with what it learned from beside it (`training_data.json`). Outputs: a JSON report like
evaluate's, and JSON metrics with its headline (accuracy and its interval, sensitivity,
specificity, ROC AUC, ECE), which `dvc metrics show` lists per set.
"""

from pathlib import Path

from blastcell import evaluate, external, runner
from blastcell.files import write_json
from blastcell.runner import Output


def run(
    params,
    *,
    model: Path,
    metrics: Output,
    report: Output,
    name: str | None = None,
    data: Path | None = None,
) -> str:
    """`--name`: the set's name in `external`, whose folder it reads from params.yaml (never
    through the shell); `--data`: a data folder instead (for tests and one-off runs)."""
    data = data or external.folder(params.external, name)
    full = external.evaluate_folder(data, model, params.data, params.evaluate, params.base.seed)
    write_json(report, full)
    write_json(metrics, evaluate.headline(full))
    return f"{data}: {evaluate.describe(full)}"


if __name__ == "__main__":
    runner.main(run)
