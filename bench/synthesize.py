"""Benchmark: how fast the synthesize stage renders and writes its images, one core vs all.

    python bench/synthesize.py [--images 1000] [--size 257] [--difficulty 0.5]

Renders `--images` crops (half blasts) and writes them as TIFF into a temporary folder, as the
stage does, once with workers=1 (in-process) and once with one worker per CPU core, and prints
images per second for each and the ratio all / one (bigger is better; at most the core count).
Also prints the render time alone per image on one core. It asserts nothing.
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from blastcell import synthetic
from blastcell.data import write_image


def throughput(images: int, size: int, difficulty: float, workers: int) -> float:
    """Images per second rendered and written by `synthetic.write_dataset`."""
    n_blast = images // 2
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        synthetic.write_dataset(
            Path(folder),
            n_blast,
            images - n_blast,
            size,
            seed=0,
            difficulty=difficulty,
            workers=workers,
            write=write_image,
        )
        return images / (time.perf_counter() - start)


def render_ms(images: int, size: int, difficulty: float) -> float:
    """Milliseconds to render one image (no writing), one core."""
    start = time.perf_counter()
    for i in range(images):
        synthetic.draw_cell(i % 2, size, np.random.default_rng([1, i]), difficulty)
    return 1000.0 * (time.perf_counter() - start) / images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--size", type=int, default=257)
    parser.add_argument("--difficulty", type=float, default=0.5)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    print(
        f"{args.images} images of {args.size}x{args.size}, difficulty {args.difficulty}, "
        f"{cores} CPU cores"
    )
    ms = render_ms(min(args.images, 200), args.size, args.difficulty)
    print(f"render only, 1 core: {ms:.1f} ms/image")
    rates = {
        workers: throughput(args.images, args.size, args.difficulty, workers)
        for workers in (1, cores)
    }
    for workers, rate in rates.items():
        print(f"workers={workers:>3}: {rate:7.1f} images/s (render + write TIFF)")
    print(f"ratio workers={cores} / workers=1: {rates[cores] / rates[1]:.2f}")


if __name__ == "__main__":
    main()
