"""Stage train: build the model from params and train it with the recipe the params describe.

Params: base.seed, model.*, train.*, augment.rotation_range, augment.width_shift_range,
augment.height_shift_range, augment.shear_range, augment.zoom_range, augment.horizontal_flip,
augment.vertical_flip, augment.fill_mode and augment.cval (the ranges of the random warps of
train.online_augmentation). Input: the prepare stage's folder, streamed from its
TFRecord shards (memory holds the shuffle buffer and a few batches, not the data set), and the
file in weights/ that `model.weights` names, if any (ImageNet's, checked by Keras's MD5; a
backbone's; an earlier model's).
Outputs: the best-validation model (`.keras`, takes raw uint8 pixels; its bytes depend only on
the weights) with `classes.json` (its output order) beside it; JSON metrics (the best epoch,
1-based, and the epochs run); a JSON report of the best epoch (its losses and accuracies, the
number of parameters, images trained and validated on, whether training stopped early and
why); and, as DVC plots, the loss and accuracy per epoch of the training and validation data
(`loss.json`, `accuracy.json`: written to temporaries beside them after every epoch, they
replace them when the stage succeeds, so an interrupted run leaves the previous curves).

With `train.strategy: multi_worker`, run this same command on every worker with $TF_CONFIG set;
only the chief writes the outputs.
"""

from pathlib import Path

from blastcell import runner, train
from blastcell.files import atomic_json_files, write_json
from blastcell.runner import Output, OutputFolder


def run(
    params, *, input: Path, model: Output, metrics: Output, report: Output, plots: OutputFolder
) -> str:
    with atomic_json_files() as write_plot:  # a Ctrl-C or an error leaves the previous curves

        def write_curve(name: str, records: list[dict]) -> None:
            write_plot(plots / f"{name}.json", records)

        trained = train.train(
            input,
            params.model,
            params.train,
            params.base.seed,
            write_curve,
            augment=params.augment,
        )
        if not trained.chief:
            return "trained in step with the chief, which writes the outputs"
        trained.save(model)
        write_json(report, trained.report())
        write_json(metrics, trained.metrics())
        return trained.describe(params.train.monitor)


if __name__ == "__main__":
    runner.main(run)
