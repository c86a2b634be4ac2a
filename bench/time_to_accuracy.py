# ruff: noqa: RUF001  (the printed summary is for people: an en dash)
"""Benchmark: time to accuracy of the seed's training recipe and of the default one.

    python bench/time_to_accuracy.py [--quick] [--data data/prepared] [--params params.yaml]
                                     [--set KEY=VALUE ...] [--no-four-class]

Both recipes train the same architecture (params.yaml's `model`, the blocks and width) on the
same prepared data, through the train stage's own code, one after the other in this process:

seed     the seed's recipe: Adam at a constant 1e-4, no batch normalisation, no warm-up, no
         label smoothing, all 50 epochs (`SEED_RECIPE`, the overrides `dvc exp run -S` takes)
default  params.yaml's `model.batch_norm` and `train` section, with `--set` overrides on top
         (to try a recipe of your own against the seed's)

For each: the epochs and wall seconds (training and validation, from the start of `fit`) until
validation accuracy first comes within 1 point of that run's best; the epochs run and why
training ended; test accuracy with its 95 % bootstrap interval. The ratio is the seed's seconds
to accuracy over the default's (bigger is better); the target is at least 3 with the default's
test accuracy at least the low end of the seed's interval.

Two data sets: the default pipeline's (`dvc repro prepare` first) and a harder 4-class one made
here (blast, lymphocyte, neutrophil and monocyte cells of the synthesize stage's renderer, saved
as JPEG folders, run through the augment and prepare stage scripts). --quick: tiny data and
tiny params (tests/tiny.yaml), 2 epochs, to show that it runs; its numbers mean nothing.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import tiny_data
import yaml
from PIL import Image

from blastcell import evaluate, model, prepared, synthesize, train
from blastcell.params import Params, load
from blastcell.tf import keras

ROOT = Path(__file__).resolve().parents[1]
SEED_RECIPE = [
    "model.input_scaling=unit",
    "model.batch_norm=false",
    "train.epochs=50",
    "train.learning_rate=0.0001",
    "train.schedule=constant",
    "train.warmup_epochs=0",
    "train.patience=0",
    "train.label_smoothing=0.0",
]
WITHIN = 0.01  # "reached": validation accuracy within 1 point of the run's best
RESAMPLES = 2000  # bootstrap resamples of the test set for the interval
# The 4-class set: cell types of the synthesize stage's renderer (latent score for lymphoid).
FOUR_CLASSES = {
    "blast": (synthesize.LYMPHOID, +1),
    "lymphocyte": (synthesize.LYMPHOID, -1),
    "neutrophil": (synthesize.NEUTROPHIL, -1),
    "monocyte": (synthesize.MONOCYTE, -1),
}


class EpochClock(keras.callbacks.Callback):
    """Wall seconds from the start of training to the end of each epoch (validation included),
    and each epoch's validation accuracy."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []
        self.val_accuracy: list[float] = []
        self._start = 0.0

    def on_train_begin(self, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)
        self.val_accuracy.append(float((logs or {})["val_accuracy"]))


def time_to_accuracy(clock: EpochClock) -> tuple[int, float]:
    """(epochs, seconds) until validation accuracy first came within WITHIN of its best."""
    best = max(clock.val_accuracy)
    first = next(i for i, acc in enumerate(clock.val_accuracy) if acc >= best - WITHIN)
    return first + 1, clock.seconds[first]


def run_recipe(data: Path, params: Params, keep: Path | None = None) -> dict:
    """Train with `params` on the prepared folder `data`, time it, score the test split; the
    trained model is saved as `keep` if given (a warm start's file)."""
    keras.backend.clear_session()
    clock = EpochClock()
    trained = train.train(
        data,
        params.model,
        params.train,
        params.base.seed,
        callbacks=[clock],
        augment=params.augment,
    )
    epochs, seconds = time_to_accuracy(clock)
    if keep is not None:
        model.save(trained.model, keep)
    folder = prepared.read(data)
    y_true, probs = evaluate.predict(trained.model, folder, params.evaluate.batch_size)
    classes = folder.spec.classes
    ci = evaluate.bootstrap(y_true, probs, classes, RESAMPLES, params.base.seed)["ci95"]
    run = trained.summary
    return {
        "epochs_to_accuracy": epochs,
        "seconds_to_accuracy": round(seconds, 1),
        "best_val_accuracy": round(max(clock.val_accuracy), 4),
        "epochs_run": run.epochs_run,
        "best_epoch": run.best_epoch,
        "stop_reason": run.stop_reason(),
        "train_seconds": round(clock.seconds[-1], 1),
        "test_accuracy": round(float(np.mean(np.argmax(probs, axis=1) == y_true)), 4),
        "test_accuracy_ci95": [ci["accuracy"]["low"], ci["accuracy"]["high"]],
        "test_images": len(y_true),
        "train_images": folder.spec.images["train"],
        "policy": trained.policy,
        "parameters": trained.model.count_params(),
        "val_accuracy": [round(a, 4) for a in clock.val_accuracy],
    }


def compare(data: Path, params_path: Path, overrides: list[str], quick: bool) -> dict:
    """The seed's recipe, then the default one, on `data`; the ratio of their times."""
    tiny = ["train.epochs=2"] if quick else []
    seed = run_recipe(data, load(params_path, [*SEED_RECIPE, *tiny]))
    default_params = load(params_path, overrides)
    default = run_recipe(data, default_params)
    ratio = seed["seconds_to_accuracy"] / max(default["seconds_to_accuracy"], 1e-9)
    return {
        "seed": seed,
        "default": default,
        "ratio": round(ratio, 2),
        "default_recipe": recipe(default_params),
        "meets_target": ratio >= 3 and default["test_accuracy"] >= seed["test_accuracy_ci95"][0],
        "train_images": prepared.read_spec(data).images["train"],
    }


def recipe(params: Params) -> dict:
    """The keys that make a recipe, as params.yaml has them."""
    t = params.train
    keys = ("epochs", "learning_rate", "schedule", "warmup_epochs", "patience", "label_smoothing")
    return {
        "model.batch_norm": params.model.batch_norm,
        **{f"train.{k}": getattr(t, k) for k in keys},
    }


def write_four_class(
    folder: Path, per_class: int, size: int, difficulty: float, seed: int
) -> None:
    """`per_class` JPEGs of each of FOUR_CLASSES, one folder per class (cell i of a class is
    drawn from the generator [seed, class index, i]; a lymphoid score is ±d plus noise)."""
    d = synthesize.separation(difficulty)
    for k, (name, (cell_type, sign)) in enumerate(FOUR_CLASSES.items()):
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            rng = np.random.default_rng([seed, k, i])
            latent = synthesize.Latent(cell_type, sign * d + rng.standard_normal())
            image = synthesize.render(latent, size, rng, difficulty)
            path = folder / name / f"{name}_{i:04d}.jpg"
            Image.fromarray(image).save(path, quality=92)


def four_class(tmp: Path, params_path: Path, quick: bool) -> Path:
    """The 4-class JPEG set, augmented and prepared by the stage scripts; its prepared folder."""
    raw = yaml.safe_load(params_path.read_text())
    size, per_class = (64, 8) if quick else (257, 60)
    raw["data"]["dir"] = str(tmp / "jpeg")
    write_four_class(tmp / "jpeg", per_class, size, raw["synthesize"]["difficulty"], 7)
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return tiny_data.augment_and_prepare(tmp, path, tmp / "jpeg")["prepared"]


def measure(
    quick: bool = False,
    data: Path = ROOT / "data/prepared",
    params_path: Path = ROOT / "params.yaml",
    overrides: tuple[str, ...] = (),
    four: bool = True,
) -> dict:
    """The figures on the default data and, with `four`, on the 4-class set."""
    results: dict = {"quick": quick}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if quick:
            made = tiny_data.build(tmp / "tiny")
            data, params_path = made["prepared"], made["params"]
        elif not data.is_dir():
            raise SystemExit(f"{data} is missing: run `dvc repro prepare` (or `dvc pull`) first")
        results["default_data"] = compare(data, params_path, list(overrides), quick)
        if four:
            (tmp / "four").mkdir()
            four_data = four_class(tmp / "four", params_path, quick)
            results["four_class"] = compare(four_data, params_path, list(overrides), quick)
    main = results["default_data"]
    return {
        "time_to_accuracy_ratio": main["ratio"],
        "time_to_accuracy_seed_s": main["seed"]["seconds_to_accuracy"],
        "time_to_accuracy_default_s": main["default"]["seconds_to_accuracy"],
        "time_to_accuracy_detail": results,
    }


def describe(name: str, r: dict) -> str:
    lines = [f"{name} ({r['train_images']} training images), ratio {r['ratio']:.2f}:"]
    for recipe_name in ("seed", "default"):
        x = r[recipe_name]
        low, high = x["test_accuracy_ci95"]
        lines.append(
            f"  {recipe_name:>7}: within {WITHIN * 100:.0f} point of its best validation accuracy "
            f"({x['best_val_accuracy']:.3f}) after {x['epochs_to_accuracy']} epochs, "
            f"{x['seconds_to_accuracy']:.0f} s; {x['epochs_run']} epochs run "
            f"({x['stop_reason']}), {x['train_seconds']:.0f} s; test accuracy "
            f"{x['test_accuracy']:.3f} (95 % CI {low:.3f}–{high:.3f})"
        )
    lines.append(f"  default recipe: {r['default_recipe']}; target met: {r['meets_target']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny data, 2 epochs: that it runs")
    parser.add_argument("--data", type=Path, default=ROOT / "data/prepared")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override the default recipe (repeatable)")  # fmt: skip
    parser.add_argument("--no-four-class", action="store_true", help="the default data only")
    args = parser.parse_args()
    r = measure(args.quick, args.data, args.params, tuple(args.set), not args.no_four_class)
    detail = r["time_to_accuracy_detail"]
    for name in ("default_data", "four_class"):
        if name in detail:
            print(describe(name.replace("_", " "), detail[name]))
    print(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
