"""Summarise repeated splits: mean, spread and range of every numeric metric over the splits.

The reports are the evaluate stage's JSON, one per split. Whatever numeric leaves they hold (at
any depth of nested objects, or in lists) are summarised under the same path, each leaf becoming
`{mean, std, min, max, n}`; text, booleans, nulls and non-finite numbers are left out. A leaf
present in only some reports is summarised over those (its `n` says how many). `table` lays the
headline metrics out one row per split.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

# A split's own bootstrap intervals describe that split's test sampling; over splits, the spread
# of the metric itself says it, so these parts of a report are not summarised.
PER_SPLIT_ONLY = ("ci95", "bootstrap")
# The measures a paper on ALL-IDB reports, one column each in the per-split table.
HEADLINE = (
    "accuracy",
    "balanced_accuracy",
    "sensitivity",
    "specificity",
    "classification_error",
    "roc_auc",
    "average_precision",
    "ece",
)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _leaves(node: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], float]]:
    """(path, value) of every finite numeric leaf, in document order."""
    if isinstance(node, Mapping):
        items = [(str(k), v) for k, v in node.items()]
    elif isinstance(node, list | tuple):
        items = [(str(i), v) for i, v in enumerate(node)]
    else:
        return [(path, float(node))] if _is_number(node) else []
    return [leaf for key, value in items for leaf in _leaves(value, (*path, key))]


def stats(values: Sequence[float], digits: int = 6) -> dict[str, float | int | None]:
    """Mean, sample standard deviation (ddof=1; null for one value), min, max and n."""
    n = len(values)
    mean = math.fsum(values) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return {
        "mean": round(mean, digits),
        "std": None if std is None else round(std, digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "n": n,
    }


def summarize(
    reports: Sequence[Mapping[str, Any]], digits: int = 6, skip: Sequence[str] = ()
) -> dict[str, Any]:
    """One nested summary of `reports`: each numeric leaf's path maps to its `stats`.

    Top-level keys named in `skip` are left out.
    """
    if not reports or not all(isinstance(r, Mapping) for r in reports):
        raise ValueError("summarize needs one or more reports, each a JSON object")
    collected: dict[tuple[str, ...], list[float]] = {}
    for report in reports:
        kept = {k: v for k, v in report.items() if k not in skip}
        for path, value in _leaves(kept):
            collected.setdefault(path, []).append(value)
    summary: dict[str, Any] = {}
    for path, values in collected.items():
        node = summary
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = stats(values, digits)
    clashes = [p for p in collected if any(p[:i] in collected for i in range(1, len(p)))]
    if clashes:
        where = ".".join(clashes[0][:-1])
        raise ValueError(f"'{where}' is a number in one report and an object in another")
    return summary


def table(
    reports: Sequence[Mapping[str, Any]], seeds: Sequence[int], columns: Sequence[str] = HEADLINE
) -> tuple[list[str], list[list[object]]]:
    """Header and rows: `seed`, `test_images`, then each of `columns` that some report has.

    A value a report lacks or cannot define (null, NaN) is an empty cell.
    """
    if len(reports) != len(seeds):
        raise ValueError(f"{len(reports)} reports for {len(seeds)} seeds")
    present = [c for c in columns if any(_is_number(r.get(c)) for r in reports)]
    header = ["seed", "test_images", *present]
    rows = [
        [seed, r.get("test_images", ""), *(r[c] if _is_number(r.get(c)) else "" for c in present)]
        for seed, r in zip(seeds, reports, strict=True)
    ]
    return header, rows
