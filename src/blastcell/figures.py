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


def confusion_matrix(counts: np.ndarray, classes: Sequence[str]) -> Figure:
    """The confusion matrix as an annotated heat map (rows true, columns predicted)."""
    k = len(classes)
    fig, ax = plt.subplots(figsize=(1.2 * k + 2.4, 1.2 * k + 1.8))
    ax.imshow(counts, cmap="Blues", vmin=0)
    ax.set_xticks(range(k), classes, rotation=30, ha="right")
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    top = counts.max() if counts.size else 0
    for (i, j), n in np.ndenumerate(counts):
        ax.text(j, i, str(n), ha="center", va="center", color="white" if n > top / 2 else "black")
    ax.set_title(f"Confusion matrix (test, n={int(counts.sum())})")
    fig.tight_layout()
    return fig


def save(fig: Figure, path: Path) -> None:
    """Save a figure as PNG without a software/version stamp, so reruns give the same bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
