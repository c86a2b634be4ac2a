"""The cv stage's numbers: one row of headline numbers per repeated split, and their spread.

Each split contributes the evaluate stage's full report, the audit stage's report and the train
stage's report; `split_row` keeps the numbers a paper on ALL-IDB reports (`COLUMNS`). `summary`
is what `dvc exp show` compares (the mean and spread of accuracy); `describe` gives the mean,
standard deviation and range of every column, for people:
`blastcell cv` prints it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

# One per split, in this order: (column, the report it comes from).
COLUMNS = (
    ("test_images", "evaluate"),
    ("accuracy", "evaluate"),
    ("balanced_accuracy", "evaluate"),
    ("sensitivity", "evaluate"),
    ("specificity", "evaluate"),
    ("classification_error", "evaluate"),
    ("roc_auc", "evaluate"),
    ("average_precision", "evaluate"),
    ("ece", "evaluate"),
    ("best_epoch", "train"),
    ("near_duplicates", "audit"),
    ("median_distance", "audit"),
)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def split_row(seed: int, reports: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The headline numbers of one split from its reports ("evaluate", "train", "audit");
    a number a report lacks or cannot define (null, NaN) is null."""
    row: dict[str, Any] = {"seed": seed}
    for column, stage in COLUMNS:
        value = reports[stage].get(column)
        row[column] = value if _is_number(value) else None
    return row


def stats(values: Sequence[float], digits: int = 6) -> dict[str, float | int | None]:
    """Mean, sample standard deviation (ddof=1; null for one value), min, max and n."""
    n = len(values)
    if not n:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    mean = math.fsum(values) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return {
        "mean": round(mean, digits),
        "std": None if std is None else round(std, digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "n": n,
    }


def column(rows: Sequence[Mapping[str, Any]], name: str) -> list[float]:
    """The defined values of one column."""
    return [r[name] for r in rows if _is_number(r.get(name))]


def summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The metrics `dvc exp show` compares: the mean and standard deviation of accuracy.

    Two numbers only, so that beside the default pipeline's headline the table stays readable;
    the other measures of every split are in the table (`describe`, and a DVC plot).
    """
    if not rows:
        raise ValueError("summary needs one or more splits")
    accuracy = stats(column(rows, "accuracy"))
    out = {"accuracy_mean": accuracy["mean"], "accuracy_sd": accuracy["std"]}
    return {k: v for k, v in out.items() if v is not None}


def describe(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Lines of `column  mean ± sd  (min to max, n)` for every numeric column."""
    lines = []
    for name, _ in COLUMNS:
        s = stats(column(rows, name), digits=3)
        if not s["n"]:
            continue
        sd = "" if s["std"] is None else f" ± {s['std']:.3f}"
        lines.append(
            f"{name:22} {s['mean']:.3f}{sd}  ({s['min']:.3f} to {s['max']:.3f}, n={s['n']})"
        )
    return lines


def headline(rows: Sequence[Mapping[str, Any]]) -> str:
    """One line: accuracy's mean, sd and range, the mean rates and AUC, the worst audit."""
    s = {name: stats(column(rows, name), 3) for name, _ in COLUMNS}
    acc = s["accuracy"]
    sd = "" if acc["std"] is None else f" ± {acc['std']:.3f}"
    return (
        f"{len(rows)} splits: accuracy {acc['mean']:.3f}{sd} ({acc['min']:.3f} to "
        f"{acc['max']:.3f}); mean sensitivity {s['sensitivity']['mean']}, specificity "
        f"{s['specificity']['mean']}, ROC AUC {s['roc_auc']['mean']}; at most "
        f"{s['near_duplicates']['max']} near-duplicates in a split "
        "(blastcell cv: every column)"
    )
