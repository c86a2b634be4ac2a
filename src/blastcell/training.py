"""Train a classifier with the seed's recipe: Adam, cross-entropy on a softmax, fixed batch size.

Labels are one-hot, as in the seed; with two classes the loss is binary cross-entropy on the
2-unit softmax (the seed's choice), with more it is categorical cross-entropy.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from blastcell import progress
from blastcell.params import ParamsError, TrainParams
from blastcell.tf import keras, tf


def make_deterministic(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow, and make TensorFlow's ops deterministic."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def distribution(strategy: str) -> tf.distribute.Strategy:
    """The tf.distribute strategy that `train.strategy` names.

    auto: TensorFlow's default (one device: the first GPU, or the CPU);
    mirrored: every local GPU (MirroredStrategy; on a machine without GPUs, the CPU);
    multi_worker: MultiWorkerMirroredStrategy over the cluster in $TF_CONFIG. Create it before
    any other TensorFlow op, and start the same command on every worker.
    """
    if strategy == "mirrored":
        return tf.distribute.MirroredStrategy()
    if strategy == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise ParamsError(
                "params: 'train.strategy' multi_worker needs the cluster in $TF_CONFIG "
                "(see README, distributed training)"
            )
        return _KerasMultiWorker()
    return tf.distribute.get_strategy()


class _KerasMultiWorker(tf.distribute.MultiWorkerMirroredStrategy):
    """MultiWorkerMirroredStrategy with the two reductions that Keras 3's `fit` gets wrong.

    Keras 3.15 (keras-team/keras#20585) fails with this strategy: before the first step it
    reduces a whole (images, labels) batch to learn its shapes, which the collective
    implementation cannot do for a nested structure, and it reduces the scalar loss and metrics
    along axis 0. Here the shape probe gets this worker's own batch (only its shape is used)
    and scalars are averaged across replicas without an axis. Every other reduction is the
    strategy's own.
    """

    def reduce(self, reduce_op, value, axis):
        if isinstance(value, tuple | list | dict):
            return tf.nest.map_structure(lambda v: self.experimental_local_results(v)[0], value)
        if axis is not None and self.experimental_local_results(value)[0].shape.rank == 0:
            axis = None
        return super().reduce(reduce_op, value, axis)


def is_chief() -> bool:
    """Whether this process writes the outputs: no cluster, or the chief (worker 0 if none)."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = config.get("task") or {}
    if not task:
        return True
    if task.get("type") == "chief":
        return True
    return (
        task.get("type") == "worker"
        and task.get("index") == 0
        and ("chief" not in config.get("cluster", {}))
    )


def compile_model(model: keras.Model, n_classes: int, learning_rate: float) -> None:
    """Attach the seed's optimizer and loss, with accuracy as the metric."""
    loss = "binary_crossentropy" if n_classes == 2 else "categorical_crossentropy"
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=loss,
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )


class KeepBest(keras.callbacks.Callback):
    """Remember the weights of the best epoch by `monitor` and restore them when training ends."""

    def __init__(self, monitor: str) -> None:
        super().__init__()
        self.monitor = monitor
        self.better = np.less if monitor.endswith("loss") else np.greater
        self.best: float | None = None
        self.best_epoch = -1
        self.best_logs: dict[str, float] = {}
        self._weights: list[np.ndarray] | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = float((logs or {})[self.monitor])
        if self.best is None or self.better(value, self.best):
            self.best, self.best_epoch = value, epoch
            self.best_logs = {k: float(v) for k, v in (logs or {}).items()}
            self._weights = self.model.get_weights()

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

    def on_train_end(self, logs: dict | None = None) -> None:
        self.bar.close()


@dataclass(frozen=True)
class Summary:
    """What training reports: the best epoch (1-based) and its metrics."""

    best_epoch: int
    epochs: int
    logs: dict[str, float]


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
) -> Summary:
    """Train a compiled `model` on batched datasets, leaving it at its best-validation weights.

    Keras prints nothing; a progress bar is drawn on a terminal.
    """
    keep = KeepBest(params.monitor)
    model.fit(
        train,
        validation_data=val,
        epochs=params.epochs,
        callbacks=[*callbacks, ProgressBar(params.epochs, steps(train)), keep],
        shuffle=False,  # the dataset reshuffles itself each epoch
        verbose=0,
    )
    return Summary(keep.best_epoch + 1, params.epochs, keep.best_logs)
