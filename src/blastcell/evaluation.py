"""Score a trained model on the test set: the seed's classification report and confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import classification_report, confusion_matrix


def report(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str]) -> dict:
    """Precision, recall, f1 and support per class; accuracy; macro and weighted averages.

    Labels are class indices. Keys follow scikit-learn's report, with `f1` for `f1-score`
    and `macro_avg` / `weighted_avg` so that DVC shows them as plain columns.
    """
    raw = classification_report(
        y_true,
        y_pred,
        labels=list(range(len(classes))),
        target_names=list(classes),
        output_dict=True,
        zero_division=0,
    )
    out: dict = {"accuracy": round(float(np.mean(y_true == y_pred)), 6)}
    for name, key in [
        *((c, c) for c in classes),
        ("macro avg", "macro_avg"),
        ("weighted avg", "weighted_avg"),
    ]:
        row = raw[name]
        out[key] = {
            "precision": round(row["precision"], 6),
            "recall": round(row["recall"], 6),
            "f1": round(row["f1-score"], 6),
            "support": int(row["support"]),
        }
    return out


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts (n_classes, n_classes): rows are true classes, columns predicted ones."""
    return confusion_matrix(y_true, y_pred, labels=list(range(n_classes)))


def confusion_records(
    y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str]
) -> list[dict[str, str]]:
    """One {actual, predicted} record per image, the input of DVC's `confusion` template."""
    return [
        {"actual": classes[t], "predicted": classes[p]}
        for t, p in zip(y_true.tolist(), y_pred.tolist(), strict=True)
    ]
