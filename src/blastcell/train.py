"""The train stage: build the model from params and train it, keeping the best epoch's weights.

The recipe is params: Adam at `train.learning_rate`, constant (the seed's) or on a cosine
schedule, after an optional linear warm-up; cross-entropy on a softmax with optional label
smoothing; early stopping after `train.patience` epochs without a better `train.monitor`.
Labels are one-hot, as in the seed; with two classes the loss is binary cross-entropy on the
2-unit softmax (the seed's choice), with more it is categorical cross-entropy.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from blastcell import devices, model, online, prepared, progress
from blastcell.files import DataError, write_json
from blastcell.params import BACKBONES, AugmentParams, ModelParams, TrainParams
from blastcell.tf import keras, tf


def make_deterministic(seed: int) -> None:
    """Start from a clean Keras session (as a fresh process would: the cv stage trains once per
    split in one process), seed Python, NumPy and TensorFlow, and make TensorFlow's ops
    deterministic."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def learning_rate(
    params: TrainParams, steps_per_epoch: int, peak: float | None = None, epochs: int | None = None
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """`train.learning_rate` (or `peak`), or the schedule that `train.schedule` and
    `train.warmup_epochs` make of it over `train.epochs` (or `epochs`), stepped once per batch:
    a linear rise from 0 over the warm-up, then constant or a cosine decay to 0 at the end of
    the last epoch."""
    peak = params.learning_rate if peak is None else peak
    epochs = params.epochs if epochs is None else epochs
    if params.schedule == "constant" and params.warmup_epochs == 0:
        return peak  # the seed's
    warmup = params.warmup_epochs * steps_per_epoch
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else peak,
        decay_steps=max(1, (epochs - params.warmup_epochs) * steps_per_epoch),
        alpha=1.0 if params.schedule == "constant" else 0.0,  # 1: no decay
        warmup_target=peak if warmup else None,
        warmup_steps=warmup,
    )


def compile_model(
    model: keras.Model,
    n_classes: int,
    params: TrainParams,
    steps_per_epoch: int,
    rate: float | keras.optimizers.schedules.LearningRateSchedule | None = None,
) -> None:
    """Attach Adam with the learning rate (schedule) of `params`, or `rate`, and the loss of
    `params`, with accuracy as the metric."""
    smoothing = params.label_smoothing
    loss = (
        keras.losses.BinaryCrossentropy(label_smoothing=smoothing)
        if n_classes == 2
        else keras.losses.CategoricalCrossentropy(label_smoothing=smoothing)
    )
    model.compile(
        optimizer=keras.optimizers.Adam(
            learning_rate(params, steps_per_epoch) if rate is None else rate
        ),
        loss=loss,
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )


def set_trainable(net: keras.Model, backbone: bool, batch_norm: bool) -> None:
    """Freeze (`backbone` false) or unfreeze a backbone model's layers below its head
    (`model.HEAD`); its batch normalisation layers train only if `batch_norm` too. A frozen
    batch normalisation layer runs in inference mode, on the statistics it has."""
    for layer in net.layers:
        if layer.name not in model.HEAD:
            norm = isinstance(layer, keras.layers.BatchNormalization)
            layer.trainable = backbone and (batch_norm or not norm)


@dataclass(frozen=True)
class Phase:
    """Epochs up to `end` (exclusive, 0-based), after `prepare()` (which freezes or unfreezes
    layers and compiles the model) if given; early stopping only if `patience`."""

    end: int
    prepare: Callable[[], None] | None = None
    patience: bool = True


class KeepBest(keras.callbacks.Callback):
    """Remember the weights of the best epoch by `monitor` and restore them when training ends;
    with `patience`, stop once that many epochs have passed without a better one (counted from
    the later of the best epoch and the start of the phase, `begin_phase`)."""

    def __init__(self, monitor: str, patience: int = 0) -> None:
        super().__init__()
        self.monitor = monitor
        self.patience = patience
        self.better = np.less if monitor.endswith("loss") else np.greater
        self.best: float | None = None
        self.best_epoch = -1
        self.best_logs: dict[str, float] = {}
        self.epochs_run = 0
        self.stopped_early = False
        self._weights: list[np.ndarray] | None = None
        self._phase_start, self._stops = 0, True

    def begin_phase(self, epoch: int, stops: bool) -> None:
        """A phase of training starts at `epoch` (0-based); early stopping may end it if
        `stops`."""
        self._phase_start, self._stops = epoch, stops

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.epochs_run = epoch + 1
        value = float((logs or {})[self.monitor])
        if self.best is None or self.better(value, self.best):
            self.best, self.best_epoch = value, epoch
            self.best_logs = {k: float(v) for k, v in (logs or {}).items()}
            self._weights = self.model.get_weights()
        elif (
            self.patience
            and self._stops
            and epoch - max(self.best_epoch, self._phase_start - 1) >= self.patience
        ):
            self.stopped_early = True
            self.model.stop_training = True

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._weights is not None:
            self.model.set_weights(self._weights)


class Curves(keras.callbacks.Callback):
    """Collect loss and accuracy per epoch (1-based) for the training and validation data.

    After every epoch, `write(name, records)` gets the whole curve so far of `loss` and of
    `accuracy`: records {epoch, split ("train" or "validation"), <name>}, the shape the
    `curves_by_split` DVC plot template draws as one line per split.
    """

    def __init__(self, write: Callable[[str, list[dict]], None]) -> None:
        super().__init__()
        self.write = write
        self.records: dict[str, list[dict]] = {"loss": [], "accuracy": []}

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        for name, records in self.records.items():
            for split, key in (("train", name), ("validation", f"val_{name}")):
                if key in logs:
                    records.append(
                        {"epoch": epoch + 1, "split": split, name: round(float(logs[key]), 6)}
                    )
            self.write(name, records)


class ProgressBar(keras.callbacks.Callback):
    """A progress bar over every training batch of every epoch, drawn only on a terminal."""

    def __init__(self, epochs: int, steps: int | None) -> None:
        super().__init__()
        self.epochs = epochs
        self.bar = progress.bar(epochs * steps if steps else None, "train", unit="batch")

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.bar.set_description(f"train: epoch {epoch + 1}/{self.epochs}")

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.bar.update(1)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        shown = ("loss", "val_loss", "val_accuracy")
        self.bar.set_postfix({k: f"{float(v):.3f}" for k, v in (logs or {}).items() if k in shown})

    def close(self) -> None:
        """Remove the bar (after the last phase: `fit` may call Keras's `fit` more than once)."""
        self.bar.close()


@dataclass(frozen=True)
class Summary:
    """What training reports: the best epoch (1-based) and its metrics, the epochs planned and
    run, and whether early stopping ended it (after `patience` epochs without a better
    `monitor`)."""

    best_epoch: int
    epochs: int
    logs: dict[str, float]
    epochs_run: int
    stopped_early: bool
    monitor: str
    patience: int

    @property
    def still_improving(self) -> bool:
        """Whether the best epoch was the last of all the epochs planned (and not the only one)."""
        return not self.stopped_early and self.epochs > 1 and self.best_epoch == self.epochs

    def stop_reason(self) -> str:
        """Why training ended, in a word or three, for tables (the benchmarks'): "patience" (no
        better `monitor` in `patience` epochs), "all epochs", or "all epochs, improving" (the
        best epoch was the last)."""
        if self.stopped_early:
            return "patience"
        return "all epochs, improving" if self.still_improving else "all epochs"

    def explain_stop(self) -> str:
        """Why training ended, in a sentence."""
        if self.stopped_early:
            return (
                f"stopped early after epoch {self.epochs_run}: no better {self.monitor} in "
                f"{self.patience} epochs"
            )
        if self.still_improving:
            return f"all {self.epochs} epochs run, still improving at the last: more may help"
        return f"all {self.epochs} epochs run"


def steps(dataset: tf.data.Dataset) -> int | None:
    """Batches per epoch of `dataset`, if TensorFlow knows it."""
    n = int(dataset.cardinality())
    return n if n >= 0 else None


def fit(
    model: keras.Model,
    train: tf.data.Dataset,
    val: tf.data.Dataset,
    params: TrainParams,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    phases: Sequence[Phase] = (),
) -> Summary:
    """Train a compiled `model` on batched datasets, leaving it at its best-validation weights;
    `phases` (`recipe`) split the epochs, each starting from the best weights so far.

    Keras prints nothing; a progress bar is drawn on a terminal.
    """
    keep = KeepBest(params.monitor, params.patience)
    bar = ProgressBar(params.epochs, steps(train))
    first = 0
    try:
        for phase in phases or [Phase(params.epochs)]:
            if phase.prepare is not None:
                phase.prepare()
            keep.begin_phase(first, phase.patience)
            model.fit(
                train,
                validation_data=val,
                initial_epoch=first,
                epochs=phase.end,
                callbacks=[*callbacks, bar, keep],
                shuffle=False,  # the dataset reshuffles itself each epoch
                verbose=0,
            )
            if keep.stopped_early:
                break
            first = phase.end
    finally:
        bar.close()
    return Summary(
        keep.best_epoch + 1,
        params.epochs,
        keep.best_logs,
        keep.epochs_run,
        keep.stopped_early,
        params.monitor,
        params.patience,
    )


@dataclass(frozen=True)
class Trained:
    """A trained model at its best epoch, and how training went."""

    model: keras.Model
    summary: Summary
    spec: prepared.Spec
    policy: str  # the Keras dtype policy
    replicas: int
    seconds: float
    chief: bool  # whether this process writes the outputs (see devices.is_chief)
    start: model.Start  # the weights it started from

    def save(self, path: Path) -> None:
        """Save the model (see `model.save`) and beside it its class names, `classes.json`, and
        what it learned from, `training_data.json` (see `model.TrainingData`)."""
        model.save(self.model, path)  # atomically
        write_json(path.with_name("classes.json"), self.spec.classes)  # for `blastcell predict`
        learned = model.TrainingData(
            self.spec.source,
            classes=list(self.spec.classes),
            image_size=self.spec.image_size,
            train_images=self.spec.images["train"],
            val_images=self.spec.images["val"],
        )
        write_json(path.with_name(model.TRAINING_DATA), learned.to_json())

    def report(self) -> dict[str, object]:
        """The best epoch (1-based), its losses and accuracies, and the images used."""
        return {
            "best_epoch": self.summary.best_epoch,
            "epochs": self.summary.epochs,
            "epochs_run": self.summary.epochs_run,
            "stopped_early": self.summary.stopped_early,
            "stop_reason": self.summary.explain_stop(),
            "parameter_count": self.model.count_params(),
            "train_images": self.spec.images["train"],
            "val_images": self.spec.images["val"],
            **{k: round(v, 6) for k, v in sorted(self.summary.logs.items())},
            **self.start.report(),
        }

    def metrics(self) -> dict[str, object]:
        """What `dvc exp show` compares: the best epoch. The epochs run (fewer than
        `train.epochs` when early stopping ended training), why it stopped and the number of
        parameters are in the report and the loss plot: one column, so `dvc metrics show` stays
        within 200 columns with every stage's headline."""
        return {"best_epoch": self.summary.best_epoch}

    def describe(self, monitor: str) -> str:
        """One line: the best epoch and its scores, the model's size, the speed."""
        logs = self.summary.logs
        scores = ", ".join(f"{k} {logs[k]:.3f}" for k in ("val_loss", "val_accuracy") if k in logs)
        seconds, run = self.seconds, self.summary
        rate = self.spec.images["train"] * run.epochs_run / seconds if seconds > 0 else 0.0
        ended = f"; {run.explain_stop()}" if run.stopped_early or run.still_improving else ""
        return (
            f"best epoch {run.best_epoch} of {run.epochs} by {monitor} ({scores}){ended}; "
            f"{self.model.count_params():,} parameters, {self.policy}, "
            f"{self.replicas} replica(s), {self.start.describe()}; {seconds:.0f} s, "
            f"{rate:.0f} images/s"
        )


def recipe(
    net: keras.Model,
    n_classes: int,
    params: TrainParams,
    per_epoch: int,
    strategy: tf.distribute.Strategy,
    backbone: bool,
    from_weights: bool,
) -> list[Phase]:
    """Compile `net` for training, or return the phases that compile it in turn.

    The seed's CNN and AlexNet train whole. A backbone's batch normalisation layers keep the
    statistics they came with, in inference mode, when it starts from weights, unless
    `train.fine_tune_batch_norm`. With `train.frozen_epochs`, the first epochs train the head
    alone, the backbone frozen, at a constant `train.learning_rate`; then the whole model
    trains at `train.fine_tune_learning_rate` under the warm-up and schedule, from the best
    frozen epoch's weights, with a new optimizer. Early stopping waits for the second phase.
    """
    batch_norm = params.fine_tune_batch_norm or not from_weights
    frozen, fine_tune_rate = params.frozen_epochs, params.fine_tune_learning_rate

    def compiled(trains_backbone: bool, rate=None) -> Callable[[], None]:
        def prepare() -> None:
            with strategy.scope():
                if backbone:
                    set_trainable(net, trains_backbone, batch_norm)
                compile_model(net, n_classes, params, per_epoch, rate)

        return prepare

    if not (backbone and frozen):
        compiled(True)()  # one phase, compiled now
        return []
    phases = [Phase(frozen, compiled(False, params.learning_rate), patience=False)]
    if frozen < params.epochs:
        tuned = params.epochs - frozen
        rate = learning_rate(params, per_epoch, fine_tune_rate, tuned)
        phases.append(Phase(params.epochs, compiled(True, rate)))
    return phases


def train(
    data: Path,
    model_params: ModelParams,
    params: TrainParams,
    seed: int,
    curves: Callable[[str, list[dict]], None] | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    augment: AugmentParams | None = None,
) -> Trained:
    """Train the model that `model_params` describes on the prepared folder `data`.

    `curves(name, records)` gets the loss and accuracy curves after every epoch (see Curves);
    `callbacks` are more Keras callbacks for `fit` (e.g. a benchmark's timer); `augment`, the
    ranges of `train.online_augmentation`, read only with it (which needs them).
    With `train.strategy: multi_worker`, every worker runs this; only the chief's result is
    meant to be written (`Trained.chief`).
    """
    strategy = devices.distribution(params.strategy)  # before any other TensorFlow op
    make_deterministic(seed)
    policy = devices.resolve_precision(params.precision, model_params.architecture)
    keras.mixed_precision.set_global_policy(policy)
    folder = prepared.read(data)
    spec = folder.spec
    if spec.source is None:  # train writes it beside the model: check before hours of training
        raise DataError(
            f"{data / prepared.SPEC} says nothing of where its images came from: rerun the "
            "prepare stage"
        )
    by_data = params.strategy == "multi_worker"
    train_set, val_set = (
        folder.dataset(
            name,
            params.batch_size,
            shuffle_buffer=params.shuffle_buffer if name == "train" else None,
            seed=seed,
            shard_by_data=by_data,
        )
        for name in ("train", "val")
    )
    if params.online_augmentation:
        if augment is None:
            raise ValueError("train.online_augmentation needs the augment section's ranges")
        train_set = online.augmented(train_set, augment, seed + 2)  # shuffling took seed, +1
    stats = None
    if model_params.input_scaling == "standardize":
        stats = model.input_stats(x for x, _ in folder.iterate("train", 256))
    with strategy.scope():
        net, initial = model.initialised(model_params, spec.image_size, len(spec.classes), stats)
        per_epoch = steps(train_set) or -(-spec.images["train"] // params.batch_size)
    backbone = model_params.architecture in BACKBONES
    from_weights = initial.weights != "none"
    phases = recipe(net, len(spec.classes), params, per_epoch, strategy, backbone, from_weights)
    chief = devices.is_chief()
    if curves is not None and chief:
        callbacks = [Curves(curves), *callbacks]
    start = time.monotonic()
    summary = fit(net, train_set, val_set, params, callbacks, phases)
    seconds = time.monotonic() - start
    if not chief:  # workers save in step with the chief (a collective); their copies go
        with tempfile.TemporaryDirectory() as scratch:
            net.save(Path(scratch) / "model.keras")
    replicas = strategy.num_replicas_in_sync
    return Trained(net, summary, spec, policy, replicas, seconds, chief, initial)
