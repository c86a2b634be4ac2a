"""The external stage: the trained model on another data set, e.g. another lab's, scored as the
evaluate stage scores the test split (`blastcell.evaluate`).

The folder is read as the augment stage reads `data.dir` (any layout; `data.*` decides decoding,
limits and squaring); its class names must be among the model's, in any order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from blastcell import evaluate, images, ingest, model, progress
from blastcell.files import DataError
from blastcell.params import DataParams, EvaluateParams
from blastcell.tf import keras


def folder(sets: Mapping[str, str], name: str | None) -> Path:
    """The data folder of the external set `name` (params.yaml's `external`)."""
    if name is None:
        raise DataError("external: give --name (a set of params.yaml's 'external') or --data")
    if name not in sets:
        raise DataError(f"external: no set '{name}' in params.yaml's 'external': {sorted(sets)}")
    return Path(sets[name])


def _scored_folder(
    folder: Path, net: keras.Model, classes: Sequence[str], data: DataParams, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """True labels (in `classes`' order) and probabilities of every image of a data folder."""
    listing = ingest.list_dataset(folder)
    unknown = [name for name in listing.classes if name not in classes]
    if unknown:
        raise DataError(
            f"{folder}: class '{unknown[0]}' is not one the model was trained on: {list(classes)}"
        )
    label = [list(classes).index(name) for name in listing.classes]
    size = int(net.input_shape[1])
    labels, probs, batch = [], [], []

    def flush() -> None:
        if batch:
            x = np.stack([pixels for pixels, _ in batch]).astype(np.float32)
            probs.append(np.asarray(net.predict_on_batch(x), dtype=np.float64))
            labels.extend(y for _, y in batch)
            batch.clear()

    report = ingest.Report(listing.classes)
    with progress.bar(len(listing.items), "external") as bar:
        for img in ingest.load(listing, report, data, grouped=False):  # no split: no groups
            batch.append((images.resize(img.pixels, size), label[img.item.label]))
            bar.update(1)
            if len(batch) == batch_size:
                flush()
        flush()
    if not labels:
        raise DataError(f"{folder}: no image could be used")
    return np.array(labels), np.concatenate(probs)


def evaluate_folder(
    folder: Path, model_path: Path, data: DataParams, params: EvaluateParams, seed: int
) -> dict:
    """The full report (as `evaluate` writes it) of the model at `model_path` on every image
    of the data folder `folder`, read as the augment stage reads data.dir; its class names
    must be among the model's."""
    learned = model.training_data(model_path)
    if learned is None:
        raise DataError(
            f"{model_path.with_name(model.TRAINING_DATA)} is missing: retrain the model "
            "(the train stage writes it)"
        )
    net = model.load(model_path, n_classes=len(learned.classes))
    y_true, probs = _scored_folder(folder, net, learned.classes, data, params.batch_size)
    probs = evaluate.normalise(probs)
    ece, _ = evaluate.calibration(y_true, probs, params.calibration_bins)
    return evaluate.full_report(y_true, probs, learned.classes, ece, params.bootstrap, seed)
