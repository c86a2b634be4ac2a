"""Training keeps the best-validation weights and compiles the seed's loss."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")
from blastcell import train  # noqa: E402


def _tiny_model() -> "keras.Model":
    inputs = keras.Input(shape=(4,))
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))


def test_keep_best_restores_the_best_epochs_weights():
    model = _tiny_model()
    keep = train.KeepBest("val_loss")
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
    keep = train.KeepBest("val_accuracy")
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
    train.compile_model(model, n_classes, 1e-4)
    assert model.loss == loss
    assert model.optimizer.learning_rate.numpy() == pytest.approx(1e-4)
