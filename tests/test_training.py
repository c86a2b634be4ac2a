"""Training keeps the best-validation weights and compiles the seed's loss."""

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


def test_batches_are_reshuffled_each_epoch_but_reproducibly():
    x = np.arange(20, dtype=np.uint8).reshape(20, 1)
    y = np.eye(2, dtype=np.uint8)[np.arange(20) % 2]
    ds = training.batches(x, y, batch_size=20, shuffle_seed=3)
    first, second = (next(iter(ds))[0].numpy().ravel().tolist() for _ in range(2))
    again = next(iter(training.batches(x, y, batch_size=20, shuffle_seed=3)))[0]
    assert sorted(first) == list(range(20))
    assert first == again.numpy().ravel().tolist()
    assert first != second  # a new epoch, a new order
