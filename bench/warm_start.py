"""Benchmark: a warm start from a model of other cells vs random weights, on a small set.

    python bench/warm_start.py [--quick]

"Pretrain on lab A, fine-tune on lab B": for the seed CNN and EfficientNetV2-B0, a model trained
from random weights on bench/time_to_accuracy.py's 4-class JPEG set at 128 px (as
bench/backbone_accuracy.py trains it) is the starting point (`model.weights:
weights/<file>.keras`: every layer but the output, rebuilt for 2 classes) for a small 2-class
set of other cells: the synthesize stage's blasts and other cells, 75 of each, half of them to
test, so that 60 originals (and their augmented copies) train. On that set, each architecture
trains from random weights and from the 4-class model with params.yaml's recipe; and
EfficientNetV2-B0 also with the fine-tuning recipe: `train.frozen_epochs: 5` (the head alone),
then the whole at `train.fine_tune_learning_rate`'s default and at 10 times it. For each run:
epochs and seconds to accuracy (validation within 1 point of its best), the epochs and seconds
run, test accuracy with its 95 % bootstrap interval (bench/time_to_accuracy.py's `run_recipe`).
Each run's figures are printed as it ends. --quick: the tests' tiny params at their 32 px, tiny
sets, the seed CNN alone (every way's params are still checked), to show that it runs; its
numbers mean nothing.
"""

import contextlib
import tempfile
from pathlib import Path

import backbone_accuracy
import tiny_data
from backbone_accuracy import four_class_sets, from_scratch, report, weights_file
from time_to_accuracy import run_recipe

from blastcell.params import load, write_overridden
from blastcell.tf import models_in_turn

SIZE = 128
ARCHITECTURES = ("seed_cnn", "efficientnet_v2_b0")
FROZEN_EPOCHS = 5  # the fine-tuning recipe's rows
SMALL_SET = [  # 150 cells, half to test, 60 train
    "synthesize.n_blast=75",
    "synthesize.n_not_blast=75",
    "prepare.test_fraction=0.5",
    "prepare.val_fraction=0.1",
]


def ways(quick: bool) -> dict[str, dict[str, list[str]]]:
    """Each architecture's runs on the small set: their params beside the architecture."""
    # the tiny params train 2 epochs: 1 frozen, and no warm-up epoch left for the second
    frozen = (
        ["train.frozen_epochs=1", "train.warmup_epochs=0"]
        if quick
        else [f"train.frozen_epochs={FROZEN_EPOCHS}"]
    )
    return {
        "seed_cnn": {"scratch": [], "warm": []},
        "efficientnet_v2_b0": {
            "scratch": [],
            "warm": [],
            "warm_frozen": frozen,  # then train.fine_tune_learning_rate's default
            "warm_frozen_faster": [*frozen, "train.fine_tune_learning_rate=0.0001"],
        },
    }


def small_set(folder: Path, params_path: Path, size: int, quick: bool) -> tuple[Path, Path]:
    """The small 2-class set, made and prepared by the stage scripts: (its prepared folder, its
    params)."""
    folder.mkdir(parents=True)
    cells = SMALL_SET[2:] if quick else SMALL_SET  # quick: the tiny params' 24 cells
    small = write_overridden(
        params_path, [*cells, f"prepare.image_size={size}"], folder / "small.yaml"
    )
    tiny_data.run_stage("synthesize", small, "--output", folder / "synthetic")
    return tiny_data.augment_and_prepare(folder, small, folder / "synthetic")["prepared"], small


def fine_tune(
    data: Path, params_path: Path, root: Path, architectures: tuple[str, ...], quick: bool
) -> dict:
    """Each way of `ways` on the prepared small set `data`, from the 4-class models in
    root/weights, for `architectures`; {architecture: {way: run}}. Every way's params are
    checked, trained or not."""
    detail: dict = {}
    with contextlib.chdir(root):  # model.weights is relative to the working folder
        for name, runs in ways(quick).items():
            for way, overrides in runs.items():
                weights = [] if way == "scratch" else [f"model.weights={weights_file(name)}"]
                config = load(params_path, [f"model.architecture={name}", *weights, *overrides])
                if name not in architectures:
                    continue
                run = {**run_recipe(data, config), "params": [*weights, *overrides]}
                detail.setdefault(name, {})[way] = run
                report(f"{name} {way} (small set)", run, architecture=name, way=way)
    return detail


def measure(quick: bool = False) -> dict:
    """The 4-class models, then each way on the small set."""
    models_in_turn()  # model after model in this process: each traced afresh, as expected
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        params_path = tiny_data.params_for(quick, tmp / "params.yaml")
        size = load(params_path).prepare.image_size if quick else SIZE
        # quick: the seed CNN alone (a backbone's graph takes 15 s to trace)
        architectures = ARCHITECTURES[:1] if quick else ARCHITECTURES
        sets = four_class_sets(tmp / "four", params_path, (size,), quick)
        pretrained = from_scratch(sets, architectures, keep_in=tmp)
        data, small = small_set(tmp / "small", params_path, size, quick)
        detail = fine_tune(data, small, tmp, architectures, quick)
    for name in detail:
        detail[name] = {"pretrained": pretrained[name][str(size)], **detail[name]}
    gain = {
        name: round(runs["warm"]["test_accuracy"] - runs["scratch"]["test_accuracy"], 4)
        for name, runs in detail.items()
    }
    return {
        "warm_start_detail": {"quick": quick, "image_size": size, **detail},
        "warm_start_test_gain": gain,
    }


if __name__ == "__main__":
    backbone_accuracy.main(__doc__, measure)
