"""The schema of params.yaml: every param declared once, with its type, its range and its meaning.

params.yaml holds the values and nothing here holds a second set: every key is required, so a
key deleted from the file is an error naming it, as is an unknown key or section, a wrong type
or an out-of-range value. The message says what is allowed, worked out from the declaration
itself (`allowed`), e.g. "params: 'train.epochs' must be an integer in [1, 10000] (passes over
the training images), got 0". Each section is a frozen pydantic model, one per stage (the name
of its stage in dvc.yaml and its script in stages/), plus `base` and `data`, which several
stages read. A library function receives the section it needs, never the whole tree.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import annotated_types
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from blastcell.files import printable


class ParamsError(ValueError):
    """A params.yaml key is unknown, missing, of the wrong type or out of range."""


class Section(BaseModel):
    """A section of params.yaml: frozen, strictly typed (YAML ints pass as floats), no extras."""

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")


def _param(description: str, **constraints: Any) -> Any:
    """A required param with its one-line meaning and its constraints (ge, gt, le, lt, ...)."""
    return Field(description=description, **constraints)


def checked_path(key: str, path: str) -> str:
    """A folder param's value, unless it holds a control character (a newline, a tab, ...):
    such a name cannot be written in one line of a log, a manifest or dvc.lock. Any other
    character is allowed (spaces, quotes, `$`, `;`, a leading `-`): the stages read these
    paths from params.yaml, so no shell ever sees them."""
    if printable(path) != path:
        raise ValueError(
            f"'{key}' must be a path without control characters (newline, tab, ...), got {path!r}"
        )
    return path


class BaseParams(Section):
    seed: int = _param("one seed for every random choice in the pipeline", ge=0, le=2**32 - 1)


class DataParams(Section):
    dir: str = _param(
        "input folder: ALL-IDB2's flat ImNNN_L.tif layout or one folder per class", min_length=1
    )
    on_bad_image: Literal["error", "skip"] = _param(
        "error: stop, naming the file | skip: leave it out, listed in the manifest"
    )
    max_image_pixels: int = _param(
        "larger images are refused before decoding (decompression bombs); at most 100 million "
        "(10,000 x 10,000, 300 MB decoded)",
        ge=1,
        le=100_000_000,
    )
    min_image_side: int = _param("images with a shorter side are refused, pixels", ge=1, le=10_000)
    group_by: str | None = _param(
        "regular expression searched in each image's path in data.dir whose first group names "
        "its patient, slide or sample, kept on one side of every split; null: each image alone",
        min_length=1,
    )
    square: Literal["stretch", "pad", "center_crop"] = _param(
        "how a non-square image becomes square: stretch | pad (with its border's colour) | "
        "center_crop"
    )

    @field_validator("dir")
    @classmethod
    def _a_path(cls, folder: str) -> str:
        return checked_path("data.dir", folder)

    @field_validator("group_by")
    @classmethod
    def _one_group(cls, pattern: str | None) -> str | None:
        if pattern is None:
            return None
        try:
            groups = re.compile(pattern).groups
        except re.error as err:
            raise ValueError(f"'data.group_by' is not a regular expression: {err}") from None
        if groups < 1:
            raise ValueError(
                f"'data.group_by' must have a group, (...), naming the patient: {pattern!r}"
            )
        return pattern


class SynthesizeParams(Section):
    n_blast: int = _param("blast images written", ge=1, le=100_000)
    n_not_blast: int = _param("not-blast images written", ge=1, le=100_000)
    image_size: int = _param("side of the square crops, pixels", ge=16, le=2048)
    difficulty: float = _param("0: classes clearly apart ... 1: heavy overlap", ge=0, le=1)
    workers: int = _param(
        "processes; 0: one per CPU core (the files do not depend on it)", ge=0, le=1024
    )


FillMode = Literal["constant", "nearest", "reflect", "wrap"]


class AugmentParams(Section):
    """The seed's ImageDataGenerator settings, in Keras's units."""

    copies: int = _param("augmented copies per original", ge=0, le=100)
    rotation_range: float = _param("degrees", ge=0, le=180)
    width_shift_range: float = _param("fraction of the width", ge=0, lt=1)
    height_shift_range: float = _param("fraction of the height", ge=0, lt=1)
    shear_range: float = _param("degrees (as Keras reads it)", ge=0, le=90)
    zoom_range: float = _param("scale drawn per axis from [1 - zoom, 1 + zoom]", ge=0, lt=1)
    horizontal_flip: bool = _param("flip half the copies left to right")
    vertical_flip: bool = _param("flip half the copies upside down")
    fill_mode: FillMode = _param("how the points outside the image are filled")
    cval: float = _param("fill value for fill_mode constant", ge=0, le=255)
    workers: int = _param(
        "processes; 0: one per CPU core (the files do not depend on it)", ge=0, le=1024
    )


class CopiesParams(Section):
    """How the copies stage finds the source images that show the same cells."""

    keypoints: int = _param(
        "ORB keypoints per image (and per mirror image), found at 128 px", ge=8, le=5000
    )
    candidates: int = _param(
        "images verified per image, those whose keypoints collide most in one map",
        ge=1,
        le=1000,
    )
    min_inliers: int = _param(
        "keypoint pairs agreeing with one map (a turn, a scale, a shift, a flip) that make two "
        "images copies",
        ge=3,
        le=5000,
    )
    overlay_share: float = _param(
        "content at the same place in at least this share of the images (a scale bar, text) "
        "is an overlay, left out",
        gt=0,
        le=1,
    )
    on_label_conflict: Literal["error", "drop"] = _param(
        "copies under two classes: error: stop, naming two of them | drop: leave their whole "
        "group out, listed in the manifest"
    )
    workers: int = _param(
        "processes; 0: one per CPU core (the results do not depend on it)", ge=0, le=1024
    )


class PrepareParams(Section):
    split: Literal["source", "random"] = _param(
        "source: by original cell (no leakage) | random: the seed's leaky split"
    )
    test_fraction: float = _param("share of the original cells tested on", gt=0, lt=1)
    val_fraction: float = _param("share of the original cells validated on", gt=0, lt=1)
    image_size: int = _param("side the images are resized to, pixels", ge=16, le=1024)
    shard_size: int = _param("images per TFRecord shard", ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _leaves_training_images(self) -> PrepareParams:
        if self.test_fraction + self.val_fraction >= 1:
            raise ValueError(
                "'prepare.test_fraction + prepare.val_fraction' must be below 1, leaving "
                f"images to train on, got {self.test_fraction} + {self.val_fraction}"
            )
        return self


class Block(Section):
    """One convolution block: [zero padding] conv → ReLU [zero padding] [max pooling].

    `filters` and `kernel` are required; the other keys are optional parts of a block, absent
    unless given (the defaults below are what an absent part means, not a second value).
    """

    filters: int = _param("convolution filters at model.width 1", ge=1, le=4096)
    kernel: int = _param("convolution kernel side", ge=1, le=63)
    stride: int = Field(1, description="convolution stride", ge=1, le=16)
    conv_padding: Literal["valid", "same"] = Field(
        "valid", description="the convolution's own padding"
    )
    zero_pad: int | None = Field(
        None, description="zero padding on each side; null: none", ge=0, le=64
    )
    zero_pad_after: bool = Field(False, description="pad after the convolution, not before")
    pool: int | None = Field(None, description="max-pooling window; null: no pooling", ge=1, le=64)
    pool_stride: int | None = Field(
        None, description="max-pooling stride; null: the window", ge=1, le=64
    )


# The Keras Applications backbones that `blastcell.backbones` builds, under the seed's head.
BACKBONES = ("mobilenet_v3_small", "efficientnet_v2_b0", "resnet50_v2")
WEIGHTS_DIR = "weights"  # the train stage's dependency in dvc.yaml: every weights file is in it


class ModelParams(Section):
    architecture: Literal[("seed_cnn", "alexnet", *BACKBONES)] = _param(
        "the network built: the seed's CNN, AlexNet, or a Keras Applications backbone under "
        "the seed's head (global average pooling, dense, dropout)"
    )
    weights: str = _param(
        "the weights training starts from: none (random) | imagenet (a backbone's published "
        "ImageNet weights, read from weights/) | weights/<file>.h5 (a backbone's weights in "
        "Keras's format) | weights/<file>.keras (an earlier blastcell model: a warm start)",
        min_length=1,
    )
    width: float = _param("multiplies every convolution's filters; the seed: 1", gt=0, le=8)
    blocks: tuple[Block, ...] = _param(
        "the seed CNN's convolution blocks, in order",
        strict=False,  # a YAML list
    )
    input_scaling: Literal["unit", "center", "standardize"] = _param(
        "unit: pixels / 255, in [0, 1] (the seed's) | center: pixels / 127.5 - 1, in [-1, 1] | "
        "standardize: each colour channel to mean 0 and variance 1 by the training images' "
        "statistics (kept in the model)"
    )
    batch_norm: bool = _param(
        "batch normalisation after every convolution, before its ReLU; the seed: false"
    )
    dense_units: int = _param("units of each dense layer", ge=1, le=65_536)
    dropout: float = _param("dropout rate after each dense layer", ge=0, lt=1)

    @field_validator("weights")
    @classmethod
    def _weights_in_their_folder(cls, value: str) -> str:
        if value in ("none", "imagenet"):
            return value
        path = Path(checked_path("model.weights", value))
        if path.is_absolute() or ".." in path.parts or path.parts[0] != WEIGHTS_DIR:
            raise ValueError(
                f"'model.weights' must be none, imagenet or a file in {WEIGHTS_DIR}/ (the train "
                f"stage's declared dependency), got {value!r}"
            )
        if path.suffix not in (".h5", ".keras"):
            raise ValueError(
                "'model.weights' must name a Keras weights file (.h5) or an earlier blastcell "
                f"model (.keras), got {value!r}"
            )
        return path.as_posix()

    @model_validator(mode="after")
    def _weights_for_the_architecture(self) -> ModelParams:
        if self.architecture not in BACKBONES and (
            self.weights == "imagenet" or self.weights.endswith(".h5")
        ):
            raise ValueError(
                f"'model.weights' {self.weights!r} is a backbone's weights, and "
                f"'model.architecture' {self.architecture!r} is no backbone: use none, an earlier "
                f"{self.architecture} model (weights/<file>.keras), or one of {list(BACKBONES)}"
            )
        return self

    @model_validator(mode="after")
    def _blocks_for_seed_cnn(self) -> ModelParams:
        if self.architecture == "seed_cnn" and not self.blocks:
            raise ValueError(
                "'model.blocks' must be a non-empty list of blocks for the seed_cnn architecture"
            )
        return self


class TrainParams(Section):
    epochs: int = _param("passes over the training images", ge=1, le=10_000)
    batch_size: int = _param("images per training step", ge=1, le=4096)
    learning_rate: float = _param("Adam's learning rate; its peak, after the warm-up", gt=0, lt=1)
    schedule: Literal["constant", "cosine"] = _param(
        "constant: the seed's | cosine: from the peak down to 0 at the last epoch"
    )
    warmup_epochs: int = _param(
        "epochs in which the learning rate rises linearly from 0 to its peak; 0: none",
        ge=0,
        le=10_000,
    )
    patience: int = _param(
        "stop after this many epochs without a better monitor (the best kept); 0: never",
        ge=0,
        le=10_000,
    )
    label_smoothing: float = _param(
        "share of each one-hot label spread evenly over the classes; the seed: 0", ge=0, lt=1
    )
    precision: Literal["auto", "float32", "mixed_bfloat16", "mixed_float16"] = _param(
        "auto: mixed_bfloat16 where the hardware has it, else float32"
    )
    monitor: Literal["val_loss", "val_accuracy"] = _param("the best epoch, kept, is by this")
    shuffle_buffer: int = _param(
        "images held in memory for shuffling (bounds memory)", ge=1, le=100_000
    )
    strategy: Literal["auto", "mirrored", "multi_worker"] = _param(
        "auto: one device | mirrored: all local GPUs | multi_worker: the cluster in TF_CONFIG"
    )
    online_augmentation: bool = _param(
        "warp each training batch afresh every epoch (a rotation, shift, shear, zoom and flips "
        "within the augment section's ranges) in the input pipeline, not in the model"
    )
    frozen_epochs: int = _param(
        "first epochs that train only the head, a backbone's layers frozen (its batch "
        "normalisation in inference mode); 0: none. Needs a backbone and model.weights",
        ge=0,
        le=10_000,
    )
    fine_tune_learning_rate: float = _param(
        "Adam's learning rate once the backbone is unfrozen after train.frozen_epochs (its "
        "peak, after the warm-up); the frozen epochs use train.learning_rate",
        gt=0,
        lt=1,
    )
    fine_tune_batch_norm: bool = _param(
        "whether a backbone that starts from weights trains its batch normalisation layers; "
        "false: they keep the statistics they came with, in inference mode"
    )

    @model_validator(mode="after")
    def _warmup_within_epochs(self) -> TrainParams:
        if self.frozen_epochs > self.epochs:
            raise ValueError(
                f"'train.frozen_epochs' must be at most 'train.epochs', got {self.frozen_epochs} "
                f"of {self.epochs}"
            )
        tuned = self.epochs - self.frozen_epochs  # the warm-up starts as the backbone thaws
        if tuned and self.warmup_epochs >= tuned:
            of = f"{tuned} after {self.frozen_epochs} frozen" if self.frozen_epochs else tuned
            raise ValueError(
                "'train.warmup_epochs' must be below 'train.epochs' less 'train.frozen_epochs', "
                f"leaving epochs at the peak learning rate, got {self.warmup_epochs} of {of}"
            )
        return self


class EvaluateParams(Section):
    batch_size: int = _param("images per prediction step", ge=1, le=4096)
    bootstrap: int = _param(
        "resamples of the test images for the 95 % intervals; 0: none", ge=0, le=1_000_000
    )
    calibration_bins: int = _param(
        "equal-width confidence bins: ECE and the reliability diagram", ge=1, le=1000
    )


class ExplainParams(Section):
    max_misclassified: int = _param(
        "misclassified test images shown, in test order", ge=1, le=1000
    )
    per_class: int = _param("Grad-CAM for the first N test images of each class", ge=1, le=32)
    layer: str | None = _param(
        "Grad-CAM layer; null: the last convolution's activation", min_length=1
    )
    batch_size: int = _param("images per prediction step", ge=1, le=4096)


class AuditParams(Section):
    bins: int = _param(
        "levels per RGB channel of the colour histograms that shortlist candidates", ge=2, le=64
    )
    candidates: int = _param(
        "training images nearest in colour verified per test image", ge=1, le=1000
    )
    keypoints: int = _param("ORB keypoints per image, found at 128 px", ge=8, le=5000)
    min_inliers: int = _param(
        "keypoint pairs agreeing with one affine map that make a copy", ge=3, le=5000
    )
    min_inlier_ratio: float = _param(
        "share of a pair of images' keypoint pairs that must agree with that map", ge=0, le=1
    )
    batch_size: int = _param("images compared at a time (bounds memory)", ge=1, le=65536)


class CvParams(Section):
    splits: int = _param("repeated splits, drawn with seeds 1 to splits", ge=2, le=1000)

    @property
    def seeds(self) -> tuple[int, ...]:
        """The split seeds: 1 to `splits`."""
        return tuple(range(1, self.splits + 1))


EXTERNAL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


class Params(Section):
    """The whole of params.yaml."""

    base: BaseParams
    data: DataParams
    synthesize: SynthesizeParams
    copies: CopiesParams
    augment: AugmentParams
    prepare: PrepareParams
    model: ModelParams
    train: TrainParams
    evaluate: EvaluateParams
    explain: ExplainParams
    audit: AuditParams
    cv: CvParams
    external: dict[str, str] = _param(
        "additional test sets, each evaluated by the model on its own: name: data folder"
    )

    @model_validator(mode="after")
    def _frozen_epochs_for_a_backbone_with_weights(self) -> Params:
        if self.train.frozen_epochs and (
            self.model.architecture not in BACKBONES or self.model.weights == "none"
        ):
            raise ValueError(
                f"'train.frozen_epochs' {self.train.frozen_epochs} freezes a backbone's weights "
                f"while the head learns, but 'model.architecture' is {self.model.architecture!r} "
                f"with 'model.weights' {self.model.weights!r}: set it to 0, or use one of "
                f"{list(BACKBONES)} with weights to start from"
            )
        return self

    @field_validator("external")
    @classmethod
    def _external_sets(cls, sets: dict[str, str]) -> dict[str, str]:
        for name, folder in sets.items():
            if not EXTERNAL_NAME.fullmatch(name):
                raise ValueError(
                    f"'external.{name}' must be named with letters, digits, '_' and '-' (it "
                    "names the set's metrics file)"
                )
            if not folder:
                raise ValueError(f"'external.{name}' must name a data folder")
            checked_path(f"external.{name}", folder)
        return sets


def choices(literal: Any) -> tuple[str, ...]:
    """The values a Literal param allows, e.g. `choices(FillMode)`."""
    return typing.get_args(literal)


def allowed(field: FieldInfo) -> str:
    """What a param accepts, in words, from its declaration: 'an integer in [1, 10000]'."""
    return _describe(field.annotation, field.metadata)


def reference() -> list[tuple[str, str, str]]:
    """(dotted key, what it allows, its meaning) of every param, in params.yaml's order."""
    rows = []
    for section, owner in Params.model_fields.items():
        if typing.get_origin(owner.annotation) is dict:  # external: names of the user's choice
            rows.append((section, allowed(owner), owner.description or ""))
            continue
        for name, field in owner.annotation.model_fields.items():
            rows.append((f"{section}.{name}", allowed(field), field.description or ""))
            if name == "blocks":  # each block's keys; the optional ones may be left out
                for part, sub in Block.model_fields.items():
                    optional = "" if sub.is_required() else "optional: "
                    meaning = f"{optional}{sub.description}"
                    rows.append((f"{section}.blocks[].{part}", allowed(sub), meaning))
    return rows


def _describe(hint: Any, metadata: list[Any]) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return f"null or {_describe(inner, metadata)}"
    if origin is Literal:
        return f"one of {list(typing.get_args(hint))}"
    if origin is tuple:
        return "a list of blocks"
    if isinstance(hint, type) and issubclass(hint, Section):
        return "a mapping of keys to values"
    if origin is dict:
        return "a mapping of names to data folders"
    if hint is bool:
        return "true or false"
    if hint is str:
        return "a non-empty string"
    low = high = None
    for bound in metadata:
        if isinstance(bound, annotated_types.Ge | annotated_types.Gt):
            low = ("[" if isinstance(bound, annotated_types.Ge) else "(", _num(bound))
        if isinstance(bound, annotated_types.Le | annotated_types.Lt):
            high = (_num(bound), "]" if isinstance(bound, annotated_types.Le) else ")")
    kind = "an integer" if hint is int else "a number"
    if low and high:
        return f"{kind} in {low[0]}{low[1]}, {high[0]}{high[1]}"
    if low:
        return f"{kind} {'>=' if low[0] == '[' else '>'} {low[1]}"
    return kind


def _num(bound: Any) -> str:
    value = next(getattr(bound, k) for k in ("ge", "gt", "le", "lt") if hasattr(bound, k))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _field_at(loc: tuple[Any, ...]) -> tuple[type[Section], str] | None:
    """The section class and field name that a validation error's location points at."""
    cls: Any = Params
    name = None
    for part in loc:
        if isinstance(part, int):  # an item of model.blocks
            continue
        is_section = isinstance(cls, type) and issubclass(cls, Section)
        if not is_section or part not in cls.model_fields:
            return None
        owner, name = cls, part
        hint = cls.model_fields[part].annotation
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        cls = args[0] if typing.get_origin(hint) is tuple else hint
    return (owner, name) if name else None


def _dotted(loc: tuple[Any, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


def _section_at(loc: tuple[Any, ...]) -> type[Section]:
    found = _field_at(loc)
    if found is None:
        return Params
    owner, name = found
    hint = owner.model_fields[name].annotation
    args = [a for a in typing.get_args(hint) if a is not Ellipsis]
    return args[0] if typing.get_origin(hint) is tuple else hint


def _message(error: Mapping[str, Any]) -> str:
    """One line for a pydantic error: the dotted key and what it allows."""
    loc = tuple(error["loc"])
    key = _dotted(loc)
    if error["type"] == "extra_forbidden":
        parent = loc[:-1]
        accepts = sorted(_section_at(parent).model_fields)
        what = "section" if not parent else "key"
        where = _dotted(parent) or "params.yaml"
        close = difflib.get_close_matches(str(loc[-1]), accepts, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"unknown {what} '{key}'{hint}; '{where}' accepts {accepts}"
    if error["type"] == "missing":
        return f"missing {'section' if len(loc) == 1 else 'key'} '{key}'"
    if error["type"] == "value_error":  # a check across keys: its message names them
        return str(error["ctx"]["error"])
    got = repr(error["input"])
    got = got if len(got) <= 60 else f"{got[:57]}..."
    if loc[0] == "external" and len(loc) == 2:  # a set's folder
        return f"'{key}' must name a data folder, got {got}"
    found = _field_at(loc)
    if found is None:
        return f"'{key or 'params.yaml'}' must be a mapping of keys to values"
    owner, name = found
    field = owner.model_fields[name]
    meaning = f" ({field.description})" if field.description else ""
    return f"'{key}' must be {allowed(field)}{meaning}, got {got}"


def from_dict(raw: Any) -> Params:
    """Validate a parsed params mapping; the first problem found is a ParamsError."""
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        errors = err.errors()
        # A misspelt key shows as unknown and as missing: the unknown one says more.
        first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        raise ParamsError(f"params: {_message(first)}") from None


def read_yaml(path: Path) -> Any:
    """Parse a params file, naming it in any error."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ParamsError(f"params: cannot read {path}: {err}") from err
    return raw if raw is not None else {}


def write_overridden(path: Path, overrides: Iterable[str], output: Path | None = None) -> Path:
    """Apply `KEY=VALUE` overrides in DVC's dotted form to the params file `path` and write the
    result to `output` (default: `path` itself); returns the path written. Like `dvc exp run
    -S`, it rewrites only the lines it changes: comments and layout stay (ruamel.yaml's round
    trip, DVC's own YAML writer). Not validated: a test may write a bad value on purpose."""
    from ruamel.yaml import YAML  # installed with DVC; only the tests and benchmarks write

    writer = YAML()
    writer.default_flow_style = False  # as DVC writes params.yaml
    raw = writer.load(path.read_text())
    for item in overrides:
        set_dotted(raw, item)
    target = output or path
    with target.open("w") as f:
        writer.dump(raw, f)
    return target


def load(path: Path | str = "params.yaml", overrides: Iterable[str] = ()) -> Params:
    """Load and validate params, applying `KEY=VALUE` overrides in DVC's dotted form."""
    raw = read_yaml(Path(path))
    for item in overrides:
        set_dotted(raw, item)
    return from_dict(raw)


def set_dotted(raw: dict[str, Any], item: str) -> None:
    """Apply one `a.b.c=value` override (value parsed as YAML), as `dvc exp run -S` does; a
    number indexes a list (`model.blocks.0.filters=128`)."""
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise ParamsError(f"params: override '{item}' must look like KEY=VALUE")
    node: Any = raw
    *parents, leaf = key.split(".")
    for part in parents:
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and isinstance(node.get(part), dict | list):
            node = node[part]
        else:
            raise ParamsError(f"params: override '{key}': '{part}' is not a section")
    if isinstance(node, list):
        if not (leaf.isdigit() and int(leaf) < len(node)):
            raise ParamsError(f"params: override '{key}': '{leaf}' is not an index of the list")
        node[int(leaf)] = yaml.safe_load(text)
    else:
        node[leaf] = yaml.safe_load(text)
