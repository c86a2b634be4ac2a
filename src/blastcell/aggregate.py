"""Summarise repeated splits: mean, spread and range of every numeric metric over the splits.

The reports are the evaluate stage's JSON, one per split. Whatever numeric leaves they hold (at
any depth of nested objects, or in lists) are summarised under the same path, each leaf becoming
`{mean, std, min, max, n}`; text, booleans, nulls and non-finite numbers are left out. A leaf
present in only some reports is summarised over those (its `n` says how many).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

STATS = ("mean", "std", "min", "max", "n")


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


def summarize(reports: Sequence[Mapping[str, Any]], digits: int = 6) -> dict[str, Any]:
    """One nested summary of `reports`: each numeric leaf's path maps to its `stats`."""
    if not reports or not all(isinstance(r, Mapping) for r in reports):
        raise ValueError("summarize needs one or more reports, each a JSON object")
    collected: dict[tuple[str, ...], list[float]] = {}
    for report in reports:
        for path, value in _leaves(report):
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
