"""Measure: is the leakage audit precise? On two data sets, split both ways by prepare's own code:
with the source split (no cell on both sides) how many test images it flags, and with the seed's
random split how many of the test images that have a copy in training it flags; and its time.

    python bench/audit_precision.py [--quick] [--params params.yaml] [--cells 260] [--tile 64]
                                    [--random-seeds N] [--source-seeds N]

(a) synthetic: the embedded data set, `--cells` cells (half of them blasts; 260 is the default
    pipeline's), made by the synthesize and augment stage scripts; random splits with seeds 1-2,
    source splits with seeds 1-5.
(b) photograph: every `--tile` x `--tile` crop of a grid over scikit-image's
    `data.immunohistochemistry()` (512 x 512 px, one stain and one light for all; the crops do
    not overlap), in two arbitrary class folders, augmented by the augment stage script; random
    and source splits with seeds 1-10 (its splits are 5 times smaller).
Both with params.yaml's augment, prepare and audit sections; every image is resized to
`prepare.image_size` as prepare does, and each split is audited by `audit.compare`, the stage's
own function (only the TFRecord round trip is skipped). About 8 minutes on 2 cores. `--quick`:
24 synthetic cells of 96 px, the photograph cut into 16 crops of 128 px, and one seed of each
split (under a minute: that it runs; its figures are rough). Prints the figures; asserts nothing.
"""

import argparse
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import skimage.data
import tiny_data
import yaml

from blastcell import audit, augmented, images, prepare
from blastcell.params import Params, load

ROOT = Path(__file__).resolve().parents[1]
SETS = ("synthetic", "photograph")
# Seeds of each split, per data set: a synthetic split audits 5 times the test images, so fewer.
QUICK = {"cells": 24, "size": 96, "tile": 128, "seeds": {"random": (1, 1), "source": (1, 1)}}
FULL = {"cells": 260, "size": None, "tile": 64, "seeds": {"random": (2, 10), "source": (5, 10)}}


def augmented_folder(folder: Path, params: Path, source: Path) -> Path:
    """Augment the data folder `source` with the copies and augment stage scripts; the augmented
    folder."""
    out, side = folder / f"{source.name}_augmented", folder / f"{source.name}_side"
    return tiny_data.augmented(params, source, out, side)


def synthetic(folder: Path, raw: dict, cells: int, size: int | None) -> Path:
    """The embedded data set at `cells` cells (`size` px, None: params.yaml's), augmented."""
    raw = {**raw, "synthesize": {**raw["synthesize"], "n_blast": cells // 2}}
    raw["synthesize"]["n_not_blast"] = cells - cells // 2
    if size is not None:
        raw["synthesize"]["image_size"] = size
    params = folder / "synthetic.yaml"
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    tiny_data.run_stage("synthesize", params, "--output", folder / "synthetic")
    return augmented_folder(folder, params, folder / "synthetic")


def photograph(folder: Path, raw: dict, tile: int) -> Path:
    """Every `tile` px crop of a grid over immunohistochemistry(), in two class folders (a
    checkerboard), augmented."""
    picture = skimage.data.immunohistochemistry()
    source = folder / "photograph"
    for row in range(0, picture.shape[0] - tile + 1, tile):
        for col in range(0, picture.shape[1] - tile + 1, tile):
            label = "ab"[(row // tile + col // tile) % 2]
            (source / label).mkdir(parents=True, exist_ok=True)
            crop = picture[row : row + tile, col : col + tile]
            images.write(source / label / f"r{row:03d}_c{col:03d}.png", crop)
    params = folder / "photograph.yaml"
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    return augmented_folder(folder, params, source)


def batches(pixels: np.ndarray, rows: Sequence[int], size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(rows), size):
        yield pixels[np.asarray(rows[start : start + size])]


def precision(folder: Path, params: Params, random_seeds, source_seeds) -> dict:
    """Audit every split of the augmented `folder`; what was flagged, and how fast."""
    classes, records = augmented.read_index(folder)[:2]
    size = params.prepare.image_size
    pixels = np.stack([images.resize(images.read(folder / r.file), size) for r in records])
    row = {r.file: i for i, r in enumerate(records)}
    source = np.array([r.source for r in records])
    result: dict = {"images": len(records), "cells": len(set(source)), "image_size": size}
    seconds, audited = 0.0, 0
    for how, seeds in (("source", source_seeds), ("random", random_seeds)):
        split = params.prepare.model_copy(update={"split": how})
        test_images = leaked_n = flagged_leaked = flagged_clean = wrong = blank = 0
        own_best, other_best = [], []
        for seed in seeds:
            parts = prepare.split(records, classes, split, seed)
            test = [row[r.file] for r in parts["test"]]
            train = [row[r.file] for r in parts["train"]]
            start = time.perf_counter()
            found = audit.compare(
                batches(pixels, test, params.audit.batch_size),
                lambda train=train: batches(pixels, train, params.audit.batch_size),
                params.audit,
                params.augment,
            )
            seconds += time.perf_counter() - start
            audited += len(test)
            same = source[np.asarray(train)][found.index] == source[np.asarray(test)][:, None]
            same &= found.index >= 0
            leaked = np.isin(source[test], source[train])
            test_images += len(test)
            leaked_n += int(leaked.sum())
            flagged_leaked += int((found.flagged & leaked).sum())
            flagged_clean += int((found.flagged & ~leaked).sum())
            wrong += int((found.verified & ~same).any(axis=1).sum())  # a flag on another cell
            few = (
                found.keypoint_counts < params.audit.min_inliers
            )  # could not verify: nearly blank
            blank += int((leaked & ~found.flagged & few).sum())
            own_best += np.where(same, found.inliers, -1).max(axis=1)[leaked].tolist()
            other_best += np.where(same, -1, found.inliers).max(axis=1).tolist()
        result[how] = {
            "seeds": list(seeds),
            "test_images": test_images,
            "with_copy_in_train": leaked_n,
            "flagged_with_copy": flagged_leaked,
            "flagged_without_copy": flagged_clean,
            "flagged_on_another_cell": wrong,
            "missed_with_too_few_keypoints": blank,
            "most_inliers_other_cell": int(max(other_best, default=0)),
            "own_cell_best_inliers_quantiles": (
                np.quantile(own_best, (0, 0.01, 0.5)).tolist() if own_best else None
            ),
        }
    src, rnd = result["source"], result["random"]
    result["source_flagged_pct"] = round(100 * src["flagged_without_copy"] / src["test_images"], 2)
    result["random_copies_flagged_pct"] = round(
        100 * rnd["flagged_with_copy"] / max(rnd["with_copy_in_train"], 1), 2
    )
    result["ms_per_test_image"] = round(1000 * seconds / max(audited, 1), 1)
    return result


def measure(
    quick: bool = False,
    params_path: Path = ROOT / "params.yaml",
    cells: int | None = None,
    tile: int | None = None,
    random_seeds: int | None = None,
    source_seeds: int | None = None,
) -> dict:
    """The audit's precision on both data sets; `quick`: small synthetic data, one seed each.
    `random_seeds`, `source_seeds`: splits with seeds 1 to N of each data set (default FULL's)."""
    how = QUICK if quick else FULL
    seeds = {
        "random": (random_seeds,) * 2 if random_seeds else how["seeds"]["random"],
        "source": (source_seeds,) * 2 if source_seeds else how["seeds"]["source"],
    }
    cells, tile = cells or how["cells"], tile or how["tile"]
    raw = yaml.safe_load(params_path.read_text())
    params = load(params_path)
    result: dict = {"audit_params": params.audit.model_dump()}
    with tempfile.TemporaryDirectory() as tmp:
        folders = {
            "synthetic": synthetic(Path(tmp), raw, cells, how["size"]),
            "photograph": photograph(Path(tmp), raw, tile),
        }  # SETS
        for n, (name, folder) in enumerate(folders.items()):  # in SETS order
            randoms, sources = (tuple(range(1, seeds[s][n] + 1)) for s in ("random", "source"))
            r = precision(folder, params, randoms, sources)
            result[f"audit_{name}"] = r
            result[f"audit_{name}_source_flagged_pct"] = r["source_flagged_pct"]
            result[f"audit_{name}_random_copies_flagged_pct"] = r["random_copies_flagged_pct"]
            result[f"audit_{name}_ms_per_test_image"] = r["ms_per_test_image"]
    result["audit_photograph"]["tile"] = tile
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data, one seed of each")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--cells", type=int, help=f"synthetic cells (default {FULL['cells']})")
    parser.add_argument("--tile", type=int, help=f"crop side, px (default {FULL['tile']})")
    parser.add_argument("--random-seeds", type=int, help="random splits of each, seeds 1 to N")
    parser.add_argument("--source-seeds", type=int, help="source splits of each, seeds 1 to N")
    args = parser.parse_args()
    r = measure(
        args.quick, args.params, args.cells, args.tile, args.random_seeds, args.source_seeds
    )
    print(f"audit params: {r['audit_params']}")
    for name in SETS:
        d = r[f"audit_{name}"]
        print(
            f"\n{name}: {d['images']} images of {d['cells']} cells at {d['image_size']} px; "
            f"{d['ms_per_test_image']} ms per test image"
        )
        s, x = d["source"], d["random"]
        print(
            f"  source split, seeds {s['seeds']}: {s['flagged_without_copy']} of "
            f"{s['test_images']} test images flagged ({d['source_flagged_pct']} %); most inliers "
            f"with another cell {s['most_inliers_other_cell']}"
        )
        print(
            f"  random split, seeds {x['seeds']}: {x['flagged_with_copy']} of "
            f"{x['with_copy_in_train']} test images with a copy in training flagged "
            f"({d['random_copies_flagged_pct']} %); {x['flagged_on_another_cell']} flagged on "
            f"another cell; {x['missed_with_too_few_keypoints']} missed had too few keypoints; "
            "best inliers with their own cell (min, 1 %, median) "
            f"{x['own_cell_best_inliers_quantiles']}; most with another cell "
            f"{x['most_inliers_other_cell']}"
        )


if __name__ == "__main__":
    main()
