"""Training keeps the best-validation weights, stops when patience runs out, and compiles the
recipe that the params describe (the seed's loss and constant rate, or a warm-up and cosine)."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")
from blastcell import train  # noqa: E402
from blastcell.params import TrainParams  # noqa: E402

SEED_RECIPE = {
    "epochs": 10,
    "batch_size": 100,
    "learning_rate": 1e-4,
    "schedule": "constant",
    "warmup_epochs": 0,
    "patience": 0,
    "label_smoothing": 0.0,
    "precision": "float32",
    "monitor": "val_loss",
    "shuffle_buffer": 100,
    "strategy": "auto",
    "online_augmentation": False,
    "frozen_epochs": 0,
    "fine_tune_learning_rate": 1e-5,
    "fine_tune_batch_norm": False,
}


def _recipe(**changes) -> TrainParams:
    return TrainParams(**{**SEED_RECIPE, **changes})


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


def test_patience_stops_after_that_many_epochs_without_a_better_one():
    model = _tiny_model()
    keep = train.KeepBest("val_loss", patience=2)
    keep.set_model(model)
    losses = [0.9, 0.5, 0.6, 0.55, 0.4]  # the last never comes: stopped after epoch 4
    for epoch, val_loss in enumerate(losses):
        keep.on_epoch_end(epoch, {"val_loss": val_loss})
        if getattr(model, "stop_training", False):
            break
    assert (keep.best_epoch, keep.epochs_run, keep.stopped_early) == (1, 4, True)


def test_patience_waits_for_the_phase_that_may_stop_and_counts_from_its_start():
    """The fine-tuning recipe's frozen epochs never stop early; the thawed ones count anew."""
    model = _tiny_model()
    keep = train.KeepBest("val_loss", patience=2)
    keep.set_model(model)
    keep.begin_phase(0, stops=False)
    for epoch, val_loss in enumerate([0.5, 0.6, 0.7, 0.8]):  # frozen: best at epoch 0
        keep.on_epoch_end(epoch, {"val_loss": val_loss})
    assert not getattr(model, "stop_training", False)
    keep.begin_phase(4, stops=True)
    keep.on_epoch_end(4, {"val_loss": 0.9})  # 4 epochs after the best, 1 into the phase
    assert not getattr(model, "stop_training", False)
    keep.on_epoch_end(5, {"val_loss": 0.9})
    assert (keep.best_epoch, keep.epochs_run, keep.stopped_early) == (0, 6, True)


def test_no_patience_never_stops():
    model = _tiny_model()
    keep = train.KeepBest("val_loss", patience=0)
    keep.set_model(model)
    for epoch in range(6):
        keep.on_epoch_end(epoch, {"val_loss": 1.0 + epoch})
    assert not getattr(model, "stop_training", False)
    assert (keep.stopped_early, keep.epochs_run) == (False, 6)


@pytest.mark.parametrize(
    ("summary", "reason", "sentence"),
    [
        ((3, 10, 7, True, 4), "patience", "stopped early after epoch 7: no better val_loss in 4"),
        ((10, 10, 10, False, 0), "all epochs, improving", "all 10 epochs run, still improving"),
        ((6, 10, 10, False, 0), "all epochs", "all 10 epochs run"),
        ((1, 1, 1, False, 0), "all epochs", "all 1 epochs run"),
    ],
)
def test_the_summary_says_why_training_ended(summary, reason, sentence):
    best, epochs, run, early, patience = summary
    got = train.Summary(best, epochs, {}, run, early, "val_loss", patience)
    assert got.stop_reason() == reason
    assert got.explain_stop().startswith(sentence)
    assert got.still_improving == (reason == "all epochs, improving")


@pytest.mark.parametrize(
    ("n_classes", "loss"),
    [(2, keras.losses.BinaryCrossentropy), (4, keras.losses.CategoricalCrossentropy)],
)
def test_loss_follows_the_seed_for_two_classes(n_classes, loss):
    inputs = keras.Input(shape=(4,))
    model = keras.Model(inputs, keras.layers.Dense(n_classes, activation="softmax")(inputs))
    train.compile_model(model, n_classes, _recipe(), steps_per_epoch=5)
    assert isinstance(model.loss, loss)
    assert model.loss.get_config()["label_smoothing"] == 0
    assert model.optimizer.learning_rate.numpy() == pytest.approx(1e-4)


def _rates(params: TrainParams, steps_per_epoch: int, at: list[int]) -> list[float]:
    schedule = train.learning_rate(params, steps_per_epoch)
    return [float(schedule(step)) for step in at]


def test_warmup_rises_linearly_then_cosine_decays_to_zero_at_the_last_epoch():
    params = _recipe(schedule="cosine", warmup_epochs=2, learning_rate=1e-3)  # 10 epochs
    start, mid_warmup, peak, mid_decay, end = _rates(params, 5, [0, 5, 10, 30, 50])
    assert start == pytest.approx(0)
    assert mid_warmup == pytest.approx(5e-4)
    assert peak == pytest.approx(1e-3)
    assert mid_decay == pytest.approx(5e-4, rel=1e-3)  # half-way through the decay: cos = 0
    assert end == pytest.approx(0, abs=1e-9)


def test_constant_schedule_with_warmup_holds_the_peak():
    params = _recipe(warmup_epochs=1, learning_rate=1e-3)
    assert _rates(params, 4, [2, 4, 20, 39]) == pytest.approx([5e-4, 1e-3, 1e-3, 1e-3])


def test_label_smoothing_reaches_the_loss():
    inputs = keras.Input(shape=(4,))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))
    train.compile_model(model, 3, _recipe(label_smoothing=0.1), steps_per_epoch=1)
    assert model.loss.get_config()["label_smoothing"] == pytest.approx(0.1)
