"""Build the classifier described by the `model` params: the seed CNN (block by block), AlexNet,
or a Keras Applications backbone (`blastcell.backbones`) under the seed's head; start it from
the weights `model.weights` names (`initialised`).

`save` writes a model reproducibly; `load` reads a trained one back, checked against its use.

Models take raw uint8-range RGB pixels; scaling them (`model.input_scaling`: to [0, 1], to
[-1, 1], or per channel to mean 0 and variance 1 by the training images' statistics, kept in the
model as constants; a backbone scales them as it was trained to, whatever `input_scaling` says)
is the model's first layer, so a saved model can be used on images straight from disk.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from blastcell import backbones
from blastcell.augmented import Source
from blastcell.files import DataError, atomic_file, scratch_file
from blastcell.params import Block, ModelParams, ParamsError
from blastcell.tf import keras

layers = keras.layers


def scaled(filters: int, width: float) -> int:
    """Filters of a convolution after the width multiplier (at least one)."""
    return max(1, round(filters * width))


def _check_spatial(size: int, block: Block, index: int, image_size: int) -> int:
    """Spatial size after a block; raises ParamsError if the block would shrink it to nothing."""
    if block.zero_pad is not None and not block.zero_pad_after:
        size += 2 * block.zero_pad
    if block.conv_padding == "same":
        size = -(-size // block.stride)
    else:
        size = (size - block.kernel) // block.stride + 1
    if block.zero_pad is not None and block.zero_pad_after:
        size += 2 * block.zero_pad
    if block.pool is not None and size >= block.pool:
        size = (size - block.pool) // (block.pool_stride or block.pool) + 1
    elif block.pool is not None:
        size = 0
    if size < 1:
        raise ParamsError(
            f"params: 'model.blocks[{index}]' leaves no pixels at prepare.image_size="
            f"{image_size}; use a larger image or smaller kernels, strides or pools"
        )
    return size


@dataclass(frozen=True)
class InputStats:
    """Per-channel mean and variance of the training images' pixels, scaled to [0, 1]."""

    mean: tuple[float, float, float]
    variance: tuple[float, float, float]


UNIT_STATS = InputStats((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # standardizing by these changes nothing


def input_stats(batches: Iterable[np.ndarray]) -> InputStats:
    """The per-channel mean and variance of the pixels / 255 of uint8 RGB image batches, summed
    in float64 one batch at a time."""
    count, total, squares = 0, np.zeros(3), np.zeros(3)
    for batch in batches:
        pixels = np.asarray(batch, dtype=np.float64).reshape(-1, 3) / 255.0
        count += len(pixels)
        total += pixels.sum(axis=0)
        squares += np.square(pixels).sum(axis=0)
    if count == 0:
        raise DataError("no training images to standardize the inputs by")
    mean = total / count
    variance = np.maximum(squares / count - np.square(mean), 1e-12)
    return InputStats(tuple(map(float, mean)), tuple(map(float, variance)))


def scaled_inputs(image_size: int, params: ModelParams, stats: InputStats | None):
    """The model's input and its pixels scaled as `model.input_scaling` says: by 1/255, to
    [-1, 1], or by 1/255 and then standardized by `stats` (the unit statistics, a no-op, when
    none are given: `blastcell summary`)."""
    inputs = keras.Input(shape=(image_size, image_size, 3))
    if params.input_scaling == "center":
        return inputs, layers.Rescaling(1.0 / 127.5, offset=-1.0)(inputs)
    x = layers.Rescaling(1.0 / 255)(inputs)
    if params.input_scaling == "standardize":
        stats = stats or UNIT_STATS
        x = layers.Normalization(
            axis=-1, mean=list(stats.mean), variance=list(stats.variance), name="standardize"
        )(x)
    return inputs, x


def conv_relu(x, filters: int, kernel: int, batch_norm: bool, **conv_args):
    """Conv2D → ReLU, or Conv2D (no bias: the normalisation's shift replaces it) → batch
    normalisation → ReLU. The normalisation's moving statistics keep 0.9 of their value per
    step (PyTorch's default; Keras's 0.99 lags by hundreds of steps, more than a small data
    set's whole run, and validation then sees statistics of the untrained network)."""
    x = layers.Conv2D(filters, kernel, use_bias=not batch_norm, **conv_args)(x)
    if batch_norm:
        x = layers.BatchNormalization(momentum=0.9)(x)
    return layers.ReLU()(x)


def seed_cnn(
    params: ModelParams, image_size: int, n_classes: int, stats: InputStats | None = None
) -> keras.Model:
    """The seed's CNN: conv blocks, global average pooling, dense, dropout, softmax."""
    size = image_size
    for i, block in enumerate(params.blocks):
        size = _check_spatial(size, block, i, image_size)
    inputs, x = scaled_inputs(image_size, params, stats)
    for block in params.blocks:
        if block.zero_pad is not None and not block.zero_pad_after:
            x = layers.ZeroPadding2D(block.zero_pad)(x)
        x = conv_relu(
            x,
            scaled(block.filters, params.width),
            block.kernel,
            params.batch_norm,
            strides=block.stride,
            padding=block.conv_padding,
        )
        if block.zero_pad is not None and block.zero_pad_after:
            x = layers.ZeroPadding2D(block.zero_pad)(x)
        if block.pool is not None:
            x = layers.MaxPool2D(block.pool, strides=block.pool_stride, padding="valid")(x)
    x = layers.GlobalAveragePooling2D()(x)
    # The seed applies ReLU twice here (Dense activation, then a ReLU layer): kept as written.
    x = layers.Dense(params.dense_units, activation="relu")(x)
    x = layers.ReLU()(x)
    x = layers.Dropout(params.dropout)(x)
    # float32 softmax keeps probabilities stable under mixed precision.
    outputs = layers.Dense(n_classes, activation="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="seed_cnn")


def alexnet(
    params: ModelParams, image_size: int, n_classes: int, stats: InputStats | None = None
) -> keras.Model:
    """AlexNet (Krizhevsky et al. 2012), the seed's comparison model, single-tower.

    Convolution widths follow the paper, scaled by `model.width`; the two hidden dense layers
    use `model.dense_units` and `model.dropout` (the paper: 4096 and 0.5).
    """
    if image_size < 67:
        raise ParamsError(
            "params: model.architecture 'alexnet' needs prepare.image_size >= 67, "
            f"got {image_size}"
        )
    w = params.width
    inputs, x = scaled_inputs(image_size, params, stats)
    bn = params.batch_norm
    x = conv_relu(x, scaled(96, w), 11, bn, strides=4)
    x = layers.MaxPool2D(3, strides=2)(x)
    x = conv_relu(x, scaled(256, w), 5, bn, padding="same")
    x = layers.MaxPool2D(3, strides=2)(x)
    for filters in (384, 384, 256):
        x = conv_relu(x, scaled(filters, w), 3, bn, padding="same")
    x = layers.MaxPool2D(3, strides=2)(x)
    x = layers.Flatten()(x)
    for _ in range(2):
        x = layers.Dense(params.dense_units, activation="relu")(x)
        x = layers.Dropout(params.dropout)(x)
    outputs = layers.Dense(n_classes, activation="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="alexnet")


def _reason(err: Exception) -> str:
    """The first line of a loader's error, for a one-line DataError (its type if it says
    nothing)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


BACKBONE_MIN_SIZE = 32  # Keras Applications' smallest input without the ImageNet classifier


def backbone_net(
    params: ModelParams,
    image_size: int,
    n_classes: int,
    stats: InputStats | None = None,
    weights: Path | None = None,
) -> keras.Model:
    """A Keras Applications backbone (`backbones.BACKBONES`) under the seed's head: global
    average pooling, dense (`model.dense_units`, ReLU), dropout (`model.dropout`), softmax.
    The backbone scales the pixels itself (`stats` are not used); `weights` is a file of its
    weights in Keras's format (.h5), loaded into it."""
    if image_size < BACKBONE_MIN_SIZE:
        raise ParamsError(
            f"params: model.architecture {params.architecture!r} needs prepare.image_size >= "
            f"{BACKBONE_MIN_SIZE}, got {image_size}"
        )
    inputs = keras.Input(shape=(image_size, image_size, 3))
    backbone = backbones.BACKBONES[params.architecture]
    try:
        features = backbone.build(inputs, weights)
    except (ValueError, OSError) as err:  # Keras's mismatch of layers or shapes, an h5 error
        raise DataError(
            f"{weights}: not {params.architecture}'s weights in Keras's format: {_reason(err)}"
        ) from err
    x = layers.GlobalAveragePooling2D(name="head_pool")(features)
    x = layers.Dense(params.dense_units, activation="relu", name="head_dense")(x)
    x = layers.Dropout(params.dropout, name="head_dropout")(x)
    outputs = layers.Dense(n_classes, activation="softmax", dtype="float32", name="head_output")(x)
    return keras.Model(inputs, outputs, name=params.architecture)


def build(
    params: ModelParams, image_size: int, n_classes: int, stats: InputStats | None = None
) -> keras.Model:
    """The model that the `model` params describe, for square RGB inputs of `image_size`,
    with random weights; `stats` are the training images' (see `input_stats`), used by
    `input_scaling: standardize`."""
    builders = {"seed_cnn": seed_cnn, "alexnet": alexnet}
    return builders.get(params.architecture, backbone_net)(params, image_size, n_classes, stats)


HEAD = ("head_pool", "head_dense", "head_dropout", "head_output")  # backbone_net's own layers


def backbone_summary(net: keras.Model) -> list[str]:
    """A backbone model in a few lines (Keras's summary lists its hundreds of layers): the
    input, the backbone as one row, each layer of the head, the parameters."""
    backbone = backbones.BACKBONES[net.name]
    inner = [layer for layer in net.layers[1:] if layer.name not in HEAD]
    rows = [
        ("input", "raw uint8-range RGB", net.input_shape, 0),
        (
            f"{backbone.constructor} ({len(inner)} layers)",
            backbone.scaling,
            inner[-1].output.shape,
            sum(layer.count_params() for layer in inner),
        ),
        *(
            (
                name,
                type(net.get_layer(name)).__name__,
                net.get_layer(name).output.shape,
                net.get_layer(name).count_params(),
            )
            for name in HEAD
        ),
    ]
    lines = [f'Model: "{net.name}"', f"{'layer':<30} {'kind':<66} {'output':<20} {'params':>11}"]
    lines += [f"{a:<30} {b:<66} {tuple(c)!s:<20} {d:>11,}" for a, b, c, d in rows]
    return lines


@dataclass(frozen=True)
class Start:
    """What training started from (`model.weights`): the file read, its MD5, and the layers
    with weights that it set and that it left random (a warm start's output layer, rebuilt
    when the earlier model scored another number of classes)."""

    weights: str  # the param's value
    file: str | None = None
    md5: str | None = None
    loaded: int = 0  # layers with weights set from the file
    rebuilt: tuple[str, ...] = ()

    def report(self) -> dict[str, object]:
        """train's report of it: the param, and what was loaded from where."""
        return {
            "weights": self.weights,
            "weights_file": self.file,
            "weights_md5": self.md5,
            "layers_loaded": self.loaded,
            "layers_rebuilt": list(self.rebuilt),
        }

    def describe(self) -> str:
        """A phrase for train's line: where training started."""
        if self.file is None:
            return "random weights"
        rebuilt = f"; {', '.join(self.rebuilt)} rebuilt" if self.rebuilt else ""
        return f"weights from {self.file} ({self.loaded} layers{rebuilt})"


def _weighted(net: keras.Model) -> list[keras.layers.Layer]:
    return [layer for layer in net.layers if layer.weights]


def warm_start(net: keras.Model, path: Path) -> tuple[int, tuple[str, ...]]:
    """Set `net`'s weights from the earlier blastcell model at `path`, layer by layer in order:
    (layers set, output layers left random). The architectures must match (name, layers with
    weights, their shapes); only the output layer may differ, when the classes' number does.
    DataError names the file and the first difference."""
    earlier = load(path)
    if earlier.name != net.name:
        raise DataError(
            f"{path} is a {earlier.name} model and model.architecture is {net.name}: a warm "
            "start needs the same architecture"
        )
    ours, theirs = _weighted(net), _weighted(earlier)
    if len(ours) != len(theirs):
        raise DataError(
            f"{path} has {len(theirs)} layers with weights and this {net.name} has {len(ours)}: "
            "not the same architecture (model.blocks, model.batch_norm?)"
        )
    rebuilt = []
    for i, (mine, old) in enumerate(zip(ours, theirs, strict=True)):
        want = [tuple(w.shape) for w in mine.weights]
        have = [tuple(w.shape) for w in old.weights]
        if want == have:
            mine.set_weights(old.get_weights())
        elif i == len(ours) - 1:  # the output layer: another number of classes
            rebuilt.append(mine.name)
        else:
            raise DataError(
                f"{path}: layer {old.name} holds weights of shapes {have} where this model's "
                f"{mine.name} needs {want}: not the same architecture (model.width, "
                "model.dense_units?)"
            )
    return len(ours) - len(rebuilt), tuple(rebuilt)


def initialised(
    params: ModelParams, image_size: int, n_classes: int, stats: InputStats | None = None
) -> tuple[keras.Model, Start]:
    """`build`'s model, started from the weights `model.weights` names (paths are relative to
    the working folder, the repository root when DVC runs a stage): none; a backbone's ImageNet
    weights, checked against Keras's MD5 (`backbones.imagenet_file`); a backbone's weights file
    (.h5); or an earlier blastcell model (.keras, `warm_start`). DataError if the file is
    missing or does not fit."""
    if params.weights == "none":
        return build(params, image_size, n_classes, stats), Start("none")
    if params.weights == "imagenet":
        path, checksum = backbones.imagenet_file(backbones.BACKBONES[params.architecture])
    else:
        path = Path(params.weights)
        if not path.is_file():
            raise DataError(
                f"{path} does not exist (model.weights): `dvc add` it, or `dvc pull` it from the "
                "team's remote"
            )
        checksum = backbones.md5(path)
    if path.suffix == ".h5":
        net = backbone_net(params, image_size, n_classes, stats, weights=path)
        loaded = sum(layer.name not in HEAD for layer in _weighted(net))  # the backbone's
        return net, Start(params.weights, path.as_posix(), checksum, loaded)
    net = build(params, image_size, n_classes, stats)
    loaded, rebuilt = warm_start(net, path)
    return net, Start(params.weights, path.as_posix(), checksum, loaded, rebuilt)


def load(
    path: Path, *, image_size: int | None = None, n_classes: int | None = None
) -> keras.Model:
    """Load a trained model safely (no code from the file), checking what it takes and scores.

    It must take square RGB images, of `image_size` pixels if given, and score `n_classes`
    classes if given; DataError names the file and what is wrong.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"model file {path} does not exist")
    if path.suffix == ".keras" and not zipfile.is_zipfile(path):  # Keras would say "not found"
        raise DataError(f"{path}: not a Keras model file (.keras): not a zip archive")
    try:
        model = keras.models.load_model(path, safe_mode=True)
    except Exception as err:  # loaders raise many types; all mean "not a usable model"
        raise DataError(f"{path}: not a Keras model file (.keras): {_reason(err)}") from err
    shape = model.input_shape
    square_rgb = isinstance(shape, tuple) and len(shape) == 4 and shape[3] == 3
    if not square_rgb or shape[1] is None or shape[1] != shape[2]:
        raise DataError(f"{path}: input shape {shape} is not square RGB (None, S, S, 3)")
    size = shape[1]
    if image_size is not None and size != image_size:
        raise DataError(
            f"{path} takes {size}x{size} images; the prepared data has "
            f"{image_size}x{image_size}: retrain on it or prepare at {size}"
        )
    scored = model.output_shape[-1]
    if n_classes is not None and scored != n_classes:
        raise DataError(
            f"{path} scores {scored} classes but {n_classes} class names are given: "
            "it was trained on other classes"
        )
    return model


_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip entry can carry


def _renumber_shared(node: object, ids: dict[int, int]) -> object:
    """`node` with every `shared_object_id` replaced by its order of first appearance."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "shared_object_id" and isinstance(value, int):
                out[key] = ids.setdefault(value, len(ids) + 1)
            else:
                out[key] = _renumber_shared(value, ids)
        return out
    if isinstance(node, list):
        return [_renumber_shared(v, ids) for v in node]
    return node


def save(model: keras.Model, path: Path) -> None:
    """Save `model` as a `.keras` file whose bytes depend only on the model.

    Keras stamps the file with the time of saving (`date_saved` in its metadata, and the weights
    entry's zip date) and numbers objects shared between layers (the dtype policy) by their
    memory address, so the same weights would hash differently on every run: the stamps are
    removed and the shared objects renumbered 1, 2, ... in order of appearance, so DVC sees an
    unchanged model as unchanged. The file is replaced only once it is complete, and Keras's own
    file is a temporary beside it (`files.scratch_file`): a kill leaves the previous model.
    """
    path = Path(path)
    unstamped = f"{path.stem}.unstamped{path.suffix}"
    with atomic_file(path) as out, scratch_file(path.parent, unstamped) as raw:
        model.save(raw)
        with zipfile.ZipFile(raw) as src, zipfile.ZipFile(out, "w") as dst:
            for info in src.infolist():
                data = src.read(info)
                if info.filename == "metadata.json":
                    meta = json.loads(data)
                    meta.pop("date_saved", None)
                    data = json.dumps(meta).encode()
                elif info.filename == "config.json":
                    data = json.dumps(_renumber_shared(json.loads(data), {})).encode()
                entry = zipfile.ZipInfo(info.filename, date_time=_ZIP_TIME)
                entry.compress_type = info.compress_type
                entry.external_attr = info.external_attr
                dst.writestr(entry, data)


TRAINING_DATA = "training_data.json"  # beside the model file


@dataclass(frozen=True)
class TrainingData:
    """What a trained model learned from, written beside it by the train stage: the data set
    (`augmented.Source`: its folder, whether it was the embedded synthetic set, its manifest's
    checksum, its images and how they were made square), the classes, the input size and the
    split's sizes. The file is flat: the source's fields first, then the others (`to_json`)."""

    source: Source
    classes: list[str]
    image_size: int
    train_images: int
    val_images: int

    def to_json(self) -> dict[str, object]:
        """`training_data.json`'s object: the source's fields, then the others, in order."""
        rest = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "source"}
        return {**self.source.to_json(), **rest}

    @classmethod
    def from_json(cls, raw: Mapping[str, object]) -> TrainingData:
        """The record that `to_json` wrote; TypeError if a field is missing or unknown."""
        if not isinstance(raw, Mapping):
            raise TypeError(f"expected a JSON object, got {type(raw).__name__}")
        names = {f.name for f in fields(Source)}
        source = Source.from_json({k: v for k, v in raw.items() if k in names})
        return cls(source, **{k: v for k, v in raw.items() if k not in names})


def training_data(path: Path) -> TrainingData | None:
    """The record beside the model at `path`, if there is one; DataError if it is unreadable."""
    record = path.with_name(TRAINING_DATA)
    if not record.is_file():
        return None
    try:
        return TrainingData.from_json(json.loads(record.read_text()))
    except (OSError, ValueError, TypeError) as err:
        raise DataError(f"{record}: cannot read what the model was trained on: {err}") from err
