"""Stage train: build the model from params and train it with the seed's recipe.

Params: base.seed, model.*, train.*. Input: the prepare stage's folder, streamed from its
TFRecord shards (memory holds the shuffle buffer and a few batches, not the data set).
Outputs: the best-validation model (`.keras`, takes raw uint8 pixels; its bytes depend only on
the weights) with `classes.json` (its output order) beside it; JSON metrics (the best epoch,
1-based, and the number of parameters); a JSON report of the best epoch (its losses and
accuracies, images trained and validated on); and, as DVC plots, the loss and accuracy per
epoch of the training and validation data (`loss.json`, `accuracy.json`, rewritten after every
epoch).

With `train.strategy: multi_worker`, run this same command on every worker with $TF_CONFIG set;
only the chief writes the outputs.
"""

import argparse
import tempfile
import time
from pathlib import Path

from blastcell import model as M
from blastcell import params as P
from blastcell import runner, shards, training
from blastcell.data import atomic_file, write_json
from blastcell.tf import keras


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--plots", type=Path, required=True)
    args = parser.parse_args(argv)
    params = P.load(args.params)
    cfg = params.train

    strategy = training.distribution(cfg.strategy)  # before any other TensorFlow op
    training.make_deterministic(params.base.seed)
    policy = M.resolve_precision(cfg.precision)
    keras.mixed_precision.set_global_policy(policy)
    chief = training.is_chief()

    spec = shards.read_spec(args.input)
    n_classes = len(spec.classes)
    by_data = cfg.strategy == "multi_worker"
    train, val = (
        shards.dataset(
            args.input,
            name,
            cfg.batch_size,
            shuffle_buffer=cfg.shuffle_buffer if name == "train" else None,
            seed=params.base.seed,
            shard_by_data=by_data,
        )
        for name in ("train", "val")
    )
    with strategy.scope():
        model = M.build(params.model, spec.image_size, n_classes)
        training.compile_model(model, n_classes, cfg.learning_rate)

    if not chief:  # workers train in step with the chief; their copies are thrown away
        training.fit(model, train, val, cfg)
        with tempfile.TemporaryDirectory() as scratch:
            model.save(Path(scratch) / "model.keras")
        return

    def write_curve(name: str, records: list[dict]) -> None:
        write_json(args.plots / f"{name}.json", records)

    start = time.monotonic()
    summary = training.fit(model, train, val, cfg, callbacks=[training.Curves(write_curve)])
    seconds = time.monotonic() - start
    with atomic_file(args.model) as tmp:
        M.save(model, tmp)
    write_json(args.model.with_name("classes.json"), spec.classes)  # for `blastcell predict`
    n_params = model.count_params()
    best = {k: round(v, 6) for k, v in sorted(summary.logs.items())}
    write_json(
        args.report,
        {
            "best_epoch": summary.best_epoch,
            "epochs": summary.epochs,
            "parameter_count": n_params,
            "train_images": spec.images["train"],
            "val_images": spec.images["val"],
            **best,
        },
    )
    write_json(args.metrics, {"best_epoch": summary.best_epoch, "parameter_count": n_params})
    rate = spec.images["train"] * summary.epochs / seconds if seconds > 0 else float("nan")
    scores = ", ".join(f"{k} {best[k]:.3f}" for k in ("val_loss", "val_accuracy") if k in best)
    print(
        f"train: best epoch {summary.best_epoch} of {summary.epochs} by {cfg.monitor} ({scores}); "
        f"{n_params:,} parameters, {policy}, {strategy.num_replicas_in_sync} replica(s); "
        f"{seconds:.0f} s, {rate:.0f} images/s"
    )
    P.trace("train")


if __name__ == "__main__":
    runner.run(main)
