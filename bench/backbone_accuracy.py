# ruff: noqa: RUF001  (the printed summary is for people: an en dash)
"""Benchmark: what each `model.architecture` reaches from random weights.

    python bench/backbone_accuracy.py [--quick]

The seed CNN (params.yaml's) and each Keras Applications backbone, random weights, trained on
bench/time_to_accuracy.py's 4-class JPEG set (60 cells of each class, augmented and prepared by
the stage scripts) at 128 and at 224 px, each with params.yaml's recipe and `train.precision:
auto` (the faster precision of this CPU for that architecture), through the train stage's own
code (bench/time_to_accuracy.py's `run_recipe`): epochs and seconds until validation accuracy
first comes within 1 point of its best, the epochs and seconds run, and test accuracy with its
95 % bootstrap interval. Each run's figures are printed as it ends. bench/warm_start.py starts
from such models. --quick: the tests' tiny params at their 32 px, tiny sets, the seed CNN alone
(a backbone's graph takes 15 s to trace), to show that it runs; its numbers mean nothing.
"""

import argparse
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import tiny_data
import yaml
from time_to_accuracy import WITHIN, run_recipe, write_four_class

from blastcell import params
from blastcell.params import load, write_overridden
from blastcell.tf import models_in_turn

SIZES = (128, 224)


def four_class_sets(folder: Path, params_path: Path, sizes: tuple[int, ...], quick: bool):
    """The 4-class JPEG set, augmented once by the stage scripts and prepared at each size;
    {size: prepared folder}."""
    raw = yaml.safe_load(params_path.read_text())
    per_class, side = (8, 64) if quick else (60, 257)
    jpeg = folder / "jpeg"
    write_four_class(jpeg, per_class, side, raw["synthesize"]["difficulty"], 7)
    base = write_overridden(params_path, [f"data.dir={jpeg}"], folder / "params.yaml")
    augmented = tiny_data.augmented(base, jpeg, folder / "augmented", folder / "side")
    sets = {}
    for size in sizes:
        sized = write_overridden(base, [f"prepare.image_size={size}"], folder / f"{size}.yaml")
        out = folder / f"prepared_{size}"
        tiny_data.run_stage("prepare", sized, "--input", augmented, "--output", out)
        sets[size] = (out, sized)
    return sets


def weights_file(architecture: str) -> str:
    """A 4-class model of `architecture`, as `model.weights` names it."""
    return f"{params.WEIGHTS_DIR}/four_class_{architecture}.keras"


def from_scratch(sets: dict, architectures: tuple[str, ...], keep_in: Path | None = None) -> dict:
    """Each architecture at each size on the 4-class set; {architecture: {size: run}}. With
    `keep_in`, each model is saved there as `weights_file` names it (one size: a warm start's)."""
    detail: dict = {}
    for size, (data, params_path) in sets.items():
        for name in architectures:
            keep = None if keep_in is None else keep_in / weights_file(name)
            run = run_recipe(data, load(params_path, [f"model.architecture={name}"]), keep)
            detail.setdefault(name, {})[str(size)] = run
            report(f"{name} {size} px", run, architecture=name, size=size)
    return detail


def measure(quick: bool = False) -> dict:
    """Each architecture from random weights at each size."""
    models_in_turn()  # model after model in this process: each traced afresh, as expected
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        params_path = tiny_data.params_for(quick, tmp / "params.yaml")
        sizes = (load(params_path).prepare.image_size,) if quick else SIZES
        architectures = ("seed_cnn",) if quick else ("seed_cnn", *params.BACKBONES)
        sets = four_class_sets(tmp / "four", params_path, sizes, quick)
        scratch = from_scratch(sets, architectures)
    data = next(iter(scratch.values()))[str(sizes[0])]
    return {
        "backbone_accuracy_detail": {
            "quick": quick,
            "train_images": data["train_images"],
            "test_images": data["test_images"],
            **scratch,
        },
    }


def report(title: str, run: dict, **where: object) -> None:
    """Print a run as it ends: a line for people, then its figures as JSON (`where` first), so a
    long run that dies keeps what it measured in its log."""
    print(describe_run(title, run), flush=True)
    print("  " + json.dumps({**where, **run}), flush=True)


def describe_run(name: str, x: dict) -> str:
    low, high = x["test_accuracy_ci95"]
    return (
        f"{name}: {x['train_images']} training images, {x['parameters']:,} parameters, "
        f"{x['policy']}; within {WITHIN * 100:.0f} point of its best validation accuracy "
        f"({x['best_val_accuracy']:.3f}) after {x['epochs_to_accuracy']} epochs, "
        f"{x['seconds_to_accuracy']:.0f} s; {x['epochs_run']} epochs run ({x['stop_reason']}), "
        f"{x['train_seconds']:.0f} s; test accuracy {x['test_accuracy']:.3f} "
        f"(95 % CI {low:.3f}–{high:.3f}) on {x['test_images']} test images"
    )


def main(doc: str = __doc__, measure: Callable[[bool], dict] = measure) -> None:
    """The command line of this benchmark, or of another (`doc`, `measure`) that prints its
    runs as they end (bench/warm_start.py)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny data, one model: that it runs")
    args = parser.parse_args()
    print(json.dumps(measure(args.quick), indent=2))


if __name__ == "__main__":
    main()
