"""Benchmark: the Keras Applications backbones against the default seed CNN: parameters, and
training and inference images/s in float32 and mixed bfloat16, at 128 and 224 px.

    python bench/backbones.py [--quick]

Builds each `model.architecture` (the seed CNN as params.yaml describes it, then each backbone
under the same head) for 4 classes and trains it with the train stage's own `compile_model`
on random uint8 images held in memory, as `tf.data` batches (throughput only: the input
pipeline is the train benchmark's): one epoch to trace the graph, then `EPOCHS` timed. Inference
is `predict` on the same images, after one untimed call. Each architecture, size and precision
runs in this process, the dtype policy set before the model is built. It asserts nothing.
--quick: the seed CNN and MobileNetV3-Small at 32 px, float32, a few images, to show that it
runs. What it does not measure yet: accuracy, epochs to accuracy, pretrained weights.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

from blastcell import model, params, train
from blastcell.params import load
from blastcell.tf import keras, tf

ROOT = Path(__file__).resolve().parents[1]
CLASSES = 4
BATCH = 16
EPOCHS = 1  # timed, after the one that traces
POLICIES = ("float32", "mixed_bfloat16")


def rate(config: params.Params, size: int, policy: str, images: int) -> dict:
    """Parameters, and training and inference images/s of `config`'s model at `size` px."""
    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy(policy)
    train.make_deterministic(config.base.seed)
    net = model.build(config.model, size, CLASSES)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (images, size, size, 3), dtype=np.uint8)
    y = keras.utils.to_categorical(np.arange(images) % CLASSES, CLASSES)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH).cache()
    train.compile_model(net, CLASSES, config.train, len(data))
    net.fit(data, epochs=1, shuffle=False, verbose=0)  # traces the training step
    start = time.perf_counter()
    net.fit(data, epochs=EPOCHS, shuffle=False, verbose=0)
    train_rate = images * EPOCHS / (time.perf_counter() - start)
    net.predict(x[:BATCH], batch_size=BATCH, verbose=0)  # traces the inference step
    start = time.perf_counter()
    net.predict(x, batch_size=BATCH, verbose=0)
    infer_rate = images / (time.perf_counter() - start)
    keras.mixed_precision.set_global_policy("float32")
    return {
        "parameters": net.count_params(),
        "train_images_per_s": round(train_rate, 1),
        "infer_images_per_s": round(infer_rate, 1),
    }


def measure(quick: bool = False, params_path: Path = ROOT / "params.yaml") -> dict:
    architectures = ("seed_cnn", *(("mobilenet_v3_small",) if quick else params.BACKBONES))
    sizes, policies = ((32,), ("float32",)) if quick else ((128, 224), POLICIES)
    images = BATCH * (2 if quick else 4)
    detail: dict = {}
    for name in architectures:
        config = load(params_path, [f"model.architecture={name}"])
        for size in sizes:
            for policy in policies:
                r = rate(config, size, policy, images)
                detail.setdefault(name, {}).setdefault(str(size), {})[policy] = r
                print(
                    f"{name:>20} {size:>4} px {policy:>15}: {r['parameters']:>11,} parameters, "
                    f"train {r['train_images_per_s']:7.1f} images/s, "
                    f"inference {r['infer_images_per_s']:7.1f} images/s",
                    flush=True,
                )
    fastest = max(
        architectures[1:],
        key=lambda n: detail[n][str(sizes[0])][policies[0]]["train_images_per_s"],
    )
    return {
        "backbones_fastest": fastest,
        "backbones_detail": {"quick": quick, "batch": BATCH, "classes": CLASSES, **detail},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two models at 32 px: that it runs")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    args = parser.parse_args()
    print(json.dumps(measure(args.quick, args.params), indent=2))


if __name__ == "__main__":
    main()
