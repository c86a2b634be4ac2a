"""Figures the pipeline saves as PNG: functions return a matplotlib Figure, callers save it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure


def image_grid(
    rows: Sequence[Sequence[np.ndarray]], row_titles: Sequence[str], col_titles: Sequence[str]
) -> Figure:
    """A grid of images, one row per entry of `rows`, with row and column titles."""
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.6 * n_cols, 1.7 * n_rows), squeeze=False)
    for i, images in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j < len(images):
                ax.imshow(images[j])
            else:
                ax.axis("off")
            if i == 0 and j < len(col_titles):
                ax.set_title(col_titles[j], fontsize=8)
        axes[i][0].set_ylabel(row_titles[i], fontsize=7)
    fig.tight_layout()
    return fig


def confusion_matrix(
    counts: np.ndarray, classes: Sequence[str], normalise: bool = False
) -> Figure:
    """The confusion matrix as an annotated heat map (rows true, columns predicted).

    `normalise`: each row divided by its total, so a row sums to 1 and the diagonal holds each
    class's recall (sensitivity); a class absent from the test set gets a row of zeros.
    """
    k = len(classes)
    counts = np.asarray(counts)
    totals = counts.sum(axis=1, keepdims=True)
    values = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    shown = values if normalise else counts
    fig, ax = plt.subplots(figsize=(1.2 * k + 2.4, 1.2 * k + 1.8))
    ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalise else None)
    ax.set_xticks(range(k), classes, rotation=30, ha="right")
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    top = 1 if normalise else (counts.max() if counts.size else 0)
    for (i, j), v in np.ndenumerate(shown):
        text = f"{v:.2f}" if normalise else str(v)
        ax.text(j, i, text, ha="center", va="center", color="white" if v > top / 2 else "black")
    kind = "rows normalised, " if normalise else ""
    ax.set_title(f"Confusion matrix (test, {kind}n={int(counts.sum())})")
    fig.tight_layout()
    return fig


def reliability_diagram(bins: Sequence[dict], n_bins: int, ece: float) -> Figure:
    """Accuracy against confidence per bin (bars) beside the diagonal of perfect calibration,
    with the number of images per bin below; `bins` as `evaluation.calibration` returns them."""
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(4.8, 5.6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    width = 1 / n_bins
    lows = [b["bin_low"] for b in bins]
    top.bar(
        lows,
        [b["accuracy"] for b in bins],
        width=width,
        align="edge",
        edgecolor="black",
        color="tab:blue",
        alpha=0.7,
        label="accuracy in bin",
    )
    top.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    top.plot(
        [b["confidence"] for b in bins],
        [b["accuracy"] for b in bins],
        "o",
        color="tab:red",
        markersize=4,
        label="(mean confidence, accuracy)",
    )
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.legend(loc="upper left", fontsize=8)
    top.set_title(f"Reliability diagram (test, ECE {ece:.3f})")
    bottom.bar(
        lows,
        [b["images"] for b in bins],
        width=width,
        align="edge",
        edgecolor="black",
        color="tab:grey",
    )
    bottom.set_xlabel("confidence (max probability)")
    bottom.set_ylabel("images")
    fig.tight_layout()
    return fig


def save(fig: Figure, path: Path) -> None:
    """Save a figure as PNG without a software/version stamp, so reruns give the same bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
