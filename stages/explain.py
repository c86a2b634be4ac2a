"""Stage explain: show what the model gets wrong on the test set and where it looks.

Params: explain.*. Inputs: the prepare stage's folder (test split, streamed, and its table for
the file names), the trained model. Output folder of PNGs: `misclassified.png` (every
misclassified test image up to `explain.max_misclassified`, in test order, titled with its file,
true class, predicted class and probability) and `gradcam.png` (a row per class: its first
`explain.per_class` test images and their Grad-CAM heat maps for the predicted class).
"""

from pathlib import Path

from blastcell import explain, figures, runner
from blastcell.files import atomic_dir
from blastcell.runner import Output


def run(params, *, data: Path, model: Path, plots: Output) -> str:
    result = explain.explain(data, model, params.explain)
    with atomic_dir(plots) as tmp:
        figures.save(result.misclassified, tmp / "misclassified.png")
        figures.save(result.gradcam, tmp / "gradcam.png")
    return result.summary


if __name__ == "__main__":
    runner.main(run)
