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

import argparse
from pathlib import Path

import numpy as np

from blastcell import evaluation, figures, progress, runner, shards
from blastcell import params as P
from blastcell.data import atomic_file, write_json
from blastcell.tf import keras


def predict(model: keras.Model, data: Path, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """True labels and softmax probabilities of the test split, streamed one batch at a time."""
    labels, probs = [], []
    for x, y in shards.iterate(data, "test", batch_size):
        labels.append(y)
        probs.append(np.asarray(model.predict_on_batch(x), dtype=np.float64))
    return np.concatenate(labels), np.concatenate(probs)


def metrics(
    y_true: np.ndarray, probs: np.ndarray, classes: list[str], ece: float, params: P.Params
) -> dict:
    """The full report; the seed's report keys come first."""
    y_pred = np.argmax(probs, axis=1)
    out = {
        **evaluation.report(y_true, y_pred, classes),
        "test_images": len(y_true),
        **evaluation.scores(y_true, probs, classes),
    }
    out["ece"] = round(ece, 6) if np.isfinite(ece) else None
    resamples, seed = params.evaluate.bootstrap, params.base.seed
    if resamples:
        with progress.bar(resamples, "evaluate: bootstrap", unit="resample") as bar:
            out.update(
                evaluation.bootstrap(y_true, probs, classes, resamples, seed, progress=bar.update)
            )
    return out


def summary(m: dict) -> str:
    """One line for the stage log: accuracy with its interval, the positive class's rates."""

    def num(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    ci = m.get("ci95", {})

    def interval(name: str) -> str:
        if name not in ci:
            return ""
        return f" (95 % CI {num(ci[name]['low'])}-{num(ci[name]['high'])})"

    who = m["positive_class"] or "macro one-vs-rest"
    return (
        f"evaluate: accuracy {num(m['accuracy'])}{interval('accuracy')} on {m['test_images']} "
        f"test images; {who} sensitivity {num(m['sensitivity'])}, specificity "
        f"{num(m['specificity'])}; ROC AUC {num(m['roc_auc'])}; ECE {num(m['ece'])}"
    )


def write_plots(
    folder: Path,
    y_true: np.ndarray,
    probs: np.ndarray,
    classes: list[str],
    counts: np.ndarray,
    calibration: tuple[float, list[dict]],
    n_bins: int,
) -> None:
    """The confusion (`counts`), ROC, precision-recall and calibration plots of the test set;
    `calibration` is the ECE and bins `evaluation.calibration` returned for `n_bins` bins."""
    y_pred = np.argmax(probs, axis=1)
    write_json(folder / "confusion.json", evaluation.confusion_records(y_true, y_pred, classes))
    for name, normalise in [("confusion_matrix", False), ("confusion_matrix_normalised", True)]:
        with atomic_file(folder / f"{name}.png") as tmp:
            figures.save(figures.confusion_matrix(counts, classes, normalise=normalise), tmp)
    write_json(folder / "roc.json", evaluation.roc_records(y_true, probs, classes))
    write_json(
        folder / "precision_recall.json",
        evaluation.precision_recall_records(y_true, probs, classes),
    )
    ece, bins = calibration
    write_json(folder / "reliability.json", bins)
    with atomic_file(folder / "reliability.png") as tmp:
        figures.save(figures.reliability_diagram(bins, n_bins, ece), tmp)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--plots", type=Path, required=True)
    args = parser.parse_args(argv)
    params = P.load(args.params)

    classes = shards.read_spec(args.data).classes
    model = keras.models.load_model(args.model, safe_mode=True)
    y_true, probs = predict(model, args.data, params.evaluate.batch_size)
    probs = evaluation.normalise(probs)

    n_bins = params.evaluate.calibration_bins
    calibration = evaluation.calibration(y_true, probs, n_bins)
    counts = evaluation.confusion(y_true, np.argmax(probs, axis=1), len(classes))
    result = metrics(y_true, probs, classes, calibration[0], params)
    write_plots(args.plots, y_true, probs, classes, counts, calibration, n_bins)
    write_json(args.report, result)
    write_json(args.metrics, evaluation.headline(result))
    print(summary(result))
    P.trace("evaluate")


if __name__ == "__main__":
    runner.run(main)
