"""Train a classifier with the seed's recipe: Adam, cross-entropy on a softmax, fixed batch size.

Labels are one-hot, as in the seed; with two classes the loss is binary cross-entropy on the
2-unit softmax (the seed's choice), with more it is categorical cross-entropy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from blastcell.params import TrainParams


def make_deterministic(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow, and make TensorFlow's ops deterministic."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def batches(
    x: np.ndarray, y: np.ndarray, batch_size: int, shuffle_seed: int | None = None
) -> tf.data.Dataset:
    """A tf.data pipeline over uint8 images and one-hot labels, reshuffled every epoch."""
    ds = tf.data.Dataset.from_tensor_slices((x, y.astype(np.float32)))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(x), seed=shuffle_seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


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


@dataclass(frozen=True)
class Summary:
    """What training reports: the best epoch (1-based) and its metrics."""

    best_epoch: int
    epochs: int
    logs: dict[str, float]


def fit(
    model: keras.Model,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    params: TrainParams,
    seed: int,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> Summary:
    """Compile and train `model`, leaving it at its best-validation weights."""
    n_classes = train[1].shape[1]
    compile_model(model, n_classes, params.learning_rate)
    keep = KeepBest(params.monitor)
    model.fit(
        batches(*train, params.batch_size, shuffle_seed=seed),
        validation_data=batches(*val, params.batch_size),
        epochs=params.epochs,
        callbacks=[*callbacks, keep],
        shuffle=False,  # the tf.data pipeline reshuffles each epoch
        verbose=2,
    )
    return Summary(keep.best_epoch + 1, params.epochs, keep.best_logs)
