"""The explain stage: what the model gets wrong and where it looks, as misclassified test images
and Grad-CAM heat maps.

Grad-CAM (Selvaraju et al., ICCV 2017) weights each channel of a convolutional layer's feature
maps by the mean gradient of a class score over that channel, sums the weighted maps, keeps the
positive part and scales it to [0, 1]: bright where evidence for the class lies. The class score
is the logit, before the softmax, as in the paper: the softmax probability saturates at 1 for
confident predictions and its gradient vanishes with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from blastcell import figures, model, prepared
from blastcell.files import DataError
from blastcell.params import ExplainParams, ParamsError
from blastcell.tf import keras, tf

# Layers that merely pass a convolution's maps on: the auto choice takes the first of these
# directly after the last convolution (its activation), as Grad-CAM's authors do.
_ACTIVATIONS = (keras.layers.ReLU, keras.layers.Activation, keras.layers.LeakyReLU)


@dataclass(frozen=True)
class Example:
    """One test image with its source file, true and predicted class and the model's belief."""

    index: int  # position in the test split's stored order
    file: str
    label: int
    pred: int
    prob: float  # the predicted class's probability
    image: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class Found:
    """What one pass over the test split keeps: the misclassified images and a sample per class."""

    n_test: int
    n_wrong: int  # all misclassified test images, also those beyond the kept ones
    misclassified: list[Example]
    samples: list[list[Example]]  # per class index: its first test images in stored order


def _is_4d(layer: keras.layers.Layer) -> bool:
    try:
        return len(layer.output.shape) == 4
    except (AttributeError, ValueError):  # a layer used more than once has no single output
        return False


def feature_layers(net: keras.Model) -> list[str]:
    """Names of the layers Grad-CAM can use: 4-D outputs from the first convolution on."""
    names, seen_conv = [], False
    for layer in net.layers:
        seen_conv = seen_conv or isinstance(layer, keras.layers.Conv2D)
        if seen_conv and _is_4d(layer):
            names.append(layer.name)
    return names


def last_conv_layer(net: keras.Model) -> str:
    """The activation whose maps the head pools (a backbone's last: ResNet50V2's follows a
    residual sum, not a convolution), else the last Conv2D's activation layer (the ReLU directly
    after it, or after its batch normalisation), else the Conv2D itself."""
    convs = [i for i, layer in enumerate(net.layers) if isinstance(layer, keras.layers.Conv2D)]
    if not convs:
        raise ValueError(f"model '{net.name}' has no Conv2D layer: Grad-CAM needs one")
    pools = [p for p in net.layers if isinstance(p, keras.layers.GlobalAveragePooling2D)]
    for layer in net.layers[convs[-1] + 1 :] if pools else ():
        if isinstance(layer, _ACTIVATIONS) and _is_4d(layer) and layer.output is pools[-1].input:
            return layer.name
    source = net.layers[convs[-1]]
    for after in net.layers[convs[-1] + 1 : convs[-1] + 3]:
        if not (_is_4d(after) and after.input is source.output):
            break
        if isinstance(after, _ACTIVATIONS):
            return after.name
        if not isinstance(after, keras.layers.BatchNormalization):
            break
        source = after
    return net.layers[convs[-1]].name


def resolve_layer(net: keras.Model, name: str | None) -> str:
    """The Grad-CAM layer: `name` (checked against the model) or, for None, the automatic one."""
    if name is None:
        return last_conv_layer(net)
    available = feature_layers(net)
    if name not in available:
        raise ParamsError(
            f"params: 'explain.layer' is '{name}', which is not a layer of model "
            f"'{net.name}' with 4-D feature maps; use null (the last convolution's "
            f"activation) or one of {available}"
        )
    return name


def _head(net: keras.Model):
    """(the tensor the class scores come from, a function from it to logits) for `model`.

    A final Dense with softmax: its input, and the Dense without the softmax. A final Softmax
    layer (or softmax Activation): its input, unchanged. Anything else: the output itself.
    """
    last = net.layers[-1]
    activation = getattr(last, "activation", None)
    if isinstance(last, keras.layers.Dense) and activation is keras.activations.softmax:
        kernel = tf.constant(keras.ops.convert_to_numpy(last.kernel), tf.float32)
        bias = (
            tf.constant(keras.ops.convert_to_numpy(last.bias), tf.float32)
            if last.use_bias
            else tf.zeros([kernel.shape[-1]], tf.float32)
        )
        return last.input, lambda h: tf.matmul(tf.cast(h, tf.float32), kernel) + bias
    if isinstance(last, keras.layers.Softmax) or (
        isinstance(last, keras.layers.Activation) and activation is keras.activations.softmax
    ):
        return last.input, lambda h: tf.cast(h, tf.float32)
    return net.output, lambda h: tf.cast(h, tf.float32)


@dataclass(frozen=True)
class Grid:
    """Where a feature map's units sit on the input, per axis (rows, columns): unit i's receptive
    field is centred on input pixel `offset + i * stride` (pixel centres at 0, 1, ...)."""

    offset: tuple[float, float]
    stride: tuple[float, float]


def _chain(net: keras.Model, layer: str) -> list[keras.layers.Layer] | None:
    """The layers from the input to `layer`, if each takes one input; None otherwise."""
    chain, current = [], net.get_layer(layer)
    while not isinstance(current, keras.layers.InputLayer):
        chain.append(current)
        history = getattr(current.input, "_keras_history", None)
        if history is None:  # several inputs (a list): not a plain chain
            return None
        current = history.operation
    return chain[::-1]


def _step(layer, offset: float, stride: float, size: int, axis: int):
    """(offset, stride, size) on one axis after `layer`; None if its geometry is unknown."""
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        return None
    if isinstance(layer, keras.layers.ZeroPadding2D):
        before, after = layer.padding[axis]
        return offset - before * stride, stride, size + before + after
    window = getattr(layer, "kernel_size", None) or getattr(layer, "pool_size", None)
    if window is not None:  # a convolution or pooling
        dilation = getattr(layer, "dilation_rate", (1, 1))[axis]
        k, s = (window[axis] - 1) * dilation + 1, layer.strides[axis]
        if layer.padding == "same":  # TensorFlow pads the extra pixel after
            out = -(-size // s)
            before = max((out - 1) * s + k - size, 0) // 2
        else:
            out, before = (size - k) // s + 1, 0
        return offset + ((k - 1) / 2 - before) * stride, stride * s, out
    shape_in, shape_out = layer.input.shape, layer.output.shape
    if len(shape_in) == 4 and shape_in[1:3] == shape_out[1:3]:  # pointwise: ReLU, Rescaling, ...
        return offset, stride, size
    return None


def feature_grid(net: keras.Model, layer: str) -> Grid:
    """Where `layer`'s units sit on the input image.

    Followed layer by layer (zero padding, convolutions and pooling with their padding, strides
    and dilation), so that maps which reach beyond the image, as the seed CNN's padded ones
    do, are laid on it where their receptive fields are. A model whose path to `layer` is not
    a plain chain of such layers gets the plain stretch of the map over the image.
    """
    size_in = net.input_shape[1:3]
    size_out = net.get_layer(layer).output.shape[1:3]
    chain = _chain(net, layer)
    offsets, strides = [], []
    for axis in (0, 1):
        state = (0.0, 1.0, size_in[axis])
        for item in chain or [None]:
            state = _step(item, *state, axis) if item is not None and state else None
        if state is None or state[2] != size_out[axis]:  # unknown: stretch over the image
            stretch = size_in[axis] / size_out[axis]
            state = (stretch / 2 - 0.5, stretch, size_out[axis])
        offsets.append(state[0])
        strides.append(state[1])
    return Grid(tuple(offsets), tuple(strides))


def _resample(maps: np.ndarray, grid: Grid, size: tuple[int, int]) -> np.ndarray:
    """Bilinear interpolation of maps (N, h, w) at every input pixel, by the grid; beyond the
    outermost units the nearest unit's value is kept."""
    out = maps
    for axis in (0, 1):
        n = maps.shape[axis + 1]
        coords = (np.arange(size[axis]) - grid.offset[axis]) / grid.stride[axis]
        coords = np.clip(coords, 0, n - 1)
        low = np.minimum(np.floor(coords).astype(int), max(n - 2, 0))
        high = np.minimum(low + 1, n - 1)
        frac = (coords - low).astype(np.float32)
        shape = [1, 1, 1]
        shape[axis + 1] = -1
        frac = frac.reshape(shape)
        out = (
            np.take(out, low, axis=axis + 1) * (1 - frac)
            + np.take(out, high, axis=axis + 1) * frac
        )
    return out.astype(np.float32)


def gradcam(
    net: keras.Model,
    images: np.ndarray,
    layer: str,
    classes: Sequence[int] | None = None,
    batch_size: int = 32,
) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM heat maps of `images` (N, H, W, 3, raw pixel values) from `layer`.

    For each image, the map is for `classes[i]`, by default the predicted class. Returns the
    maps (N, H, W) float32 in [0, 1] at the image's size and the model's probabilities (N, K).
    Each map is laid on the image where its units' receptive fields are centred
    (`feature_grid`) and interpolated bilinearly. Feature maps and gradients are cast to float32
    before any arithmetic, so a model saved with a mixed-precision policy works too.
    """
    features = net.get_layer(layer).output
    head_input, to_logits = _head(net)
    probe = keras.Model(net.inputs, [features, head_input, net.output])
    grid = feature_grid(net, layer)
    maps, probs = [], []
    for start in range(0, len(images), batch_size):
        x = tf.convert_to_tensor(images[start : start + batch_size], tf.float32)
        with tf.GradientTape() as tape:
            fmaps, hidden, out = probe(x, training=False)
            logits = to_logits(hidden)
            if classes is None:
                target = tf.argmax(out, axis=1, output_type=tf.int32)
            else:
                target = tf.constant(classes[start : start + batch_size], tf.int32)
            score = tf.gather(logits, target, axis=1, batch_dims=1)
        grads = tf.cast(tape.gradient(score, fmaps), tf.float32)
        weights = tf.reduce_mean(grads, axis=(1, 2))  # one weight per channel
        cam = tf.nn.relu(tf.einsum("nhwc,nc->nhw", tf.cast(fmaps, tf.float32), weights))
        top = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
        cam = tf.math.divide_no_nan(cam, top).numpy()
        maps.append(np.clip(_resample(cam, grid, images.shape[1:3]), 0.0, 1.0))
        probs.append(tf.cast(out, tf.float32).numpy())
    if not maps:
        size = images.shape[1:3]
        return np.zeros((0, *size), np.float32), np.zeros((0, net.output.shape[-1]), np.float32)
    return np.concatenate(maps), np.concatenate(probs)


def find_examples(
    net: keras.Model,
    folder: prepared.Folder,
    batch_size: int,
    max_misclassified: int,
    per_class: int,
) -> Found:
    """Predict the test split batch by batch; keep misclassified images and per-class samples.

    Misclassified: the first `max_misclassified` in stored test order. Samples: the first
    `per_class` test images of each true class, in stored order (deterministic, no seed).
    """
    spec = folder.spec
    table = folder.table("test")
    wrong: list[Example] = []
    samples: list[list[Example]] = [[] for _ in spec.classes]
    n_wrong, offset = 0, 0
    for x, y in folder.iterate("test", batch_size):
        probs = np.asarray(net.predict_on_batch(x), np.float32)
        preds = np.argmax(probs, axis=1)
        for i, (label, pred) in enumerate(zip(y.tolist(), preds.tolist(), strict=True)):
            entry = table[offset + i]
            if entry.label != label:
                raise DataError(
                    f"{folder.path / 'test.csv'} row {offset + i + 1} says "
                    f"'{spec.classes[entry.label]}', the shards say '{spec.classes[label]}': "
                    "rerun the prepare stage"
                )
            example = Example(offset + i, entry.file, label, pred, float(probs[i, pred]), x[i])
            if pred != label:
                n_wrong += 1
                if len(wrong) < max_misclassified:
                    wrong.append(example)
            if len(samples[label]) < per_class:
                samples[label].append(example)
        offset += len(y)
    return Found(offset, n_wrong, wrong, samples)


def caption(example: Example, classes: Sequence[str]) -> str:
    """'true X / pred Y (p)' for a figure title."""
    return f"true {classes[example.label]}\npred {classes[example.pred]} ({example.prob:.2f})"


@dataclass(frozen=True)
class Explanation:
    """The explain stage's figures, and its one summary line."""

    misclassified: Figure
    gradcam: Figure
    summary: str


def explain(data: Path, model_path: Path, params: ExplainParams) -> Explanation:
    """Misclassified test images and Grad-CAM maps of the model at `model_path` on `data`."""
    folder = prepared.read(data)
    classes = folder.spec.classes
    net = model.load(model_path, image_size=folder.spec.image_size, n_classes=len(classes))
    layer = resolve_layer(net, params.layer)
    found = find_examples(
        net, folder, params.batch_size, params.max_misclassified, params.per_class
    )
    sampled = [e for row in found.samples for e in row]
    heat, _ = gradcam(
        net,
        np.stack([e.image for e in sampled]) if sampled else np.zeros((0, 1, 1, 3), np.uint8),
        layer,
        classes=[e.pred for e in sampled],
        batch_size=params.batch_size,
    )
    maps = iter(heat)
    rows = [
        [(e.image, next(maps), e.file, caption(e, classes)) for e in row] for row in found.samples
    ]
    shown = len(found.misclassified)
    wrong = figures.titled_images(
        [e.image for e in found.misclassified],
        [f"{e.file}\n{caption(e, classes)}" for e in found.misclassified],
        title=f"Misclassified test images: {found.n_wrong} of {found.n_test}"
        + (f" (first {shown} shown)" if shown < found.n_wrong else ""),
        empty=f"no misclassified test images ({found.n_test} tested)",
    )
    cams = figures.heatmap_overlays(
        rows,
        [f"true {name}" for name in classes],
        title=f"Grad-CAM for the predicted class (layer {layer}); "
        f"first {params.per_class} test images of each class",
    )
    summary = (
        f"{found.n_wrong} of {found.n_test} test images misclassified ({shown} shown); "
        f"Grad-CAM from layer '{layer}' for {len(sampled)} images"
    )
    return Explanation(wrong, cams, summary)
