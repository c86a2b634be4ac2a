"""Keras Applications backbones for `model.architecture`, and their ImageNet weights as data.

A backbone is built without its ImageNet classifier (`include_top=False`) on the model's raw
uint8 RGB input, with the pixel scaling it was trained with as its first layers (built into
MobileNetV3 and EfficientNetV2; to [-1, 1], a layer of ours, for ResNet50V2), so a saved model
still takes pixels straight from disk. The model's head (see `model.backbone_net`) is the
seed's: global average pooling, dense, dropout, softmax.

The ImageNet weights Keras publishes for a backbone are a file of the repository, not a
download at training time: `model.weights: imagenet` reads `weights/<Keras's file name>`, a
dependency of the train stage that DVC tracks (`dvc import-url` brings it in with network,
`dvc pull` from the team's remote without; `blastcell weights ARCH` prints the command), and
checks it against the MD5 that Keras records for it. `tests/test_backbones.py` checks this
table against what Keras itself asks for.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from blastcell import params
from blastcell.files import DataError

WEIGHTS_DIR = Path(params.WEIGHTS_DIR)  # the train stage's dependency, at the repository root
_ORIGIN = "https://storage.googleapis.com/tensorflow/keras-applications/"
# Every batch normalisation layer's running statistics follow its batches with this momentum,
# the seed CNN's (`model.batch_norm`). Keras Applications set 0.99 (ResNet50V2) or 0.999
# (MobileNetV3) for ImageNet's millions of steps; a few hundred images train about 8 steps an
# epoch, and after 20 epochs statistics at 0.999 still hold 85 % of their initial values: the
# model trains on batch statistics and is scored on others. Inert where the layers are frozen
# (a backbone from weights, unless train.fine_tune_batch_norm).
BATCH_NORM_MOMENTUM = 0.9


@dataclass(frozen=True)
class Backbone:
    """One `model.architecture` from Keras Applications and its published ImageNet weights."""

    name: str  # the architecture's name in params
    constructor: str  # its function in keras.applications (imported only to build it)
    preprocessing: bool  # whether the Keras model scales its own pixels (include_preprocessing)
    scaling: str  # what it expects of its input, in words: `blastcell summary` says it
    file_name: str  # Keras's file of ImageNet weights without the classifier ("no top")
    folder: str  # its folder on Keras's storage
    md5: str  # as Keras records it
    # whether mixed bfloat16 trains it faster than float32 on a CPU with bfloat16 instructions
    # (bench/backbones.py: not where it is built of depthwise convolutions); `auto` follows it
    cpu_bfloat16: bool

    @property
    def url(self) -> str:
        return f"{_ORIGIN}{self.folder}/{self.file_name}"

    @property
    def weights_path(self) -> Path:
        return WEIGHTS_DIR / self.file_name

    def fetch_command(self) -> str:
        """The one command that brings the ImageNet weights into the repository, DVC-tracked."""
        return f"dvc import-url {self.url} {self.weights_path}"

    def build(self, inputs, weights: Path | None = None):
        """The backbone's feature maps for `inputs` (a Keras tensor of uint8-range RGB), its
        layers part of the caller's model; `weights`: a file of its weights (.h5) to load.
        Keras raises ValueError if the file holds another architecture's."""
        from blastcell.tf import keras  # TensorFlow: the table above is read without it

        kwargs = {"include_preprocessing": True} if self.preprocessing else {}
        x = inputs
        if not self.preprocessing:  # ResNet50V2 was trained on pixels / 127.5 - 1
            x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="backbone_scaling")(x)
        weights = None if weights is None else str(weights)
        constructor = getattr(keras.applications, self.constructor)
        base = constructor(include_top=False, weights=weights, input_tensor=x, **kwargs)
        for layer in base.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = BATCH_NORM_MOMENTUM
        return base.output


# params.BACKBONES, in its order: tests/test_backbones.py checks it
BACKBONES: dict[str, Backbone] = {
    b.name: b
    for b in (
        Backbone(
            "mobilenet_v3_small",
            "MobileNetV3Small",
            preprocessing=True,
            scaling="built in: pixels / 127.5 - 1",
            file_name="weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
            folder="mobilenet_v3",
            md5="d3e8ec802a04aa4fc771ee12a9a9b836",
            cpu_bfloat16=False,
        ),
        Backbone(
            "efficientnet_v2_b0",
            "EfficientNetV2B0",
            preprocessing=True,
            scaling="built in: pixels / 255, then by ImageNet's channel means and SDs",
            file_name="efficientnetv2-b0_notop.h5",
            folder="efficientnet_v2",
            md5="893217f2bb855e2983157299931e43ff",
            cpu_bfloat16=False,
        ),
        Backbone(
            "resnet50_v2",
            "ResNet50V2",
            preprocessing=False,
            scaling="pixels / 127.5 - 1, a layer before it",
            file_name="resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
            folder="resnet",
            md5="fac2f116257151a9d068a22e544a4917",
            cpu_bfloat16=True,
        ),
    )
}


def md5(path: Path) -> str:
    """The file's MD5, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def imagenet_file(backbone: Backbone) -> tuple[Path, str]:
    """The backbone's ImageNet weights file and its MD5, checked: DataError if it is missing
    (with the ways to get it) or is not the file Keras publishes (by its MD5)."""
    path = backbone.weights_path
    if not path.is_file():
        raise DataError(
            f"{path} does not exist: model.weights 'imagenet' for {backbone.name} reads Keras's "
            f"ImageNet weights there; with network run `{backbone.fetch_command()}`, from the "
            f"team's remote `dvc pull {path}`, or copy the file there and `dvc add {path}`"
        )
    found = md5(path)
    if found != backbone.md5:
        raise DataError(
            f"{path}: MD5 {found} is not {backbone.md5}, which Keras records for "
            f"{backbone.name}'s ImageNet weights: a different or damaged file"
        )
    return path, found
