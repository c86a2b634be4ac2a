"""Measure: how far augmented copies of a cell lie from each other, and from other cells, by the
leakage audit's distance. The evidence behind the default `audit.threshold`.

    python bench/audit_distances.py [--quick] [--input data/augmented] [--params params.yaml]
                                    [--splits 20] [--thresholds 0.04 0.05 0.06 0.07]

Reads the augment stage's folder (every original and its copies, `index.csv` naming each one's
source), resizes every image to `prepare.image_size` as prepare does, and describes it as the
audit does (`audit.bins`, leaving out the constant fill). Prints quantiles of
- each image's nearest copy of the same cell, and its nearest other cell, over the whole set;
- the nearest training image of each test image over `--splits` seeds of the seed's random
  split (nearly every test image has copies in training) and of the source split (none has);
and, for a few thresholds, how many leaked test images are flagged and how many test images
are flagged though their nearest training image is another cell. It asserts nothing.
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np
import tiny_data

from blastcell import audit, augmented, images, prepare
from blastcell.params import load

QUANTILES = (0, 0.01, 0.05, 0.5, 0.95, 0.99, 1)
THRESHOLDS = (0.04, 0.05, 0.06, 0.07)
ROOT = Path(__file__).resolve().parents[1]


def quantiles(values: np.ndarray) -> list[float]:
    return [round(float(v), 4) for v in np.quantile(values, QUANTILES)]


def text(values: list[float]) -> str:
    return " ".join(f"{v:.4f}" for v in values)


def measure(
    quick: bool = False,
    folder: Path = ROOT / "data/augmented",
    params_path: Path = ROOT / "params.yaml",
    n_splits: int = 20,
    thresholds: tuple[float, ...] = THRESHOLDS,
) -> dict:
    """The distance quantiles and flagged counts; `quick`: tiny data of its own, 3 seeds."""
    if quick:
        with tempfile.TemporaryDirectory() as tmp:
            made = tiny_data.build(Path(tmp))
            return distances(made["augmented"], made["params"], 3, thresholds)
    if not folder.is_dir():
        raise SystemExit(f"{folder} is missing: run `dvc repro augment` (or `dvc pull`) first")
    return distances(folder, params_path, n_splits, thresholds)


def distances(folder: Path, params_path: Path, n_splits: int, thresholds) -> dict:
    params = load(params_path)
    size, bins = params.prepare.image_size, params.audit.bins
    fill = audit.fill_colour(params.augment)

    classes, records = augmented.read_index(folder)
    pixels = np.stack([images.resize(images.read(folder / r.file), size) for r in records])
    x = audit.descriptors(pixels, bins, fill)
    distance = 1 - (x @ x.T).toarray()
    np.fill_diagonal(distance, np.inf)
    source = np.array([r.source for r in records])
    same = source[:, None] == source[None, :]
    result: dict = {
        "audit_images": len(records),
        "audit_image_size": size,
        "audit_quantiles": list(QUANTILES),
        "audit_nearest_same_cell": quantiles(np.where(same, distance, np.inf).min(1)),
        "audit_nearest_other_cell": quantiles(np.where(~same, distance, np.inf).min(1)),
        "audit_splits": {},
    }
    index = {r.file: i for i, r in enumerate(records)}
    for how in ("random", "source"):
        found, same_cell, leaked = [], [], []
        for seed in range(1, n_splits + 1):
            split = params.prepare.model_copy(update={"split": how})
            parts = prepare.split(records, classes, split, seed)
            test = np.array([index[r.file] for r in parts["test"]])
            train = np.array([index[r.file] for r in parts["train"]])
            block = distance[np.ix_(test, train)]
            nearest = train[block.argmin(1)]
            found.append(block.min(1))
            same_cell.append(source[test] == source[nearest])
            leaked.append(np.isin(source[test], source[train]))
        d, s, leak = (np.concatenate(v) for v in (found, same_cell, leaked))
        result["audit_splits"][how] = {
            "seeds": n_splits,
            "test_images": len(d),
            "leaked": int(leak.sum()),
            "nearest_is_same_cell": int(s.sum()),
            "nearest_same_cell": quantiles(d[s]) if s.any() else None,
            "nearest_other_cell": quantiles(d[~s]) if (~s).any() else None,
            "flagged": {
                str(t): {
                    "leaked_flagged": int(np.sum(leak & (d < t))),
                    "other_cell_flagged": int(np.sum(~s & (d < t))),
                }
                for t in thresholds
            },
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny data of its own: that it runs")
    parser.add_argument("--input", type=Path, default=ROOT / "data/augmented")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--splits", type=int, default=20)
    parser.add_argument("--thresholds", type=float, nargs="+", default=list(THRESHOLDS))
    args = parser.parse_args()
    r = measure(args.quick, args.input, args.params, args.splits, tuple(args.thresholds))
    print(f"{r['audit_images']} images at {r['audit_image_size']} px")
    print(f"quantiles {r['audit_quantiles']}")
    print(f"nearest copy of the same cell: {text(r['audit_nearest_same_cell'])}")
    print(f"nearest other cell:            {text(r['audit_nearest_other_cell'])}")
    for how, h in r["audit_splits"].items():
        print(
            f"\n{how} split, {h['seeds']} seeds: {h['test_images']} test images, {h['leaked']} "
            f"with copies in training, {h['nearest_is_same_cell']} whose nearest training image "
            "is the same cell"
        )
        for key in ("nearest_same_cell", "nearest_other_cell"):
            if h[key] is not None:
                print(f"  {key.replace('_', ' ')}: {text(h[key])}")
        for t, f in h["flagged"].items():
            print(
                f"  threshold {t}: {f['leaked_flagged']} of {h['leaked']} leaked flagged, "
                f"{f['other_cell_flagged']} flagged whose nearest is another cell"
            )


if __name__ == "__main__":
    main()
