"""Training keeps the best-validation weights and compiles the seed's loss."""

import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")
from blastcell import training  # noqa: E402


def _tiny_model() -> "keras.Model":
    inputs = keras.Input(shape=(4,))
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))


def test_keep_best_restores_the_best_epochs_weights():
    model = _tiny_model()
    keep = training.KeepBest("val_loss")
    keep.set_model(model)
    snapshots = []
    for epoch, val_loss in enumerate([0.9, 0.4, 0.7]):
        model.set_weights([w + epoch for w in model.get_weights()])
        snapshots.append(model.get_weights())
        keep.on_epoch_end(epoch, {"val_loss": val_loss, "val_accuracy": 1 - val_loss})
    keep.on_train_end()
    assert keep.best_epoch == 1
    assert keep.best_logs["val_accuracy"] == pytest.approx(0.6)
    for got, want in zip(model.get_weights(), snapshots[1], strict=True):
        np.testing.assert_array_equal(got, want)


def test_keep_best_by_accuracy_prefers_higher():
    keep = training.KeepBest("val_accuracy")
    keep.set_model(_tiny_model())
    for epoch, acc in enumerate([0.5, 0.9, 0.8]):
        keep.on_epoch_end(epoch, {"val_accuracy": acc})
    assert keep.best_epoch == 1


@pytest.mark.parametrize(
    ("n_classes", "loss"), [(2, "binary_crossentropy"), (4, "categorical_crossentropy")]
)
def test_loss_follows_the_seed_for_two_classes(n_classes, loss):
    inputs = keras.Input(shape=(4,))
    model = keras.Model(inputs, keras.layers.Dense(n_classes, activation="softmax")(inputs))
    training.compile_model(model, n_classes, 1e-4)
    assert model.loss == loss
    assert model.optimizer.learning_rate.numpy() == pytest.approx(1e-4)


def test_multi_worker_without_a_cluster_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(training.ParamsError, match=r"'train.strategy' multi_worker needs"):
        training.distribution("multi_worker")


TWO = {"worker": ["a:1", "b:1"]}
WITH_CHIEF = {"chief": ["c:1"], "worker": ["a:1"]}


@pytest.mark.parametrize(
    ("cluster", "task", "chief"),
    [
        (None, None, True),
        (TWO, ("worker", 0), True),
        (TWO, ("worker", 1), False),
        (WITH_CHIEF, ("worker", 0), False),
        (WITH_CHIEF, ("chief", 0), True),
    ],
)
def test_only_the_chief_writes(monkeypatch, cluster, task, chief):
    if cluster is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        config = {"cluster": cluster, "task": {"type": task[0], "index": task[1]}}
        monkeypatch.setenv("TF_CONFIG", json.dumps(config))
    assert training.is_chief() is chief
