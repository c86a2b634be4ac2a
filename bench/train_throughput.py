"""Benchmark: the train stage's way vs the seed's way, same model, same data, same batch size.

    python bench/train_throughput.py [--quick] [--data data/prepared] [--augmented data/augmented]

ours: TFRecord shards streamed by tf.data (shuffle buffer, parallel parse, prefetch) into the
model under `train.precision` (auto: mixed bfloat16 on a CPU with AVX512-BF16/AMX).
seed: every image in memory as one float32 NumPy array, `model.fit(x, y, shuffle=True)`, float32.

1. Default configuration (params.yaml): both train for `train.epochs` on the default data, keep
   the best epoch by validation loss, and are scored on the test set; throughput is training
   images per second over whole epochs (validation excluded), median of the epochs after the
   first (which traces the graph).
2. The seed's exact configuration (width 1.0, 257 x 257, batch 100): one timed epoch each,
   after a two-batch warm-up.
3. The input pipeline alone: images per second of iterating the train split's shards with no
   model, to show whether reading the data could be the bottleneck.

Needs the default pipeline's data: `dvc repro prepare` (or `dvc pull`) first. Prints images/s
and ratios ours / seed (bigger is better); asserts nothing.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import yaml

from blastcell import model as M
from blastcell import params as P
from blastcell import shards, training

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


def load_arrays(folder: Path, split: str, spec: shards.Spec) -> tuple[np.ndarray, np.ndarray]:
    """The seed's way: the whole split as float32 pixels and one-hot labels in memory."""
    xs, ys = [], []
    for x, y in shards.iterate(folder, split, spec.image_size, len(spec.classes), 256):
        xs.append(x.astype(np.float32))
        ys.append(y)
    return np.concatenate(xs), np.eye(len(spec.classes), dtype=np.float32)[np.concatenate(ys)]


def build(params: P.Params, spec: shards.Spec, policy: str) -> keras.Model:
    keras.mixed_precision.set_global_policy(policy)
    training.make_deterministic(params.base.seed)
    net = M.build(params.model, spec.image_size, len(spec.classes))
    training.compile_model(net, len(spec.classes), params.train.learning_rate)
    return net


def streamed(folder: Path, split: str, spec: shards.Spec, params: P.Params, shuffle: bool):
    cfg = params.train
    return shards.dataset(
        folder,
        split,
        spec.image_size,
        len(spec.classes),
        cfg.batch_size,
        shuffle_buffer=cfg.shuffle_buffer if shuffle else None,
        seed=params.base.seed,
    )


def test_accuracy(net: keras.Model, folder: Path, spec: shards.Spec) -> float:
    hits = total = 0
    for x, y in shards.iterate(folder, "test", spec.image_size, len(spec.classes), 100):
        hits += int(np.sum(np.argmax(net.predict_on_batch(x), axis=1) == y))
        total += len(y)
    return hits / total


def rate(n_images: int, seconds: list[float]) -> float:
    """Images per second: median epoch after the first (which traces), or the only one."""
    timed = seconds[1:] or seconds
    return n_images / statistics.median(timed)


def default_config(folder: Path, params: P.Params, epochs: int) -> dict:
    """Train to the end both ways on the default data; throughput and test accuracy."""
    spec = shards.read_spec(folder)
    n_train = spec.images["train"]
    out: dict = {"train_images": n_train, "epochs": epochs}
    cfg = params.train
    runs = {}

    policy = M.resolve_precision(cfg.precision)
    net = build(params, spec, policy)
    timer, keep = EpochTimer(), training.KeepBest(cfg.monitor)
    net.fit(
        streamed(folder, "train", spec, params, shuffle=True),
        validation_data=streamed(folder, "val", spec, params, shuffle=False),
        epochs=epochs,
        callbacks=[timer, keep],
        shuffle=False,  # the dataset reshuffles itself, as in the train stage
        verbose=0,
    )
    runs["ours"] = (policy, rate(n_train, timer.seconds), test_accuracy(net, folder, spec))

    x, y = load_arrays(folder, "train", spec)
    val = load_arrays(folder, "val", spec)
    net = build(params, spec, "float32")
    timer, keep = EpochTimer(), training.KeepBest(cfg.monitor)
    net.fit(
        x,
        y,
        batch_size=cfg.batch_size,
        shuffle=True,
        validation_data=val,
        epochs=epochs,
        callbacks=[timer, keep],
        verbose=0,
    )
    runs["seed"] = ("float32", rate(n_train, timer.seconds), test_accuracy(net, folder, spec))
    del x, y, val

    for name, (policy, speed, acc) in runs.items():
        out[f"{name}_policy"] = policy
        out[f"{name}_images_per_s"] = round(speed, 1)
        out[f"{name}_test_accuracy"] = round(acc, 4)
    out["test_images"] = spec.images["test"]
    out["ratio"] = round(runs["ours"][1] / runs["seed"][1], 2)
    out["accuracy_difference_points"] = round(100 * (runs["ours"][2] - runs["seed"][2]), 2)
    return out


def seed_config(augmented: Path, params_path: Path, quick: bool) -> dict:
    """One timed epoch each way at the seed's exact configuration (after a short warm-up)."""
    overrides = list(SEED_CONFIG) + (["prepare.image_size=96"] if quick else [])
    params = P.load(params_path, overrides)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "prepared"
        raw = P.read_yaml(params_path)
        for item in overrides:
            P.set_dotted(raw, item)
        (Path(tmp) / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        sys.path.insert(0, str(ROOT / "stages"))
        import prepare  # the prepare stage itself, at 257 x 257

        prepare.main(
            ["--params", f"{tmp}/params.yaml", "--input", str(augmented), "--output", str(folder)]
        )
        spec = shards.read_spec(folder)
        n = spec.images["train"]
        speeds = {}
        policy = M.resolve_precision(params.train.precision)
        net = build(params, spec, policy)
        warm = streamed(folder, "train", spec, params, shuffle=True).take(2)
        net.fit(warm, epochs=1, shuffle=False, verbose=0)
        timer = EpochTimer()
        net.fit(
            streamed(folder, "train", spec, params, shuffle=True),
            epochs=1,
            callbacks=[timer],
            shuffle=False,
            verbose=0,
        )
        speeds["ours"] = (policy, n / timer.seconds[0])

        x, y = load_arrays(folder, "train", spec)
        net = build(params, spec, "float32")
        bs = params.train.batch_size
        net.fit(x[: 2 * bs], y[: 2 * bs], batch_size=bs, epochs=1, verbose=0)
        timer = EpochTimer()
        net.fit(x, y, batch_size=bs, shuffle=True, epochs=1, callbacks=[timer], verbose=0)
        speeds["seed"] = ("float32", n / timer.seconds[0])
    out = {"image_size": spec.image_size, "width": params.model.width, "train_images": n}
    for name, (policy, speed) in speeds.items():
        out[f"{name}_policy"] = policy
        out[f"{name}_images_per_s"] = round(speed, 1)
    out["ratio"] = round(speeds["ours"][1] / speeds["seed"][1], 2)
    return out


def input_pipeline(folder: Path, params: P.Params) -> float:
    """Images per second of streaming the train split with no model (second pass)."""
    spec = shards.read_spec(folder)
    ds = streamed(folder, "train", spec, params, shuffle=True)
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
    for folder in (data, augmented):
        if not folder.is_dir():
            raise SystemExit(f"{folder} is missing: run `dvc repro prepare` (or `dvc pull`) first")
    params = P.load(params_path)
    epochs = 2 if quick else params.train.epochs
    default = default_config(data, params, epochs)
    seed = seed_config(augmented, params_path, quick)
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
    parser.add_argument("--quick", action="store_true", help="2 epochs, seed config at 96 px")
    parser.add_argument("--data", type=Path, default=ROOT / "data/prepared")
    parser.add_argument("--augmented", type=Path, default=ROOT / "data/augmented")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    args = parser.parse_args()
    r = measure(args.quick, args.data, args.augmented, args.params)
    d, s = r["train_detail"]["default"], r["train_detail"]["seed_config"]
    print(f"default config, {d['train_images']} train images x {d['epochs']} epochs:")
    for name in ("ours", "seed"):
        print(
            f"  {name:>4} ({d[f'{name}_policy']:>14}): {d[f'{name}_images_per_s']:7.1f} images/s, "
            f"test accuracy {d[f'{name}_test_accuracy']:.4f} on {d['test_images']} images"
        )
    print(f"  ratio ours / seed: {d['ratio']:.2f}")
    print(f"seed's exact config (width {s['width']}, {s['image_size']} px), one epoch:")
    for name in ("ours", "seed"):
        speed = s[f"{name}_images_per_s"]
        print(f"  {name:>4} ({s[f'{name}_policy']:>14}): {speed:7.1f} images/s")
    print(f"  ratio ours / seed: {s['ratio']:.2f}")
    print(f"input pipeline alone: {r['input_pipeline_images_per_s']:.0f} images/s")
    print(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
