"""Benchmark: training throughput of float32 vs mixed bfloat16 (with and without XLA), same
model, same feed; images/s and achieved GFLOPS.

    python bench/precision.py [--quick] [--params params.yaml]

Trains the model params.yaml describes on the same random uint8 images (a tf.data pipeline of
in-memory batches, as the train stage feeds its shards) under each way, in this process:
float32, mixed_bfloat16 (what `train.precision: auto` picks on a CPU with AVX512-BF16 or AMX),
and mixed_bfloat16 compiled by XLA (`jit_compile=True`, without op determinism: Keras turns XLA
off under it, so the train stage, which needs determinism, cannot use XLA). Prints images per
second, achieved GFLOPS (a training step counted as 3x the forward pass's multiply-adds x 2,
convolutions and dense layers only) and the ratios to float32 (bigger is better), at the
default configuration (400 images, 2 epochs) and at the seed's exact one (width 1.0, 257 px,
batch 100: 200 images, 1 epoch). The CPU and its AMX/AVX512-BF16 flags are in the results'
`machine`. It asserts nothing. --quick: the tests' tiny model on 64 images, 1 epoch, to show
that it runs.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import tiny_data
from train_throughput import SEED_CONFIG

from blastcell import devices, model, train
from blastcell.params import Params, load
from blastcell.tf import keras, tf

ROOT = Path(__file__).resolve().parents[1]
WAYS = {  # name: (dtype policy, XLA)
    "float32": ("float32", False),
    "bf16": ("mixed_bfloat16", False),
    "bf16_xla": ("mixed_bfloat16", True),
}


def forward_flops(net: keras.Model) -> int:
    """Floating-point operations of one image's forward pass through the convolutions and
    dense layers (2 per multiply-add; biases, activations, pooling and normalisation left out)."""
    total = 0
    for layer in net.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, height, width, filters = layer.output.shape
            kh, kw = layer.kernel_size
            total += 2 * height * width * filters * kh * kw * layer.input.shape[-1]
        elif isinstance(layer, keras.layers.Dense):
            total += 2 * layer.input.shape[-1] * layer.units
    return total


def throughput(way: str, config: Params, images: int, epochs: int) -> tuple[float, float]:
    """Training images per second over `epochs` whole epochs, after one warm-up epoch, and the
    GFLOPS that makes."""
    size, classes = config.prepare.image_size, 2
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (images, size, size, 3), dtype=np.uint8)
    y = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, images)]
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(config.train.batch_size).prefetch(2)
    policy, xla = WAYS[way]
    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy(policy)
    if xla:  # Keras turns XLA off under op determinism (not every XLA op has a deterministic
        # kernel), so this way trains without it, as the train stage never does
        from tensorflow.python.framework import config as tf_config  # after blastcell.tf

        tf_config.disable_op_determinism()
        keras.utils.set_random_seed(config.base.seed)
    else:
        train.make_deterministic(config.base.seed)
    net = model.build(config.model, size, classes)
    train.compile_model(net, classes, config.train, -(-images // config.train.batch_size))
    net.jit_compile = xla
    net.fit(data, epochs=1, shuffle=False, verbose=0)
    start = time.perf_counter()
    net.fit(data, epochs=epochs, shuffle=False, verbose=0)
    rate = images * epochs / (time.perf_counter() - start)
    return rate, rate * 3 * forward_flops(net) / 1e9


def compare(config: Params, images: int, epochs: int) -> dict:
    out: dict = {"images": images, "epochs": epochs}
    for way in WAYS:
        rate, gflops = throughput(way, config, images, epochs)
        out[f"{way}_images_per_s"] = round(rate, 1)
        out[f"{way}_gflops"] = round(gflops, 1)
    base = out["float32_images_per_s"]
    out["ratio"] = round(out["bf16_images_per_s"] / base, 2)
    out["xla_ratio"] = round(out["bf16_xla_images_per_s"] / base, 2)
    return out


def measure(quick: bool = False, params_path: Path = ROOT / "params.yaml") -> dict:
    if quick:
        with tempfile.TemporaryDirectory() as tmp:
            path = tiny_data.tiny_params(Path(tmp) / "params.yaml")
            default = compare(load(path), 64, 1)
            seed = compare(load(path, [*SEED_CONFIG, "prepare.image_size=64"]), 32, 1)
    else:
        default = compare(load(params_path), 400, 2)
        seed = compare(load(params_path, SEED_CONFIG), 200, 1)
    return {
        "precision_bf16_ratio": default["ratio"],
        "seed_config_bf16_vs_fp32": seed["ratio"],
        "seed_config_bf16_xla_vs_fp32": seed["xla_ratio"],
        "precision_detail": {"default": default, "seed_config": seed, "quick": quick},
        "precision_cpu_bf16": devices.cpu_has_bf16(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, to see that it runs")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    args = parser.parse_args()
    result = measure(args.quick, args.params)
    print(f"CPU with native bfloat16: {result['precision_cpu_bf16']}")
    for name, r in result["precision_detail"].items():
        if name == "quick":
            continue
        ways = ", ".join(
            f"{way} {r[f'{way}_images_per_s']:.1f} images/s ({r[f'{way}_gflops']:.0f} GFLOPS)"
            for way in WAYS
        )
        print(
            f"{name:>12}: {ways}; bf16 / float32 {r['ratio']:.2f}, with XLA "
            f"{r['xla_ratio']:.2f} ({r['images']} images x {r['epochs']} epochs)"
        )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
