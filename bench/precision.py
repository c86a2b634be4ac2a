"""Benchmark: training throughput of float32 vs mixed bfloat16, same model, same feed.

    python bench/precision.py [--quick] [--params params.yaml]

Trains the model params.yaml describes on the same random uint8 images (a tf.data pipeline of
in-memory batches, as the train stage feeds its shards) under each dtype policy, in this
process, and prints images per second and the ratio mixed_bfloat16 / float32 (bigger is
better), at the default configuration (400 images, 2 epochs) and at the seed's exact one (width
1.0, 257 px, batch 100: 200 images, 1 epoch). This measures what `train.precision: auto` buys;
it asserts nothing. --quick: the tests' tiny model on 64 images, 1 epoch, to show that it runs.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import tiny_data
import yaml
from train_throughput import SEED_CONFIG

from blastcell import devices, model, train
from blastcell.params import Params, load
from blastcell.tf import keras, tf

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ("float32", "mixed_bfloat16")


def throughput(policy: str, config: Params, images: int, epochs: int) -> float:
    """Training images per second over `epochs` whole epochs, after one warm-up epoch."""
    size, classes = config.prepare.image_size, 2
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (images, size, size, 3), dtype=np.uint8)
    y = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, images)]
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(config.train.batch_size).prefetch(2)
    keras.mixed_precision.set_global_policy(policy)
    train.make_deterministic(config.base.seed)
    net = model.build(config.model, size, classes)
    train.compile_model(net, classes, config.train.learning_rate)
    net.fit(data, epochs=1, shuffle=False, verbose=0)
    start = time.perf_counter()
    net.fit(data, epochs=epochs, shuffle=False, verbose=0)
    return images * epochs / (time.perf_counter() - start)


def compare(config: Params, images: int, epochs: int) -> dict:
    rates = {policy: round(throughput(policy, config, images, epochs), 1) for policy in POLICIES}
    return {
        "float32_images_per_s": rates["float32"],
        "bf16_images_per_s": rates["mixed_bfloat16"],
        "ratio": round(rates["mixed_bfloat16"] / rates["float32"], 2),
        "images": images,
        "epochs": epochs,
    }


def measure(quick: bool = False, params_path: Path = ROOT / "params.yaml") -> dict:
    if quick:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "params.yaml"
            path.write_text(yaml.safe_dump(tiny_data.tiny_params(), sort_keys=False))
            default = compare(load(path), 64, 1)
            seed = compare(load(path, [*SEED_CONFIG, "prepare.image_size=64"]), 32, 1)
    else:
        default = compare(load(params_path), 400, 2)
        seed = compare(load(params_path, SEED_CONFIG), 200, 1)
    return {
        "precision_bf16_ratio": default["ratio"],
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
        print(
            f"{name:>12}: float32 {r['float32_images_per_s']:7.1f}, mixed_bfloat16 "
            f"{r['bf16_images_per_s']:7.1f} images/s: ratio {r['ratio']:.2f} "
            f"({r['images']} images x {r['epochs']} epochs)"
        )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
