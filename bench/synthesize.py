"""Benchmark: how fast the synthesize stage renders and writes its images, one core vs all.

    python bench/synthesize.py [--quick] [--images 1000] [--size SIZE] [--difficulty D]

Renders `--images` crops (half blasts) and writes them as TIFF into a temporary folder, as the
stage does, once with workers=1 (in-process) and once with one worker per CPU core, and prints
images per second for each and the ratio all / one (bigger is better; at most the core count).
Also prints the render time alone per image on one core. `--size` and `--difficulty` are
params.yaml's `synthesize.image_size` and `synthesize.difficulty` unless given. It asserts nothing.
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from blastcell import images, synthesize
from blastcell.params import SynthesizeParams, load

ROOT = Path(__file__).resolve().parents[1]


def settings(images_total: int, size: int, difficulty: float, workers: int) -> SynthesizeParams:
    """params.yaml's synthesize section for `images_total` crops, half blasts."""
    n_blast = images_total // 2
    return SynthesizeParams(
        n_blast=n_blast,
        n_not_blast=images_total - n_blast,
        image_size=size,
        difficulty=difficulty,
        workers=workers,
    )


def throughput(images_total: int, size: int, difficulty: float, workers: int) -> float:
    """Images per second rendered and written by `synthesize.write_dataset`."""
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        synthesize.write_dataset(
            Path(folder),
            settings(images_total, size, difficulty, workers),
            0,
            write=images.write,
        )
        return images_total / (time.perf_counter() - start)


def render_ms(images_total: int, size: int, difficulty: float) -> float:
    """Milliseconds to render one image (no writing), one core."""
    start = time.perf_counter()
    for i in range(images_total):
        synthesize.draw_cell(i % 2, size, np.random.default_rng([1, i]), difficulty)
    return 1000.0 * (time.perf_counter() - start) / images_total


def measure(
    quick: bool = False,
    images_total: int = 1000,
    size: int | None = None,
    difficulty: float | None = None,
) -> dict:
    """Images per second on one core and on all, and render-only milliseconds per image."""
    defaults = load(ROOT / "params.yaml").synthesize
    size = defaults.image_size if size is None else size
    difficulty = defaults.difficulty if difficulty is None else difficulty
    if quick:
        images_total, size = 24, 64
    cores = os.cpu_count() or 1
    one, every = (throughput(images_total, size, difficulty, workers) for workers in (1, cores))
    return {
        "synthesize_images_per_s_1_core": round(one, 1),
        "synthesize_images_per_s_all_cores": round(every, 1),
        "synthesize_ratio": round(every / one, 2),
        "synthesize_render_ms": round(render_ms(min(images_total, 200), size, difficulty), 1),
        "synthesize_detail": {
            "images": images_total,
            "size": size,
            "cores": cores,
            "quick": quick,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="24 images of 64 px: that it runs")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--size", type=int, default=None, help="default: params.yaml's")
    parser.add_argument("--difficulty", type=float, default=None, help="default: params.yaml's")
    args = parser.parse_args()
    r = measure(args.quick, args.images, args.size, args.difficulty)
    d = r["synthesize_detail"]
    print(f"{d['images']} images of {d['size']}x{d['size']}, {d['cores']} CPU cores")
    print(f"render only, 1 core: {r['synthesize_render_ms']:.1f} ms/image")
    print(f"workers=1: {r['synthesize_images_per_s_1_core']:7.1f} images/s (render + write TIFF)")
    print(f"workers={d['cores']}: {r['synthesize_images_per_s_all_cores']:7.1f} images/s")
    print(f"ratio all cores / one: {r['synthesize_ratio']:.2f}")
    print(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
