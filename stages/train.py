"""Stage train: build the model from params and train it with the seed's recipe.

Params: base.seed, model.*, train.*. Input: the prepare stage's folder, streamed from its
TFRecord shards (memory holds the shuffle buffer and a few batches, not the data set).
Outputs: the best-validation model (`.keras`, takes raw uint8 pixels) with `classes.json` (its
output order) beside it, per-epoch curves logged by DVCLive (TSV), and a JSON summary of the
best epoch.

With `train.strategy: multi_worker`, run this same command on every worker with $TF_CONFIG set;
only the chief writes the outputs.
"""

import argparse
import tempfile
from pathlib import Path

import keras
from dvclive import Live
from dvclive.keras import DVCLiveCallback

from blastcell import model as M
from blastcell import params as P
from blastcell import shards, training
from blastcell.data import atomic_file, write_json


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--live", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    args = parser.parse_args(argv)
    params = P.load(args.params)
    cfg = params.train

    strategy = training.distribution(cfg.strategy)  # before any other TensorFlow op
    training.make_deterministic(params.base.seed)
    policy = M.resolve_precision(cfg.precision)
    keras.mixed_precision.set_global_policy(policy)
    chief = training.is_chief()
    print(
        f"train: precision {cfg.precision} -> {policy}; strategy {cfg.strategy}, "
        f"{strategy.num_replicas_in_sync} replica(s){'' if chief else ', not the chief'}"
    )

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
    with Live(dir=str(args.live), dvcyaml=False, save_dvc_exp=False) as live:
        summary = training.fit(model, train, val, cfg, callbacks=[DVCLiveCallback(live=live)])
    with atomic_file(args.model) as tmp:
        model.save(tmp)
    write_json(args.model.with_name("classes.json"), spec.classes)  # for `blastcell predict`
    write_json(
        args.metrics,
        {
            "best_epoch": summary.best_epoch,
            "epochs": summary.epochs,
            "params": model.count_params(),
            "train_images": spec.images["train"],
            "val_images": spec.images["val"],
            **{k: round(v, 6) for k, v in sorted(summary.logs.items())},
        },
    )
    P.trace("train")


if __name__ == "__main__":
    main()
