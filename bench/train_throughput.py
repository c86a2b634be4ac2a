"""Benchmark: the train stage's way vs the seed's way, same model, same data, same batch size.

    python bench/train_throughput.py [--quick] [--data data/prepared] [--augmented data/augmented]

ours: TFRecord shards streamed by tf.data (shuffle buffer, parallel parse, prefetch) into the
model under `train.precision` (auto: mixed bfloat16 on a CPU with AVX512-BF16/AMX).
seed: every image in memory as one float32 NumPy array, `model.fit(x, y, shuffle=True)`, float32.

Machines here are noisy (this 2-core VM's speed swings by up to 2x from minute to minute), so
throughput is measured in alternating rounds, one whole training epoch of each way per round
(validation excluded), after a warm-up; the ratio is the median of the per-round ratios.

1. Default configuration (params.yaml): throughput over 5 rounds; then each way trains from
   scratch for `train.epochs`, keeps its best epoch by validation loss and is scored on the test
   set (does the fast path change accuracy?).
2. The seed's exact configuration (width 1.0, 257 x 257, batch 100): 2 rounds.
3. The input pipeline alone: images per second of iterating the train split's shards with no
   model, to show whether reading the data could be the bottleneck.

Needs the default pipeline's data: `dvc repro prepare` (or `dvc pull`) first; --quick makes tiny
data of its own instead (bench/tiny_data.py) and trains 2 epochs, at 96 px for the seed's
config. Prints images/s and ratios ours / seed (bigger is better); asserts nothing.
"""

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import tiny_data

from blastcell import devices, model, prepare, prepared, train
from blastcell.params import Params, load
from blastcell.tf import keras

ROOT = Path(__file__).resolve().parents[1]
SEED_CONFIG = ["model.width=1.0", "prepare.image_size=257", "train.batch_size=100"]


class EpochTimer(keras.callbacks.Callback):
    """Seconds each epoch spends training, validation excluded."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []
        self._start = 0.0
        self._open = False

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._open = time.perf_counter(), True

    def _close(self) -> None:
        if self._open:
            self.seconds.append(time.perf_counter() - self._start)
            self._open = False

    def on_test_begin(self, logs=None):
        self._close()

    def on_epoch_end(self, epoch, logs=None):
        self._close()


def load_arrays(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The seed's way: the whole split as float32 pixels and one-hot labels in memory."""
    spec = prepared.read_spec(folder)
    xs, ys = [], []
    for x, y in prepared.read(folder).iterate(split, 256):
        xs.append(x.astype(np.float32))
        ys.append(y)
    return np.concatenate(xs), np.eye(len(spec.classes), dtype=np.float32)[np.concatenate(ys)]


def build(params: Params, spec: prepared.Spec, policy: str) -> keras.Model:
    keras.mixed_precision.set_global_policy(policy)
    train.make_deterministic(params.base.seed)
    net = model.build(params.model, spec.image_size, len(spec.classes))
    per_epoch = -(-spec.images["train"] // params.train.batch_size)
    train.compile_model(net, len(spec.classes), params.train, per_epoch)
    return net


class Way:
    """One way of training: a model and how `fit` is fed (ours: shards; seed: arrays)."""

    def __init__(self, name: str, folder: Path, params: Params) -> None:
        self.name, self.folder, self.params = name, folder, params
        self.spec = prepared.read_spec(folder)
        cfg = params.train
        if name == "ours":
            self.policy = devices.resolve_precision(cfg.precision, params.model.architecture)
            shuffled = prepared.read(folder).dataset(
                "train", cfg.batch_size, cfg.shuffle_buffer, params.base.seed
            )
            self.fit_args = {"x": shuffled, "shuffle": False}
            self.val = prepared.read(folder).dataset("val", cfg.batch_size)
        else:
            self.policy = "float32"
            x, y = load_arrays(folder, "train")
            self.fit_args = {"x": x, "y": y, "batch_size": cfg.batch_size, "shuffle": True}
            self.val = load_arrays(folder, "val")
        self.net = build(params, self.spec, self.policy)

    def warm_up(self) -> None:
        """Trace the training step on two batches."""
        bs = self.params.train.batch_size
        if self.name == "ours":
            self.net.fit(self.fit_args["x"].take(2), epochs=1, shuffle=False, verbose=0)
        else:
            x, y = self.fit_args["x"][: 2 * bs], self.fit_args["y"][: 2 * bs]
            self.net.fit(x, y, batch_size=bs, epochs=1, verbose=0)

    def epoch_rate(self) -> float:
        """Training images per second over one whole epoch."""
        keras.mixed_precision.set_global_policy(self.policy)
        timer = EpochTimer()
        self.net.fit(**self.fit_args, epochs=1, callbacks=[timer], verbose=0)
        return self.spec.images["train"] / timer.seconds[0]

    def train_and_score(self, epochs: int) -> float:
        """Train a fresh model for `epochs`, keep the best by validation, test accuracy."""
        self.net = build(self.params, self.spec, self.policy)
        keep = train.KeepBest(self.params.train.monitor)
        self.net.fit(
            **self.fit_args, validation_data=self.val, epochs=epochs, callbacks=[keep], verbose=0
        )
        hits = total = 0
        for x, y in prepared.read(self.folder).iterate("test", 100):
            hits += int(np.sum(np.argmax(self.net.predict_on_batch(x), axis=1) == y))
            total += len(y)
        return hits / total


def rounds(ways: list[Way], n: int) -> dict:
    """Alternate one epoch of each way, `n` times, after a warm-up of each."""
    for way in ways:
        way.warm_up()
    rates: dict[str, list[float]] = {way.name: [] for way in ways}
    for _ in range(n):
        for way in ways:
            rates[way.name].append(way.epoch_rate())
    ratios = [a / b for a, b in zip(rates["ours"], rates["seed"], strict=True)]
    out: dict = {"rounds": n, "train_images": ways[0].spec.images["train"]}
    for way in ways:
        out[f"{way.name}_policy"] = way.policy
        out[f"{way.name}_images_per_s"] = round(statistics.median(rates[way.name]), 1)
        out[f"{way.name}_round_images_per_s"] = [round(r, 1) for r in rates[way.name]]
    out["ratio"] = round(statistics.median(ratios), 2)
    out["round_ratios"] = [round(r, 2) for r in ratios]
    return out


def default_config(folder: Path, params: Params, n_rounds: int, epochs: int) -> dict:
    """Throughput in rounds, then a full training run each way and its test accuracy."""
    ways = [Way("ours", folder, params), Way("seed", folder, params)]
    out = rounds(ways, n_rounds)
    out["epochs"] = epochs
    out["test_images"] = ways[0].spec.images["test"]
    for way in ways:
        out[f"{way.name}_test_accuracy"] = round(way.train_and_score(epochs), 4)
    diff = out["ours_test_accuracy"] - out["seed_test_accuracy"]
    out["accuracy_difference_points"] = round(100 * diff, 2)
    return out


def seed_config(augmented: Path, params_path: Path, quick: bool, n_rounds: int) -> dict:
    """Rounds of one epoch each way at the seed's exact configuration."""
    overrides = list(SEED_CONFIG) + (["prepare.image_size=96"] if quick else [])
    params = load(params_path, overrides)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "prepared"  # as the prepare stage makes it, at the seed's size
        prepare.prepare(augmented, folder, params.prepare, params.base.seed)
        out = rounds([Way("ours", folder, params), Way("seed", folder, params)], n_rounds)
    out["image_size"], out["width"] = params.prepare.image_size, params.model.width
    return out


def input_pipeline(folder: Path, params: Params) -> float:
    """Images per second of streaming the train split with no model (second pass)."""
    cfg = params.train
    ds = prepared.read(folder).dataset(
        "train", cfg.batch_size, cfg.shuffle_buffer, params.base.seed
    )
    for _ in ds:  # first pass warms the file cache
        pass
    start, n = time.perf_counter(), 0
    for x, _ in ds:
        n += int(x.shape[0])
    return n / (time.perf_counter() - start)


def measure(
    quick: bool = False,
    data: Path = ROOT / "data/prepared",
    augmented: Path = ROOT / "data/augmented",
    params_path: Path = ROOT / "params.yaml",
) -> dict:
    """The figures; `quick` trains 2 epochs on tiny data of its own (bench/tiny_data.py)."""
    if quick:
        with tempfile.TemporaryDirectory() as tmp:
            made = tiny_data.build(Path(tmp))
            return _measure(True, made["prepared"], made["augmented"], made["params"])
    for folder in (data, augmented):
        if not folder.is_dir():
            raise SystemExit(f"{folder} is missing: run `dvc repro prepare` (or `dvc pull`) first")
    return _measure(False, data, augmented, params_path)


def _measure(quick: bool, data: Path, augmented: Path, params_path: Path) -> dict:
    params = load(params_path)
    epochs = 2 if quick else params.train.epochs
    default = default_config(data, params, 2 if quick else 5, epochs)
    seed = seed_config(augmented, params_path, quick, 1 if quick else 2)
    return {
        "train_throughput_ratio": default["ratio"],
        "train_images_per_s": default["ours_images_per_s"],
        "train_seed_way_images_per_s": default["seed_images_per_s"],
        "train_test_accuracy": default["ours_test_accuracy"],
        "train_seed_way_test_accuracy": default["seed_test_accuracy"],
        "train_accuracy_difference_points": default["accuracy_difference_points"],
        "seed_config_train_images_per_s": seed["ours_images_per_s"],
        "seed_config_seed_way_images_per_s": seed["seed_images_per_s"],
        "seed_config_train_throughput_ratio": seed["ratio"],
        "input_pipeline_images_per_s": round(input_pipeline(data, params), 1),
        "train_detail": {"default": default, "seed_config": seed, "quick": quick},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny data, 2 epochs: that it runs")
    parser.add_argument("--data", type=Path, default=ROOT / "data/prepared")
    parser.add_argument("--augmented", type=Path, default=ROOT / "data/augmented")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    args = parser.parse_args()
    r = measure(args.quick, args.data, args.augmented, args.params)
    d, s = r["train_detail"]["default"], r["train_detail"]["seed_config"]
    print(f"default config, {d['train_images']} train images, {d['rounds']} rounds:")
    for name in ("ours", "seed"):
        print(
            f"  {name:>4} ({d[f'{name}_policy']:>14}): {d[f'{name}_images_per_s']:7.1f} images/s, "
            f"test accuracy {d[f'{name}_test_accuracy']:.4f} on {d['test_images']} images "
            f"after {d['epochs']} epochs"
        )
    print(f"  ratio ours / seed: {d['ratio']:.2f} (rounds: {d['round_ratios']})")
    print(f"seed's exact config (width {s['width']}, {s['image_size']} px), {s['rounds']} rounds:")
    for name in ("ours", "seed"):
        speed = s[f"{name}_images_per_s"]
        print(f"  {name:>4} ({s[f'{name}_policy']:>14}): {speed:7.1f} images/s")
    print(f"  ratio ours / seed: {s['ratio']:.2f} (rounds: {s['round_ratios']})")
    print(f"input pipeline alone: {r['input_pipeline_images_per_s']:.0f} images/s")
    print(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
