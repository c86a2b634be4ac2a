"""Stage train: build the model from params and train it with the seed's recipe.

Params: base.seed, model.*, train.*. Input: the prepare stage's folder.
Outputs: the best-validation model (`.keras`, takes raw uint8 pixels) with `classes.json` (its
output order) beside it, per-epoch curves logged by DVCLive (TSV), and a JSON summary of the
best epoch.
"""

import argparse
from pathlib import Path

import keras
from dvclive import Live
from dvclive.keras import DVCLiveCallback

from blastcell import model as M
from blastcell import params as P
from blastcell import split, training
from blastcell.data import atomic_file, read_json, write_json


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

    training.make_deterministic(params.base.seed)
    policy = M.resolve_precision(cfg.precision)
    keras.mixed_precision.set_global_policy(policy)
    print(f"train: precision {cfg.precision} -> {policy}")

    classes = read_json(args.input / "classes.json")
    train, val = split.load(args.input, "train"), split.load(args.input, "val")
    model = M.build(params.model, train[0].shape[1], len(classes))
    with Live(dir=str(args.live), dvcyaml=False, save_dvc_exp=False) as live:
        summary = training.fit(
            model, train, val, cfg, params.base.seed, callbacks=[DVCLiveCallback(live=live)]
        )

    with atomic_file(args.model) as tmp:
        model.save(tmp)
    write_json(args.model.with_name("classes.json"), classes)  # for `blastcell predict`
    write_json(
        args.metrics,
        {
            "best_epoch": summary.best_epoch,
            "epochs": summary.epochs,
            "params": model.count_params(),
            "train_images": len(train[0]),
            "val_images": len(val[0]),
            **{k: round(v, 6) for k, v in sorted(summary.logs.items())},
        },
    )
    P.trace("train")


if __name__ == "__main__":
    main()
