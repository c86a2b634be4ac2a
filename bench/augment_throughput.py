"""Benchmark: augment stage throughput, its worker pool vs a plain one-process loop.

    python bench/augment_throughput.py [--quick]

Generates synthetic source images (100 of 257x257, or 24 of 96x96 with --quick) into a
temporary folder, then augments them with params.yaml's `augment` settings twice, side by side:

* ours: what the augment stage does, `augment.augment`: `ingest.load` reads, checks and decodes
  in order in this process while one worker per CPU core augments and writes the PNGs;
* baseline: a plain loop in one process: decode, `augment.copies`, write each PNG.

Prints output images (originals + copies) written per second for each, the ratio ours / baseline
(bigger is better; at most about the core count) and the JSON of `measure`, and checks that both
wrote the same image bytes. It asserts nothing about speed.
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from blastcell import augment, images, ingest, synthesize
from blastcell.params import Params, load

ROOT = Path(__file__).resolve().parents[1]


def ours(data: Path, out: Path, params: Params, workers: int) -> int:
    """The augment stage's path; returns the number of PNGs written."""
    settings = params.augment.model_copy(update={"workers": workers})
    return augment.augment(data, out, params.data, settings, params.base.seed).files


def baseline(data: Path, out: Path, params: Params) -> int:
    """A straightforward loop in one process; returns the number of PNGs written."""
    count = 0
    for path in sorted(data.iterdir()):
        pixels, _ = ingest.decode(path)
        key = path.name
        copies = augment.copies(pixels, key, params.augment, params.base.seed)
        for k, image in enumerate([pixels, *copies]):
            images.write(out / f"{augment.output_stem(key)}_{k}.png", image)
            count += 1
    return count


def _timed(run, *args) -> tuple[int, float]:
    start = time.perf_counter()
    count = run(*args)
    return count, time.perf_counter() - start


def _images(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.glob("*.png")}


def measure(quick: bool = False) -> dict:
    """Images written per second by the stage's worker pool (all cores) and by a plain loop."""
    params = load(ROOT / "params.yaml")
    n, size = (24, 96) if quick else (100, 257)
    workers = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        data, out_ours, out_base = (Path(tmp) / name for name in ("data", "ours", "baseline"))
        for folder in (data, out_ours, out_base):
            folder.mkdir()
        # In this process (workers=1): a worker pool here would start the process's one
        # forkserver before `augment.augment` can have it preload blastcell.augment, as in the
        # stage.
        sources = {"n_blast": n // 2, "n_not_blast": n - n // 2, "image_size": size, "workers": 1}
        synthesize.write_dataset(
            data, params.synthesize.model_copy(update=sources), 0, write=images.write
        )
        base_count, base_s = _timed(baseline, data, out_base, params)
        ours_count, ours_s = _timed(ours, data, out_ours, params, workers)
        identical = _images(out_ours) == _images(out_base)
    return {
        "augment_images_per_s": ours_count / ours_s,
        "augment_baseline_images_per_s": base_count / base_s,
        "augment_throughput_ratio": (ours_count / ours_s) / (base_count / base_s),
        "augment_workers": workers,
        "augment_source_images": n,
        "augment_image_size": size,
        "augment_copies": params.augment.copies,
        "augment_outputs_identical": identical,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="24 images of 96x96")
    args = parser.parse_args()
    result = measure(quick=args.quick)
    n, size, copies = (
        result[k] for k in ("augment_source_images", "augment_image_size", "augment_copies")
    )
    print(
        f"{n} source images of {size}x{size}, {copies} copies each: "
        f"{n * (copies + 1)} PNGs per run, {os.cpu_count()} CPU cores"
    )
    rows = [
        (f"ours (workers={result['augment_workers']})", result["augment_images_per_s"]),
        ("baseline (one process)", result["augment_baseline_images_per_s"]),
    ]
    for name, rate in rows:
        print(f"{name:>24}: {rate:7.1f} images/s")
    print(f"{'ratio ours / baseline':>24}: {result['augment_throughput_ratio']:.2f}")
    print(f"{'same output bytes':>24}: {result['augment_outputs_identical']}")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
