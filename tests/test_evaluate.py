"""The evaluate stage's metrics: the seed's report and confusion data; sensitivity, specificity,
AUC and AP; bootstrap intervals; calibration; curves; and the stage end to end on a tiny model."""

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import stage, write_params
from sklearn.metrics import average_precision_score, balanced_accuracy_score, roc_auc_score

from blastcell import evaluate

ROOT = Path(__file__).resolve().parents[1]

CLASSES = ("not_blast", "blast")


def test_report_has_the_seeds_rows_with_hand_checked_values():
    y_true = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    y_pred = np.array([0, 0, 0, 1, 1, 1, 1, 1, 1, 0])
    report = evaluate.report(y_true, y_pred, CLASSES)
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
    report = evaluate.report(np.array([0, 1]), np.array([0, 0]), CLASSES)
    assert report["blast"]["precision"] == 0.0
    assert report["blast"]["support"] == 1


def test_confusion_counts_and_records_agree():
    y_true, y_pred = np.array([0, 0, 1, 1, 1]), np.array([0, 1, 1, 1, 0])
    counts = evaluate.confusion(y_true, y_pred, 2)
    assert counts.tolist() == [[1, 1], [1, 2]]
    records = evaluate.confusion_records(y_true, y_pred, CLASSES)
    assert records[1] == {"actual": "not_blast", "predicted": "blast"}
    assert sum(r == {"actual": "blast", "predicted": "blast"} for r in records) == 2


# --- sensitivity, specificity, AUC, AP -------------------------------------------------------


def probs_for(y_pred: np.ndarray, n_classes: int = 2, confidence: float = 0.8) -> np.ndarray:
    """Softmax-like rows that predict `y_pred` with the given confidence."""
    probs = np.full((len(y_pred), n_classes), (1 - confidence) / (n_classes - 1))
    probs[np.arange(len(y_pred)), y_pred] = confidence
    return probs


def test_sensitivity_and_specificity_of_blast_by_hand():
    # 6 blasts of which 5 found, 4 not-blasts of which 3 kept: sens 5/6, spec 3/4
    y_true = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    y_pred = np.array([0, 0, 0, 1, 1, 1, 1, 1, 1, 0])
    s = evaluate.scores(y_true, probs_for(y_pred), CLASSES)
    assert s["positive_class"] == "blast"
    assert s["sensitivity"] == pytest.approx(5 / 6, abs=1e-6)
    assert s["specificity"] == pytest.approx(3 / 4)
    assert s["classification_error"] == pytest.approx(0.2)
    assert s["balanced_accuracy"] == pytest.approx((5 / 6 + 3 / 4) / 2, abs=1e-6)
    assert "one_vs_rest" not in s


def test_blast_is_positive_wherever_it_stands_else_the_second_class():
    assert evaluate.positive_index(["blast", "other"]) == 0
    assert evaluate.positive_index(["healthy", "sick"]) == 1
    assert evaluate.positive_index(["a", "b", "c"]) is None
    # classes (blast, other): blast is index 0, so the rates swap
    y_true, y_pred = np.array([0, 0, 1, 1, 1]), np.array([0, 1, 1, 1, 1])
    s = evaluate.scores(y_true, probs_for(y_pred), ["blast", "other"])
    assert s["positive_class"] == "blast"
    assert (s["sensitivity"], s["specificity"]) == (0.5, 1.0)


def test_auc_and_average_precision_match_known_values():
    # scikit-learn's documented example: AUC 0.75, AP 0.8333
    y_true = np.array([0, 0, 1, 1])
    p_blast = np.array([0.1, 0.4, 0.35, 0.8])
    s = evaluate.scores(y_true, np.stack([1 - p_blast, p_blast], axis=1), CLASSES)
    assert s["roc_auc"] == pytest.approx(0.75)
    assert s["average_precision"] == pytest.approx(0.833333, abs=1e-6)


def test_a_class_missing_from_the_test_set_gives_null_not_an_error():
    y_true = np.zeros(4, dtype=int)
    s = evaluate.scores(y_true, probs_for(np.array([0, 0, 1, 0])), CLASSES)
    assert s["sensitivity"] is None
    assert s["roc_auc"] is None
    assert s["balanced_accuracy"] is None
    assert s["specificity"] == 0.75
    assert evaluate.roc_records(y_true, probs_for(y_true), CLASSES) == []


def test_rank_auc_agrees_with_scikit_learn_including_ties():
    rng = np.random.default_rng(1)
    score = rng.integers(0, 5, (20, 30)) / 4  # many ties
    labels = rng.random((20, 30)) < 0.4
    expected = [roc_auc_score(y, s) for y, s in zip(labels, score, strict=True)]
    assert evaluate._rank_auc(score, labels) == pytest.approx(expected)


def test_three_classes_give_one_vs_rest_values_and_macro_averages():
    rng = np.random.default_rng(2)
    y_true = np.repeat([0, 1, 2], 10)
    logits = rng.normal(size=(30, 3)) + 1.5 * np.eye(3)[y_true]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    classes = ["Early", "Pre", "Pro"]
    s = evaluate.scores(y_true, probs, classes)
    assert s["positive_class"] is None
    assert list(s["one_vs_rest"]) == classes
    assert set(s["one_vs_rest"]["Pre"]) == {
        "sensitivity",
        "specificity",
        "roc_auc",
        "average_precision",
    }
    assert s["roc_auc"] == pytest.approx(roc_auc_score(y_true, probs, multi_class="ovr"), abs=1e-6)
    one_hot = np.eye(3)[y_true]
    assert s["average_precision"] == pytest.approx(
        average_precision_score(one_hot, probs), abs=1e-6
    )
    y_pred = probs.argmax(axis=1)
    assert s["sensitivity"] == pytest.approx(balanced_accuracy_score(y_true, y_pred), abs=1e-6)
    assert s["one_vs_rest"]["Early"]["sensitivity"] == pytest.approx(
        np.mean(y_pred[y_true == 0] == 0), abs=1e-6
    )
    assert s["one_vs_rest"]["Early"]["specificity"] == pytest.approx(
        np.mean(y_pred[y_true != 0] != 0), abs=1e-6
    )
    roc = evaluate.roc_records(y_true, probs, classes)
    assert {r["class"] for r in roc} == set(classes)
    ci = evaluate.bootstrap(y_true, probs, classes, 200, seed=0)
    assert set(ci["ci95"]) == set(evaluate.CI_METRICS)
    assert ci["ci95"]["roc_auc"]["low"] <= s["roc_auc"] <= ci["ci95"]["roc_auc"]["high"]


def test_curves_run_from_corner_to_corner_in_drawing_order_and_are_strict_json():
    y_true = np.array([0, 0, 0, 1, 1, 1, 0, 1])
    p_blast = np.array([0.1, 0.3, 0.3, 0.3, 0.6, 0.9, 0.7, 0.2])
    probs = np.stack([1 - p_blast, p_blast], axis=1)
    roc = evaluate.roc_records(y_true, probs, CLASSES)
    assert roc[0] == {"class": "blast", "fpr": 0.0, "tpr": 0.0, "threshold": None}
    assert (roc[-1]["fpr"], roc[-1]["tpr"]) == (1.0, 1.0)
    assert np.all(np.diff([r["fpr"] for r in roc]) >= 0)
    assert np.all(np.diff([r["tpr"] for r in roc]) >= 0)
    pr = evaluate.precision_recall_records(y_true, probs, CLASSES)
    assert pr[0] == {"class": "blast", "recall": 0.0, "precision": 1.0, "threshold": None}
    assert pr[-1]["recall"] == 1.0
    assert np.all(np.diff([r["recall"] for r in pr]) >= 0)
    json.dumps([roc, pr], allow_nan=False)


# --- bootstrap confidence intervals -----------------------------------------------------------


def noisy_binary(n: int, accuracy: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n balanced test images; in each class a fraction `accuracy` of them predicted right."""
    rng = np.random.default_rng(seed)
    y_true = np.arange(n) % 2
    right = np.ones(n, dtype=bool)
    for c in (0, 1):
        members = np.flatnonzero(y_true == c)
        right[rng.choice(members, round(len(members) * (1 - accuracy)), replace=False)] = False
    p_blast = np.where(right == (y_true == 1), 0.5 + rng.random(n) / 2, rng.random(n) / 2)
    return y_true, np.stack([1 - p_blast, p_blast], axis=1)


def test_bootstrap_intervals_hold_the_estimate_and_are_seeded():
    y_true, probs = noisy_binary(52, 0.9, seed=3)
    point = {
        **evaluate.report(y_true, probs.argmax(1), CLASSES),
        **evaluate.scores(y_true, probs, CLASSES),
    }
    first = evaluate.bootstrap(y_true, probs, CLASSES, 500, seed=42)
    for name in evaluate.CI_METRICS:
        ci = first["ci95"][name]
        assert ci["low"] <= point[name] <= ci["high"], name
        assert ci["low"] < ci["high"], name
    assert first["bootstrap"] == {
        "resamples": 500,
        "valid": dict.fromkeys(evaluate.CI_METRICS, 500),
    }
    assert evaluate.bootstrap(y_true, probs, CLASSES, 500, seed=42) == first
    assert evaluate.bootstrap(y_true, probs, CLASSES, 500, seed=7) != first
    # chunking the resamples changes neither the count nor the validity of the intervals
    small = evaluate.bootstrap(y_true, probs, CLASSES, 500, seed=42, max_elements=520)
    assert small["bootstrap"] == first["bootstrap"]


def test_bootstrap_intervals_narrow_with_more_test_images():
    def width(n: int) -> float:
        y_true, probs = noisy_binary(n, 0.85, seed=4)
        ci = evaluate.bootstrap(y_true, probs, CLASSES, 400, seed=0)["ci95"]["accuracy"]
        return ci["high"] - ci["low"]

    assert width(500) < width(50) / 2


def test_bootstrap_skips_resamples_where_a_metric_is_undefined():
    # one blast in five: about (4/5)^5 = 33 % of resamples draw no blast
    y_true = np.array([0, 0, 0, 0, 1])
    out = evaluate.bootstrap(y_true, probs_for(np.array([0, 1, 0, 0, 1])), CLASSES, 1000, 0)
    valid = out["bootstrap"]["valid"]
    assert valid["accuracy"] == valid["specificity"] == 1000
    assert 550 < valid["sensitivity"] < 800
    assert valid["roc_auc"] == valid["balanced_accuracy"] == valid["sensitivity"]
    assert out["ci95"]["sensitivity"] == {"low": 1.0, "high": 1.0}
    # no blast at all: no interval, and no error
    none = evaluate.bootstrap(np.zeros(4, int), probs_for(np.zeros(4, int)), CLASSES, 50, 0)
    assert none["bootstrap"]["valid"]["sensitivity"] == 0
    assert none["ci95"]["sensitivity"] == {"low": None, "high": None}


# --- calibration -------------------------------------------------------------------------------


def test_ece_of_a_calibrated_model_is_zero_and_of_an_overconfident_one_large():
    # confidence 0.75 on 8 images of which 6 right, 0.95 on 20 of which 19 right
    y_pred = np.array([1] * 8 + [0] * 20)
    y_true = np.array([1] * 6 + [0] * 2 + [0] * 19 + [1])
    probs = np.vstack([probs_for(y_pred[:8], confidence=0.75), probs_for(y_pred[8:], 2, 0.95)])
    ece, bins = evaluate.calibration(y_true, probs, 10)
    assert ece == pytest.approx(0, abs=1e-9)
    assert [(b["bin_low"], b["images"], b["accuracy"]) for b in bins] == [
        (0.7, 8, 0.75),
        (0.9, 20, 0.95),
    ]
    overconfident = probs_for(np.array([0, 1] * 10), confidence=0.99)
    ece, _ = evaluate.calibration(np.zeros(20, int), overconfident, 10)
    assert ece == pytest.approx(0.49)


def test_confidence_on_a_bin_edge_falls_in_the_lower_bin():
    _, bins = evaluate.calibration(np.array([0]), np.array([[0.8, 0.2]]), 10)
    assert (bins[0]["bin_low"], bins[0]["bin_high"]) == (0.7, 0.8)


# --- the stage, end to end ---------------------------------------------------------------------


def test_evaluate_stage_writes_every_metric_and_plot(tmp_path, monkeypatch):
    from blastcell import instrument, model, params, prepared, runner

    size, classes = 32, ["not_blast", "blast"]
    folder = tmp_path / "prepared"
    folder.mkdir()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, size, size, 3), dtype=np.uint8)
    prepared.write_shards(folder, "test", zip(images, np.arange(12) % 2, strict=True), 12, 5)
    prepared.write_spec(folder, size, classes, {"train": 0, "val": 0, "test": 12})

    model_params = ["model.width=0.125", "model.dense_units=8"]
    evaluate_params = ["evaluate.batch_size=5", "evaluate.bootstrap=200"]
    path = write_params(
        tmp_path / "params.yaml", *model_params, *evaluate_params, "evaluate.calibration_bins=5"
    )
    model.build(params.load(path).model, size, len(classes)).save(tmp_path / "model.keras")
    trace = tmp_path / "trace.jsonl"
    monkeypatch.setenv(instrument.TRACE_ENV, str(trace))

    plots, metrics = tmp_path / "plots", tmp_path / "evaluate.json"
    headline = tmp_path / "headline.json"
    model_path = tmp_path / "model.keras"
    line = runner.invoke(
        stage("evaluate").run,
        [
            *("--params", str(path), "--data", str(folder), "--model", str(model_path)),
            *("--metrics", str(headline), "--report", str(metrics), "--plots", str(plots)),
        ],
    )
    assert line.startswith("evaluate: accuracy ")
    assert "on 12 test images; blast sensitivity" in line
    (used,) = [json.loads(text)["params"] for text in trace.read_text().splitlines()]
    assert used == [
        "base.seed",
        "evaluate.batch_size",
        "evaluate.bootstrap",
        "evaluate.calibration_bins",
    ]
    written = sorted(p.name for p in plots.iterdir())
    assert written == [
        "confusion.json",
        "confusion_matrix.png",
        "confusion_matrix_normalised.png",
        "precision_recall.json",
        "reliability.json",
        "reliability.png",
        "roc.json",
    ]
    m = json.loads(metrics.read_text(), parse_constant=pytest.fail)
    assert m["test_images"] == 12
    assert m["positive_class"] == "blast"
    assert {"accuracy", "blast", "not_blast", "macro_avg", "weighted_avg"} <= set(m)
    for key in ["sensitivity", "specificity", "classification_error", "balanced_accuracy"]:
        assert 0 <= m[key] <= 1, key
    assert m["classification_error"] == pytest.approx(1 - m["accuracy"], abs=1e-6)
    assert 0 <= m["ece"] <= 1
    assert set(m["ci95"]) == set(evaluate.CI_METRICS)
    assert m["ci95"]["accuracy"]["low"] <= m["accuracy"] <= m["ci95"]["accuracy"]["high"]
    assert m["bootstrap"]["resamples"] == 200
    roc = json.loads((plots / "roc.json").read_text())
    assert {"class", "fpr", "tpr", "threshold"} == set(roc[0])
    bins = json.loads((plots / "reliability.json").read_text())
    assert sum(b["images"] for b in bins) == 12
    top = json.loads(headline.read_text(), parse_constant=pytest.fail)
    assert list(top) == list(evaluate.HEADLINE)  # what `dvc exp show` compares, in this order
    assert top["accuracy_low"] == m["ci95"]["accuracy"]["low"]
    assert {k: top[k] for k in ("accuracy", "sensitivity", "roc_auc", "ece")} == {
        k: m[k] for k in ("accuracy", "sensitivity", "roc_auc", "ece")
    }


def test_the_headline_leaves_out_what_the_report_cannot_define():
    full = {"accuracy": 0.5, "sensitivity": None, "specificity": 1.0, "roc_auc": None, "ece": 0.1}
    assert evaluate.headline(full) == {"accuracy": 0.5, "specificity": 1.0, "ece": 0.1}
