"""The evaluate stage: score the trained model on the held-out test set.

The seed's classification report and confusion matrix; beside them the ALL-IDB benchmark's
measures (sensitivity, specificity, classification error), balanced accuracy, ROC AUC and average
precision, bootstrap confidence intervals over the test images, calibration (ECE and the
reliability diagram's bins) and ROC / precision-recall curve points for DVC plots.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from scipy.stats import rankdata
from sklearn.metrics import (
    average_precision_score,
    classification_report,
    confusion_matrix,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from blastcell import POSITIVE_CLASS, figures, model, prepared, progress
from blastcell.params import EvaluateParams
from blastcell.tf import keras


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


# The numbers `dvc exp show` and `dvc metrics show` compare (metrics/evaluate.json); the full
# report, with the per-class numbers and the bootstrap details, is a file of its own.
HEADLINE = (
    "accuracy",
    "accuracy_low",
    "accuracy_high",
    "sensitivity",
    "specificity",
    "roc_auc",
    "ece",
)


def headline(full: dict) -> dict:
    """The headline of a full report: accuracy with its 95 % interval (when bootstrapped),
    sensitivity, specificity, ROC AUC and ECE; a value the test set cannot define is left out."""
    interval = full.get("ci95", {}).get("accuracy", {})
    values = {
        **{k: full.get(k) for k in HEADLINE},
        "accuracy_low": interval.get("low"),
        "accuracy_high": interval.get("high"),
    }
    return {k: values[k] for k in HEADLINE if values[k] is not None}


# --- Beyond the seed's report: the ALL-IDB benchmark's measures, ranking, calibration, CIs ---

CI_METRICS = ("accuracy", "sensitivity", "specificity", "balanced_accuracy", "roc_auc")


def positive_index(classes: Sequence[str]) -> int | None:
    """The positive class for two classes (`blast` if present, else the second); None for more."""
    if len(classes) != 2:
        return None
    return list(classes).index(POSITIVE_CLASS) if POSITIVE_CLASS in classes else 1


def normalise(probs: np.ndarray) -> np.ndarray:
    """Probabilities as float64 rows summing to 1 (a float16/bfloat16 softmax is off by ~1e-3)."""
    probs = np.asarray(probs, dtype=np.float64)
    return probs / probs.sum(axis=1, keepdims=True)


def _round(value: float | None) -> float | None:
    """Six decimals, as the report; None (JSON null) where the metric is undefined."""
    if value is None or not np.isfinite(value):
        return None
    return round(float(value), 6)


def _of_positive(values: np.ndarray, positive: int | None) -> np.ndarray:
    """Per-class values (classes on the last axis): the positive class's, or their macro mean."""
    values = np.asarray(values, dtype=np.float64)
    return values[..., positive] if positive is not None else values.mean(axis=-1)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den elementwise, NaN where den is 0 (a rate with nothing to count)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def one_vs_rest_rates(
    y_true: np.ndarray, y_pred: np.ndarray, n_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sensitivity (recall) and specificity of each class against the rest, NaN if undefined.

    Class k's sensitivity is TP/(TP+FN), the share of true k predicted k; its specificity is
    TN/(TN+FP), the share of true non-k predicted non-k.
    """
    counts = confusion(y_true, y_pred, n_classes).astype(np.float64)
    total, tp = counts.sum(), np.diag(counts)
    positives, predicted = counts.sum(axis=1), counts.sum(axis=0)
    negatives = total - positives
    tn = total - positives - predicted + tp
    return _ratio(tp, positives), _ratio(tn, negatives)


def _binary_auc_ap(is_positive: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    """ROC AUC and average precision of one class against the rest; NaN without both kinds."""
    if is_positive.all() or not is_positive.any():
        return np.nan, np.nan
    return (
        float(roc_auc_score(is_positive, score)),
        float(average_precision_score(is_positive, score)),
    )


def scores(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> dict:
    """Sensitivity, specificity, classification error, balanced accuracy, ROC AUC and AP.

    Two classes: of the positive class (named in `positive_class`), thresholded at the argmax of
    the softmax. More classes: `positive_class` is null, the top-level values are macro averages
    (unweighted means over classes) of one-vs-rest values, listed per class in `one_vs_rest`;
    ROC AUC is scikit-learn's `multi_class="ovr"` macro AUC, AP the macro AP on one-hot labels.
    A value that the test set cannot define (a class absent from it) is null.
    """
    k = len(classes)
    probs = normalise(probs)
    y_pred = np.argmax(probs, axis=1)
    sensitivity, specificity = one_vs_rest_rates(y_true, y_pred, k)
    auc, ap = zip(*(_binary_auc_ap(y_true == c, probs[:, c]) for c in range(k)), strict=True)
    positive = positive_index(classes)
    accuracy = float(np.mean(y_true == y_pred))
    out: dict = {
        "positive_class": classes[positive] if positive is not None else None,
        "sensitivity": _round(_of_positive(sensitivity, positive)),
        "specificity": _round(_of_positive(specificity, positive)),
        "classification_error": _round(1 - accuracy),
        "balanced_accuracy": _round(np.mean(sensitivity)),
        "roc_auc": _round(_of_positive(auc, positive)),
        "average_precision": _round(_of_positive(ap, positive)),
    }
    if positive is None:
        out["one_vs_rest"] = {
            name: {
                "sensitivity": _round(sensitivity[c]),
                "specificity": _round(specificity[c]),
                "roc_auc": _round(auc[c]),
                "average_precision": _round(ap[c]),
            }
            for c, name in enumerate(classes)
        }
    return out


def _rank_auc(score: np.ndarray, is_positive: np.ndarray) -> np.ndarray:
    """ROC AUC of each row (Mann-Whitney U / (P N), ties count half); NaN without both kinds."""
    ranks = rankdata(score, axis=1)
    n_pos = is_positive.sum(axis=1)
    n_neg = is_positive.shape[1] - n_pos
    u = (ranks * is_positive).sum(axis=1) - n_pos * (n_pos + 1) / 2
    return _ratio(u, n_pos * n_neg)


def _resample_metrics(
    y_true: np.ndarray, probs: np.ndarray, positive: int | None, idx: np.ndarray
) -> dict[str, np.ndarray]:
    """The CI metrics of each row of `idx` (one resample of test-image indices); NaN: undefined."""
    n_images, k = idx.shape[1], probs.shape[1]
    y_pred = np.argmax(probs, axis=1)
    true_1h = np.eye(k, dtype=bool)[y_true][idx]  # (resamples, images, classes)
    pred_1h = np.eye(k, dtype=bool)[y_pred][idx]
    positives = true_1h.sum(axis=1)
    sensitivity = _ratio((true_1h & pred_1h).sum(axis=1), positives)
    specificity = _ratio((~true_1h & ~pred_1h).sum(axis=1), n_images - positives)
    classes = [positive] if positive is not None else range(k)
    auc = np.mean([_rank_auc(probs[idx, c], true_1h[:, :, c]) for c in classes], axis=0)
    return {
        "accuracy": (y_true == y_pred)[idx].mean(axis=1),
        "sensitivity": _of_positive(sensitivity, positive),
        "specificity": _of_positive(specificity, positive),
        "balanced_accuracy": sensitivity.mean(axis=1),  # NaN when a class was not drawn
        "roc_auc": auc,
    }


def bootstrap(
    y_true: np.ndarray,
    probs: np.ndarray,
    classes: Sequence[str],
    resamples: int,
    seed: int,
    max_elements: int = 4_000_000,
    progress: Callable[[int], object] | None = None,
) -> dict:
    """95 % percentile intervals of accuracy, sensitivity, specificity, balanced accuracy, AUC.

    Draws `resamples` bootstrap samples of the test images (with replacement, as many as the
    test set holds) from a generator seeded with `seed`, in chunks of at most `max_elements`
    drawn indices to bound memory. Sensitivity, specificity and AUC are as in `scores` (positive
    class, or macro one-vs-rest). A resample in which a metric is undefined (a class not drawn)
    is left out of that metric's interval; `valid` counts the resamples each interval uses.
    `progress(n)` is called as each `n` more resamples are scored.
    Returns {"ci95": {metric: {"low", "high"}}, "bootstrap": {"resamples", "valid": {...}}}.
    """
    probs = normalise(probs)
    n = len(y_true)
    rng = np.random.default_rng(seed)
    chunk = max(1, max_elements // max(n, 1))
    positive = positive_index(classes)
    parts: dict[str, list[np.ndarray]] = {m: [] for m in CI_METRICS}
    for start in range(0, resamples if n else 0, chunk):
        idx = rng.integers(0, n, size=(min(chunk, resamples - start), n))
        for name, values in _resample_metrics(y_true, probs, positive, idx).items():
            parts[name].append(values)
        if progress is not None:
            progress(len(idx))
    ci, valid = {}, {}
    for name in CI_METRICS:
        values = np.concatenate(parts[name]) if parts[name] else np.empty(0)
        values = values[np.isfinite(values)]
        valid[name] = int(values.size)
        low, high = np.percentile(values, [2.5, 97.5]) if values.size else (np.nan, np.nan)
        ci[name] = {"low": _round(low), "high": _round(high)}
    return {"ci95": ci, "bootstrap": {"resamples": resamples, "valid": valid}}


def calibration(y_true: np.ndarray, probs: np.ndarray, bins: int) -> tuple[float, list[dict]]:
    """Expected calibration error on the confidence (the max probability), and its bins.

    `bins` equal-width bins over [0, 1], each (low, high] (the first also holds 0). ECE is the
    image-weighted mean over bins of |accuracy - mean confidence|. Returns the ECE and one
    record per non-empty bin: its edges, mean confidence, accuracy and number of images.
    """
    probs = normalise(probs)
    confidence = probs.max(axis=1)
    correct = np.argmax(probs, axis=1) == y_true
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    records, gap = [], 0.0
    for b in range(bins):
        members = which == b
        count = int(members.sum())
        if not count:
            continue
        conf, acc = float(confidence[members].mean()), float(correct[members].mean())
        gap += count * abs(acc - conf)
        records.append(
            {
                "bin_low": _round(edges[b]),
                "bin_high": _round(edges[b + 1]),
                "confidence": _round(conf),
                "accuracy": _round(acc),
                "images": count,
            }
        )
    return (gap / len(y_true) if len(y_true) else float("nan")), records


def _curve_classes(y_true: np.ndarray, classes: Sequence[str]) -> list[tuple[int, np.ndarray]]:
    """(class, is_positive mask) of the classes that get curves: the positive one for two
    classes, each one for more, leaving out any the test set lacks or holds alone."""
    positive = positive_index(classes)
    wanted = [positive] if positive is not None else range(len(classes))
    masks = [(c, y_true == c) for c in wanted]
    return [(c, m) for c, m in masks if m.any() and not m.all()]


def roc_records(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> list[dict]:
    """ROC points {class, fpr, tpr, threshold} in order of rising fpr, per curve class.

    The first point of each curve, (0, 0), has threshold null (scikit-learn's +inf: nothing is
    called positive). A class that is absent from the test set, or is all of it, gets no curve.
    """
    probs = normalise(probs)
    records = []
    for c, is_positive in _curve_classes(y_true, classes):
        fpr, tpr, thresholds = roc_curve(is_positive, probs[:, c])
        records += [
            {"class": classes[c], "fpr": _round(f), "tpr": _round(t), "threshold": _round(h)}
            for f, t, h in zip(fpr, tpr, thresholds, strict=True)
        ]
    return records


def precision_recall_records(
    y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str]
) -> list[dict]:
    """Precision-recall points {class, recall, precision, threshold} in order of rising recall.

    The first point of each curve, (recall 0, precision 1), has threshold null (scikit-learn adds
    it without a threshold). Classes without both kinds of images in the test set are left out.
    """
    probs = normalise(probs)
    records = []
    for c, is_positive in _curve_classes(y_true, classes):
        precision, recall, thresholds = precision_recall_curve(
            is_positive, probs[:, c], drop_intermediate=True
        )
        thresholds = np.append(thresholds, np.nan)
        points = zip(recall[::-1], precision[::-1], thresholds[::-1], strict=True)
        records += [
            {
                "class": classes[c],
                "recall": _round(r),
                "precision": _round(p),
                "threshold": _round(t),
            }
            for r, p, t in points
        ]
    return records


# --- The stage: predict the test split, score it, and the plots ---


def predict(
    net: keras.Model, data: prepared.Folder, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """True labels and softmax probabilities of the test split, streamed one batch at a time."""
    labels, probs = [], []
    for x, y in data.iterate("test", batch_size):
        labels.append(y)
        probs.append(np.asarray(net.predict_on_batch(x), dtype=np.float64))
    return np.concatenate(labels), np.concatenate(probs)


def full_report(
    y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str], ece: float, resamples: int,
    seed: int,
) -> dict:  # fmt: skip
    """The full report: the seed's report keys first, then the rates, AUC, ECE and intervals."""
    y_pred = np.argmax(probs, axis=1)
    out = {
        **report(y_true, y_pred, classes),
        "test_images": len(y_true),
        **scores(y_true, probs, classes),
    }
    out["ece"] = _round(ece)
    if resamples:
        with progress.bar(resamples, "evaluate: bootstrap", unit="resample") as bar:
            out.update(bootstrap(y_true, probs, classes, resamples, seed, progress=bar.update))
    return out


def describe(full: dict) -> str:
    """One line for the stage log: accuracy with its interval, the positive class's rates."""

    def num(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    ci = full.get("ci95", {})

    def interval(name: str) -> str:
        if name not in ci:
            return ""
        return f" (95 % CI {num(ci[name]['low'])}-{num(ci[name]['high'])})"

    who = full["positive_class"] or "macro one-vs-rest"
    return (
        f"accuracy {num(full['accuracy'])}{interval('accuracy')} on {full['test_images']} "
        f"test images; {who} sensitivity {num(full['sensitivity'])}, specificity "
        f"{num(full['specificity'])}; ROC AUC {num(full['roc_auc'])}; ECE {num(full['ece'])}"
    )


@dataclass(frozen=True)
class Evaluation:
    """What the evaluate stage writes: the full report, and its plots by file name."""

    report: dict
    records: dict[str, list[dict]]  # JSON plots: confusion, ROC, precision-recall, reliability
    figures: dict[str, Figure]  # PNG plots: confusion matrices, reliability diagram


def evaluate(data: Path, model_path: Path, params: EvaluateParams, seed: int) -> Evaluation:
    """Score the model at `model_path` on the test split of the prepared folder `data`."""
    folder = prepared.read(data)
    spec = folder.spec
    classes = spec.classes
    net = model.load(model_path, image_size=spec.image_size, n_classes=len(classes))
    y_true, probs = predict(net, folder, params.batch_size)
    probs = normalise(probs)
    y_pred = np.argmax(probs, axis=1)
    ece, bins = calibration(y_true, probs, params.calibration_bins)
    counts = confusion(y_true, y_pred, len(classes))
    return Evaluation(
        report=full_report(y_true, probs, classes, ece, params.bootstrap, seed),
        records={
            "confusion": confusion_records(y_true, y_pred, classes),
            "roc": roc_records(y_true, probs, classes),
            "precision_recall": precision_recall_records(y_true, probs, classes),
            "reliability": bins,
        },
        figures={
            "confusion_matrix": figures.confusion_matrix(counts, classes, normalise=False),
            "confusion_matrix_normalised": figures.confusion_matrix(
                counts, classes, normalise=True
            ),
            "reliability": figures.reliability_diagram(bins, params.calibration_bins, ece),
        },
    )
