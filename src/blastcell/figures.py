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
    with the number of images per bin below; `bins` as `evaluate.calibration` returns them."""
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


def copy_gallery(
    pairs: Sequence[Sequence[np.ndarray]], titles: Sequence[str], overlay: np.ndarray
) -> Figure:
    """Pairs of images side by side, each pair titled, after a panel of the overlay mask."""
    n = len(pairs)
    cols = 2 * min(n, 2) or 2
    rows = 1 + -(-n // 2)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.5 * rows), squeeze=False)
    for ax in axes.flat:
        _bare(ax)
        ax.axis("off")
    first = axes[0][0]
    first.axis("on")
    first.imshow(overlay)
    first.set_title(
        "overlay left out (white)" if overlay.any() else "no overlay found", fontsize=7
    )
    if not n:
        axes[0][1].text(0.0, 0.5, "no copies found", va="center", fontsize=10)
    for k, (pair, text) in enumerate(zip(pairs, titles, strict=True)):
        row, col = 1 + k // 2, 2 * (k % 2)
        for j, image in enumerate(pair):
            ax = axes[row][col + j]
            ax.axis("on")
            ax.imshow(image)
        axes[row][col].set_title(text, fontsize=6, loc="left")
    fig.suptitle("Copies found before the split", fontsize=9)
    fig.tight_layout()
    return fig


def save(fig: Figure, path: Path) -> None:
    """Save a figure as PNG without a software/version stamp, so reruns give the same bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
