"""Stage synthesize: write the embedded default data set in ALL-IDB2's layout.

Params: base.seed, synthesize.* (n_blast, n_not_blast, image_size, difficulty, workers).
Output: a flat folder of `ImNNN_L.tif` crops (L = 1 blast), rendered and written by
`synthesize.workers` processes (0 = one per CPU core); the files do not depend on that number.
With --preview, also a PNG grid of the first images of each class.
"""

import argparse
from pathlib import Path

import numpy as np

from blastcell import params as P
from blastcell import progress, runner, synthetic
from blastcell.data import atomic_dir, atomic_file, write_image

PREVIEW_ROWS, PREVIEW_COLS = 2, 6  # per class


def write_preview(
    path: Path, n_blast: int, n_not_blast: int, size: int, seed: int, difficulty: float
) -> None:
    """A grid of the first PREVIEW_ROWS x PREVIEW_COLS images of each class, blasts on top."""
    from blastcell import figures  # only this option needs matplotlib

    rows: list[list[np.ndarray]] = []
    titles: list[str] = []
    per_class = PREVIEW_ROWS * PREVIEW_COLS
    for label, first, count in ((1, 0, n_blast), (0, n_blast, n_not_blast)):
        indices = range(first, first + min(count, per_class))
        images = [
            synthetic.image_at(i, n_blast, n_not_blast, size, seed, difficulty)[2] for i in indices
        ]
        for start in range(0, len(images), PREVIEW_COLS):
            rows.append(images[start : start + PREVIEW_COLS])
            titles.append(synthetic.CLASSES[label])
    fig = figures.image_grid(rows, titles, [])
    bound = synthetic.bayes_accuracy(difficulty, n_blast / (n_blast + n_not_blast))
    fig.suptitle(
        f"synthetic cells, difficulty {difficulty:g} (best possible accuracy {bound:.1%})",
        fontsize=9,
    )
    fig.tight_layout()
    with atomic_file(path) as tmp:
        figures.save(fig, tmp)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--preview", type=Path, default=None, help="PNG grid of samples")
    args = parser.parse_args(argv)
    params = P.load(args.params)
    cfg = params.synthesize
    spec = (cfg.n_blast, cfg.n_not_blast, cfg.image_size, params.base.seed, cfg.difficulty)
    total = cfg.n_blast + cfg.n_not_blast
    with atomic_dir(args.output) as tmp, progress.bar(total, "synthesize") as bar:
        synthetic.write_dataset(
            tmp, *spec, workers=cfg.workers, write=write_image, progress=bar.update
        )
        if args.preview is not None:  # inside, so a failure leaves neither output
            write_preview(args.preview, *spec)
    bound = synthetic.bayes_accuracy(cfg.difficulty, cfg.n_blast / total)
    print(
        f"synthesize: {total} images ({cfg.n_blast} blast, {cfg.n_not_blast} not blast) of "
        f"{cfg.image_size} px in {args.output}, difficulty {cfg.difficulty:g} "
        f"(best possible accuracy {bound:.1%})"
    )
    P.trace("synthesize")


if __name__ == "__main__":
    runner.run(main)
