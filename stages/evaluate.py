"""Stage evaluate: score the trained model on the held-out test set.

Params: base.seed, evaluate.*. Inputs: the prepare stage's folder (test split, streamed), the
trained model. Outputs: a JSON report holding the seed's classification report and beside it
the sensitivity, specificity and classification error of the positive class (`blast`; macro
one-vs-rest for more than two classes), balanced accuracy, ROC AUC, average precision, bootstrap
95 % intervals and the expected calibration error; JSON metrics with its headline (accuracy
and its interval, sensitivity, specificity, ROC AUC, ECE), which DVC compares. As plots: the
confusion matrix as DVC `confusion` data and as PNGs (counts, rows normalised), ROC and
precision-recall points, and the reliability diagram (its bins as JSON and as a PNG).
"""

from pathlib import Path

from blastcell import evaluate, figures, runner
from blastcell.files import atomic_file, write_json
from blastcell.runner import Output, OutputFolder


def run(
    params, *, data: Path, model: Path, metrics: Output, report: Output, plots: OutputFolder
) -> str:
    result = evaluate.evaluate(data, model, params.evaluate, params.base.seed)
    for name, records in result.records.items():
        write_json(plots / f"{name}.json", records)
    for name, figure in result.figures.items():
        with atomic_file(plots / f"{name}.png") as tmp:
            figures.save(figure, tmp)
    write_json(report, result.report)
    write_json(metrics, evaluate.headline(result.report))
    return evaluate.describe(result.report)


if __name__ == "__main__":
    runner.main(run)
