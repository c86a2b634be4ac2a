# ruff: noqa: RUF001  (the printed summary is for people: an en dash)
"""Benchmark: online augmentation (`train.online_augmentation`) against augmented copies on disk
(`augment.copies`), same originals, same ranges, same split.

    python bench/online_augmentation.py [--quick]

Two data sets: the synthesize stage's 2-class cells at params.yaml's size and number, and
bench/time_to_accuracy.py's 4-class JPEG set. Each goes through the copies, augment and prepare
stage scripts twice, and is trained by the train stage's own code (params.yaml's model and
recipe, bench/time_to_accuracy.py's `run_recipe`):

copies   params.yaml: `augment.copies` warped copies of every original on disk (the training and
         validation splits hold them; the test split holds originals only)
online   `augment.copies: 0` and `train.online_augmentation: true`: the originals, every training
         batch warped afresh each epoch within the same augment ranges; the epochs, warm-up and
         patience are multiplied by 1 + `augment.copies`, so both ways train on as many images

For each way: training images, epochs and seconds until validation accuracy first comes within 1
point of its best (validation holds copies in one way and not in the other: compare the test
figures), the seconds and epochs run, and test accuracy on the same test originals with its 95 %
bootstrap interval. --quick: the tests' tiny params on the 2-class set only, to show that it
runs; its numbers mean nothing.
"""

import argparse
import json
import tempfile
from pathlib import Path

import tiny_data
import yaml
from time_to_accuracy import WITHIN, run_recipe, write_four_class

from blastcell.params import load, write_overridden


def online_overrides(params_path: Path) -> list[str]:
    """The params of the online way: no copies, online augmentation, the schedule in images."""
    p = load(params_path)
    scale = 1 + p.augment.copies
    return [
        "augment.copies=0",
        "train.online_augmentation=true",
        f"train.epochs={p.train.epochs * scale}",
        f"train.warmup_epochs={p.train.warmup_epochs * scale}",
        f"train.patience={p.train.patience * scale}",
    ]


def prepared(folder: Path, params_path: Path, data: Path, copies: Path) -> Path:
    """`data` through the augment and prepare stage scripts, the copies stage's `copies` found
    already; the prepared folder."""
    out = folder / "prepared"
    tiny_data.run_stage(
        "augment",
        params_path,
        *("--input", data, "--copies", copies, "--output", folder / "augmented"),
        *("--preview", folder / "preview.png", "--classes", folder / "classes.csv"),
        *("--manifest", folder / "manifest.csv", "--report", folder / "data.json"),
    )
    tiny_data.run_stage("prepare", params_path, "--input", folder / "augmented", "--output", out)
    return out


def compare(folder: Path, params_path: Path, data: Path) -> dict:
    """Both ways on the originals in `data`, with `params_path`'s params."""
    side = folder / "side"
    side.mkdir(parents=True)
    tiny_data.run_stage(
        "copies",
        params_path,
        *("--input", data, "--output", side / "copies", "--metrics", side / "copies.json"),
        *("--report", side / "copies_report.json", "--gallery", side / "copies.png"),
    )
    results = {}
    ways = {"copies": ["train.online_augmentation=false"], "online": online_overrides(params_path)}
    for way, overrides in ways.items():
        (folder / way).mkdir()
        way_params = write_overridden(params_path, overrides, folder / way / "params.yaml")
        data_path = prepared(folder / way, way_params, data, side / "copies")
        run = run_recipe(data_path, load(way_params))
        spec = json.loads((data_path / "spec.json").read_text())
        results[way] = {**run, "images": spec["images"], "params": overrides}
    copies, online = results["copies"], results["online"]
    results["test_accuracy_gain"] = round(online["test_accuracy"] - copies["test_accuracy"], 4)
    results["seconds_to_accuracy_ratio"] = round(
        copies["seconds_to_accuracy"] / max(online["seconds_to_accuracy"], 1e-9), 2
    )
    return results


def measure(quick: bool = False) -> dict:
    """The figures on the 2-class set and, unless `quick`, the 4-class set."""
    detail: dict = {"quick": quick}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        params_path = tiny_data.params_for(quick, tmp / "params.yaml")
        tiny_data.run_stage("synthesize", params_path, "--output", tmp / "synthetic")
        detail["two_class"] = compare(tmp / "two", params_path, tmp / "synthetic")
        if not quick:
            raw = yaml.safe_load(params_path.read_text())
            write_four_class(tmp / "jpeg", 60, 257, raw["synthesize"]["difficulty"], 7)
            detail["four_class"] = compare(tmp / "four", params_path, tmp / "jpeg")
    two = detail["two_class"]
    return {
        "online_augmentation_test_gain": two["test_accuracy_gain"],
        "online_augmentation_time_ratio": two["seconds_to_accuracy_ratio"],
        "online_augmentation_detail": detail,
    }


def describe(name: str, r: dict) -> str:
    lines = [
        f"{name}: online minus copies, test accuracy {r['test_accuracy_gain']:+.3f}; copies' "
        f"seconds to accuracy over online's {r['seconds_to_accuracy_ratio']:.2f}"
    ]
    for way in ("copies", "online"):
        x = r[way]
        low, high = x["test_accuracy_ci95"]
        lines.append(
            f"  {way:>6}: {x['images']['train']} training images; within {WITHIN * 100:.0f} point "
            f"of its best validation accuracy ({x['best_val_accuracy']:.3f}) after "
            f"{x['epochs_to_accuracy']} epochs, {x['seconds_to_accuracy']:.0f} s; "
            f"{x['epochs_run']} epochs run ({x['stop_reason']}), {x['train_seconds']:.0f} s; "
            f"test accuracy {x['test_accuracy']:.3f} (95 % CI {low:.3f}–{high:.3f}) on "
            f"{x['test_images']} test images"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny data, 2-class only")
    args = parser.parse_args()
    r = measure(args.quick)
    detail = r["online_augmentation_detail"]
    for name in ("two_class", "four_class"):
        if name in detail:
            print(describe(name.replace("_", "-"), detail[name]))
    print(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
