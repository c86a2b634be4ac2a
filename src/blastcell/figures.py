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


def _bare(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def _message(text: str) -> Figure:
    """A small figure that only says `text` (an empty result, not an error)."""
    fig, ax = plt.subplots(figsize=(4.8, 1.6))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=12)
    return fig


def titled_images(
    images: Sequence[np.ndarray], titles: Sequence[str], title: str, empty: str, n_cols: int = 8
) -> Figure:
    """Images in a grid of up to `n_cols` columns, each with its own title; `empty` if none."""
    if not images:
        return _message(empty)
    n_cols = min(n_cols, len(images))
    n_rows = -(-len(images) // n_cols)
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(1.9 * n_cols, 2.3 * n_rows + 0.4), squeeze=False
    )
    for ax, image, text in zip(axes.flat, images, titles, strict=False):
        _bare(ax)
        ax.imshow(image)
        ax.set_title(text, fontsize=7)
    for ax in axes.flat[len(images) :]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def heatmap_overlays(
    rows: Sequence[Sequence[tuple[np.ndarray, np.ndarray, str, str]]],
    row_titles: Sequence[str],
    title: str,
    cmap: str = "jet",
    alpha: float = 0.45,
) -> Figure:
    """Per row, pairs of axes: the image (titled with its first string) and the heat map in
    [0, 1] over it (titled with its second string). Entries are (image, heat, title, title)."""
    n_rows, n_pairs = len(rows), max(1, *(len(r) for r in rows))
    fig, axes = plt.subplots(
        n_rows, 2 * n_pairs, figsize=(1.7 * 2 * n_pairs + 0.6, 2.1 * n_rows + 0.5), squeeze=False
    )
    for i, row in enumerate(rows):
        for ax in axes[i]:
            _bare(ax)
        for j, (image, heat, first, second) in enumerate(row):
            left, right = axes[i][2 * j], axes[i][2 * j + 1]
            left.imshow(image)
            left.set_title(first, fontsize=7)
            right.imshow(image)
            right.imshow(heat, cmap=cmap, alpha=alpha, vmin=0, vmax=1)
            right.set_title(second, fontsize=7)
        for ax in axes[i][max(1, 2 * len(row)) :]:
            ax.axis("off")
        if not row:  # keep the first axes for the row title, without a frame
            axes[i][0].set_frame_on(False)
            axes[i][0].text(0.5, 0.5, "no test images", ha="center", va="center", fontsize=8)
        axes[i][0].set_ylabel(row_titles[i], fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def save(fig: Figure, path: Path) -> None:
    """Save a figure as PNG without a software/version stamp, so reruns give the same bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
