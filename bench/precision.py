"""Benchmark: training throughput of float32 vs mixed bfloat16 for the model params.yaml describes.

    python bench/precision.py [--images 400] [--epochs 2] [--set KEY=VALUE ...]

Trains the same model on the same random images with each dtype policy, one process, and prints
images per second and the ratio mixed_bfloat16 / float32 (bigger is better). This measures the
speed that `train.precision: auto` buys; it asserts nothing.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

from blastcell import model as M
from blastcell import params as P
from blastcell import training


def throughput(policy: str, params: P.Params, x: np.ndarray, y: np.ndarray, epochs: int) -> float:
    """Images per second over `epochs` whole epochs, after one warm-up epoch."""
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(params.base.seed)
    net = M.build(params.model, x.shape[1], y.shape[1])
    training.compile_model(net, y.shape[1], params.train.learning_rate)
    data = training.batches(x, y, params.train.batch_size, shuffle_seed=0)
    net.fit(data, epochs=1, shuffle=False, verbose=0)
    start = time.perf_counter()
    net.fit(data, epochs=epochs, shuffle=False, verbose=0)
    return len(x) * epochs / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    params = P.load(args.params, args.set)
    size = params.prepare.image_size
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (args.images, size, size, 3), dtype=np.uint8)
    y = np.eye(2, dtype=np.uint8)[rng.integers(0, 2, args.images)]
    print(
        f"model {params.model.architecture} width {params.model.width}, {size}x{size}, "
        f"batch {params.train.batch_size}, {args.images} images x {args.epochs} epochs, "
        f"cpu bf16: {M.cpu_has_bf16()}"
    )
    rates = {
        policy: throughput(policy, params, x, y, args.epochs)
        for policy in ("float32", "mixed_bfloat16")
    }
    for policy, rate in rates.items():
        print(f"{policy:>15}: {rate:7.1f} images/s")
    print(f"ratio mixed_bfloat16 / float32: {rates['mixed_bfloat16'] / rates['float32']:.2f}")


if __name__ == "__main__":
    main()
