"""The evaluate stage's report and confusion data."""

import numpy as np
import pytest

from blastcell import evaluation

CLASSES = ("not_blast", "blast")


def test_report_has_the_seeds_rows_with_hand_checked_values():
    y_true = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    y_pred = np.array([0, 0, 0, 1, 1, 1, 1, 1, 1, 0])
    report = evaluation.report(y_true, y_pred, CLASSES)
    assert report["accuracy"] == pytest.approx(0.8)
    assert report["blast"] == {
        "precision": 0.833333,
        "recall": 0.833333,
        "f1": 0.833333,
        "support": 6,
    }
    assert report["not_blast"]["precision"] == pytest.approx(0.75)
    assert report["not_blast"]["recall"] == pytest.approx(0.75)
    assert report["macro_avg"]["recall"] == pytest.approx((0.75 + 5 / 6) / 2, abs=1e-6)
    assert report["weighted_avg"]["support"] == 10


def test_a_class_never_predicted_scores_zero_not_an_error():
    report = evaluation.report(np.array([0, 1]), np.array([0, 0]), CLASSES)
    assert report["blast"]["precision"] == 0.0
    assert report["blast"]["support"] == 1


def test_confusion_counts_and_records_agree():
    y_true, y_pred = np.array([0, 0, 1, 1, 1]), np.array([0, 1, 1, 1, 0])
    counts = evaluation.confusion(y_true, y_pred, 2)
    assert counts.tolist() == [[1, 1], [1, 2]]
    records = evaluation.confusion_records(y_true, y_pred, CLASSES)
    assert records[1] == {"actual": "not_blast", "predicted": "blast"}
    assert sum(r == {"actual": "blast", "predicted": "blast"} for r in records) == 2
