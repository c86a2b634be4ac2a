"""Stage cv (cv/dvc.yaml): repeated splits, each prepared, audited, trained and scored afresh.

Params: cv.splits (splits drawn with seeds 1 to N), and every param of the prepare, audit, train
and evaluate stages, which it runs once per split as the default pipeline does, with the split's
seed in place of base.seed for the split alone (`prepare.py --split-seed`). Input: the augment
stage's folder. Each split's shards, model and reports live in a scratch folder beside the
outputs, removed as soon as the split is scored, so nothing per split is left behind. Outputs:
`--splits`, a JSON table (a DVC plot) with one row of headline numbers per split (test images,
accuracy, balanced accuracy, sensitivity, specificity, classification error, ROC AUC, average
precision, ECE, best epoch, near-duplicates and median nearest distance of the leakage audit);
`--metrics`, JSON metrics summarising them (the mean and standard deviation of accuracy).
"""

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from blastcell import aggregate, progress, runner
from blastcell import params as P
from blastcell.data import DataError, read_json, scratch_dir, write_json

STAGES = Path(__file__).resolve().parent


class SplitFailed(DataError):
    """A stage failed on one split; the message is its own one-line error."""


def run_stage(name: str, params: Path, seed: int, *args: object) -> None:
    """Run stages/<name>.py with `args`; raise SplitFailed with its error if it fails."""
    cmd = [sys.executable, str(STAGES / f"{name}.py"), "--params", str(params), *map(str, args)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode == 0:
        return
    lines = result.stderr.strip().splitlines()
    if not (lines and lines[-1].startswith(f"{name}: ")) or runner.debugging():
        sys.stderr.write(result.stderr)  # not a one-line data or params error: show it whole
    last = lines[-1] if lines else f"{name} exited with status {result.returncode}"
    raise SplitFailed(f"split {seed}: {last}")


def score_split(folder: Path, data: Path, params: Path, seed: int, bar) -> dict:
    """Prepare, audit, train and evaluate one split in `folder`; its row of headline numbers."""
    prepared, model = folder / "prepared", folder / "model.keras"
    steps = [
        ("prepare", ["--input", data, "--output", prepared, "--split-seed", seed]),
        ("audit", ["--data", prepared, "--metrics", folder / "audit_metrics.json",
                   "--report", folder / "audit.json", "--nearest", folder / "nearest.csv"]),
        ("train", ["--input", prepared, "--model", model, "--metrics",
                   folder / "train_metrics.json", "--report", folder / "train.json",
                   "--plots", folder / "train_plots"]),
        ("evaluate", ["--data", prepared, "--model", model, "--metrics",
                      folder / "evaluate_metrics.json", "--report", folder / "evaluate.json",
                      "--plots", folder / "evaluate_plots"]),
    ]  # fmt: skip
    for name, args in steps:
        bar.set_description(f"cv: split {seed}: {name}")
        run_stage(name, params, seed, *args)
        bar.update(1)
    return aggregate.split_row(
        seed, {name: read_json(folder / f"{name}.json") for name in ("evaluate", "train", "audit")}
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--splits", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    args = parser.parse_args(argv)
    seeds = P.load(args.params).cv.seeds

    rows = []
    with (
        scratch_dir(args.splits.parent, "cv-work") as work,
        progress.bar(4 * len(seeds), "cv", unit="stage") as bar,
    ):
        for seed in seeds:
            folder = work / f"split_{seed}"
            rows.append(score_split(folder, args.input, args.params, seed, bar))
            shutil.rmtree(folder)
    write_json(args.splits, rows)
    write_json(args.metrics, aggregate.summary(rows))
    mean = {
        name: aggregate.stats(aggregate.column(rows, name), 3) for name, _ in aggregate.COLUMNS
    }
    acc = mean["accuracy"]
    print(
        f"cv: {len(rows)} splits: accuracy {acc['mean']:.3f} ± {acc['std']:.3f} "
        f"({acc['min']:.3f} to {acc['max']:.3f}); mean sensitivity "
        f"{mean['sensitivity']['mean']}, specificity {mean['specificity']['mean']}, ROC AUC "
        f"{mean['roc_auc']['mean']}; at most {mean['near_duplicates']['max']} near-duplicates "
        "in a split (python -m blastcell.aggregate cv/splits.json: every column)"
    )
    P.trace("cv")


if __name__ == "__main__":
    runner.run(main)
