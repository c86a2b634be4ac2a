"""Stage cv (cv/dvc.yaml): repeated splits, each prepared, audited, trained and scored afresh.

Params: cv.splits (splits drawn with seeds 1 to N) and every param of the prepare, audit, train
and evaluate stages (it runs them once per split as the default pipeline does, with the split's
seed in place of base.seed for the split alone: `prepare.py --split-seed`). Inputs: the augment
stage's folder, and the copies stage's (the audit leaves out the overlay it found). The four
scripts run in this process (their `run`, called as their command lines would call it), so
TensorFlow starts once, not in every stage of every split. Each split's shards, model and reports
live in a scratch folder beside the outputs, removed as soon as the split is scored, so nothing per
split is left behind. Outputs: `--splits`, a JSON table (a DVC plot) with one row of headline
numbers per split (test images, accuracy, balanced accuracy, sensitivity, specificity,
classification error, ROC AUC, average precision, ECE, best epoch, near-duplicates and median
nearest distance of the leakage audit); `--metrics`, JSON metrics summarising them (the mean and
standard deviation of accuracy).
"""

import shutil
from pathlib import Path

from blastcell import cv, progress, runner
from blastcell.files import read_json, scratch_dir, write_json
from blastcell.runner import Output
from blastcell.tf import models_in_turn

STAGES = Path(__file__).resolve().parent
STEPS = ("prepare", "audit", "train", "evaluate")
REPORTS = ("evaluate", "train", "audit")


def score_split(
    folder: Path, data: Path, copies: Path, params: Path, seed: int, stages: dict, bar
) -> dict:
    """Prepare, audit, train and evaluate one split in `folder`; its row of headline numbers."""
    prepared, model = folder / "prepared", folder / "model.keras"
    steps = {
        "prepare": ["--input", data, "--output", prepared, "--split-seed", seed],
        "audit": ["--data", prepared, "--copies", copies,
                  "--metrics", folder / "audit_metrics.json", "--report", folder / "audit.json",
                  "--nearest", folder / "nearest.csv"],
        "train": ["--input", prepared, "--model", model, "--metrics",
                  folder / "train_metrics.json", "--report", folder / "train.json",
                  "--plots", folder / "train_plots"],
        "evaluate": ["--data", prepared, "--model", model, "--metrics",
                     folder / "evaluate_metrics.json", "--report", folder / "evaluate.json",
                     "--plots", folder / "evaluate_plots"],
    }  # fmt: skip
    for name, args in steps.items():
        bar.set_description(f"cv: split {seed}: {name}")
        runner.run_stage(stages[name], ["--params", params, *args], f"split {seed}")
        bar.update(1)
    return cv.split_row(seed, {name: read_json(folder / f"{name}.json") for name in REPORTS})


def run(
    params, *, input: Path, copies: Path, splits: Output, metrics: Output, params_file: Path
) -> str:
    seeds = params.cv.seeds
    stages = {name: runner.stage_module(STAGES / f"{name}.py").run for name in STEPS}
    models_in_turn()
    rows = []
    with (
        scratch_dir(splits.parent, "cv-work") as work,
        progress.bar(len(STEPS) * len(seeds), "cv", unit="stage") as bar,
    ):
        for seed in seeds:
            folder = work / f"split_{seed}"
            rows.append(score_split(folder, input, copies, params_file, seed, stages, bar))
            shutil.rmtree(folder)
    write_json(splits, rows)
    write_json(metrics, cv.summary(rows))
    return cv.headline(rows)


if __name__ == "__main__":
    runner.main(run)
