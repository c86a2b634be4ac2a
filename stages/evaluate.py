"""Stage evaluate: score the trained model on the held-out test set.

Params: evaluate.*. Inputs: the prepare stage's folder (test split, streamed), the trained model.
Outputs: the seed's classification report as JSON metrics; the confusion matrix as DVC
`confusion` plot data (one {actual, predicted} record per image) and as a PNG.
"""

import argparse
from pathlib import Path

import keras
import numpy as np

from blastcell import evaluation, figures, shards
from blastcell import params as P
from blastcell.data import atomic_file, write_json


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--plots", type=Path, required=True)
    args = parser.parse_args(argv)
    params = P.load(args.params)

    spec = shards.read_spec(args.data)
    classes = spec.classes
    model = keras.models.load_model(args.model, safe_mode=True)
    labels, probs = [], []
    # streamed: memory holds one batch of images at a time
    for x, y in shards.iterate(args.data, "test", params.evaluate.batch_size):
        labels.append(y)
        probs.append(np.asarray(model.predict_on_batch(x)))
    y_true, y_pred = np.concatenate(labels), np.argmax(np.concatenate(probs), axis=1)

    report = evaluation.report(y_true, y_pred, classes)
    counts = evaluation.confusion(y_true, y_pred, len(classes))
    print(f"evaluate: accuracy {report['accuracy']:.4f} on {len(y_true)} test images")
    print(counts)

    write_json(
        args.plots / "confusion.json", evaluation.confusion_records(y_true, y_pred, classes)
    )
    with atomic_file(args.plots / "confusion_matrix.png") as tmp:
        figures.save(figures.confusion_matrix(counts, classes), tmp)
    write_json(args.metrics, {**report, "test_images": len(y_true)})
    P.trace("evaluate")


if __name__ == "__main__":
    main()
