"""Where training runs: the tf.distribute strategy, which process writes, and the precision.

`train.strategy` picks one device, every local GPU or a cluster of workers; `train.precision`
`auto` picks mixed bfloat16 where the hardware computes in it natively.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from blastcell import backbones
from blastcell.params import ParamsError
from blastcell.tf import tf

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def distribution(strategy: str) -> tf.distribute.Strategy:
    """The tf.distribute strategy that `train.strategy` names.

    auto: TensorFlow's default (one device: the first GPU, or the CPU);
    mirrored: every local GPU (MirroredStrategy; on a machine without GPUs, the CPU);
    multi_worker: MultiWorkerMirroredStrategy over the cluster in $TF_CONFIG. Create it before
    any other TensorFlow op, and start the same command on every worker.
    """
    if strategy == "mirrored":
        return tf.distribute.MirroredStrategy()
    if strategy == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise ParamsError(
                "params: 'train.strategy' multi_worker needs the cluster in $TF_CONFIG "
                "(see README, distributed training)"
            )
        return _KerasMultiWorker()
    return tf.distribute.get_strategy()


class _KerasMultiWorker(tf.distribute.MultiWorkerMirroredStrategy):
    """MultiWorkerMirroredStrategy with the two reductions that Keras 3's `fit` gets wrong.

    Keras 3.15 (keras-team/keras#20585) fails with this strategy: before the first step it
    reduces a whole (images, labels) batch to learn its shapes, which the collective
    implementation cannot do for a nested structure, and it reduces the scalar loss and metrics
    along axis 0. Here the shape probe gets this worker's own batch (only its shape is used)
    and scalars are averaged across replicas without an axis. Every other reduction is the
    strategy's own.
    """

    def reduce(self, reduce_op, value, axis):
        if isinstance(value, tuple | list | dict):
            return tf.nest.map_structure(lambda v: self.experimental_local_results(v)[0], value)
        if axis is not None and self.experimental_local_results(value)[0].shape.rank == 0:
            axis = None
        return super().reduce(reduce_op, value, axis)


def is_chief() -> bool:
    """Whether this process writes the outputs: no cluster, or the chief (worker 0 if none)."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = config.get("task") or {}
    if not task:
        return True
    if task.get("type") == "chief":
        return True
    return (
        task.get("type") == "worker"
        and task.get("index") == 0
        and ("chief" not in config.get("cluster", {}))
    )


def cpu_has_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU has native bfloat16 arithmetic (AVX512-BF16 or AMX)."""
    try:
        flags = cpuinfo.read_text().split()
    except OSError:
        return False
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def resolve_precision(precision: str, architecture: str) -> str:
    """The Keras dtype policy for a `train.precision` value; `auto` picks by hardware and
    `model.architecture`.

    auto: mixed_bfloat16 on a GPU of compute capability >= 8.0; on a CPU with AVX512-BF16/AMX,
    mixed_bfloat16 for the seed's CNN, AlexNet and the backbones it speeds up (the seed's CNN
    trains about twice as fast as in float32: see bench/precision.py), float32 for those it
    slows down (`Backbone.cpu_bfloat16`: MobileNetV3 and EfficientNetV2, built of depthwise
    convolutions, train slower: see bench/backbones.py); float32 elsewhere.
    """
    if precision != "auto":
        return precision
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        capability = details.get("compute_capability") or (0, 0)
        return "mixed_bfloat16" if tuple(capability) >= (8, 0) else "float32"
    backbone = backbones.BACKBONES.get(architecture)
    if backbone is not None and not backbone.cpu_bfloat16:
        return "float32"
    return "mixed_bfloat16" if cpu_has_bf16() else "float32"
