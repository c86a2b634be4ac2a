"""Load and validate params.yaml into frozen dataclasses, one per pipeline stage.

Every stage validates the whole file before doing any work, so a typo, a wrong type or an
out-of-range value anywhere fails at once with the dotted key that is wrong. Stages then read
only their own sections; the keys they read are recorded (see `reads`) so a test can prove that
each dvc.yaml stage declares exactly the params its script uses.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import sys
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import yaml


class ParamsError(ValueError):
    """A params.yaml key is unknown, missing, of the wrong type or out of range."""


# Keys read through Section attributes, as "section.field"; see `reads`. Validation's own
# reads (while `_LOADING` is set) are not the stage's and are not recorded.
_READS: set[str] = set()
_LOADING = False


class Section:
    """Base of the per-stage dataclasses: records which keys a stage reads."""

    _name: ClassVar[str] = ""

    def __getattribute__(self, attr: str) -> Any:
        if not attr.startswith("_"):
            fields = object.__getattribute__(self, "__dataclass_fields__")
            if attr in fields and not _LOADING:
                _READS.add(f"{object.__getattribute__(self, '_name')}.{attr}")
        return object.__getattribute__(self, attr)


def reads() -> set[str]:
    """The dotted params keys read so far in this process."""
    return set(_READS)


def _check(ok: bool, key: str, allowed: str) -> None:
    if not ok:
        raise ParamsError(f"params: '{key}' must be {allowed}")


def _section(name: str):
    def wrap(cls):
        cls = dataclasses.dataclass(frozen=True)(cls)
        cls._name = name
        return cls

    return wrap


@_section("base")
class BaseParams(Section):
    seed: int = 42


BAD_IMAGE_POLICIES = ("error", "skip")


@_section("data")
class DataParams(Section):
    dir: str = "data/synthetic"
    on_bad_image: str = "error"
    max_image_pixels: int = 40_000_000

    def __post_init__(self) -> None:
        _check(
            self.on_bad_image in BAD_IMAGE_POLICIES,
            "data.on_bad_image",
            f"one of {list(BAD_IMAGE_POLICIES)}",
        )
        _check(self.max_image_pixels >= 1, "data.max_image_pixels", "an integer >= 1")


@_section("synthesize")
class SynthesizeParams(Section):
    n_blast: int = 130
    n_not_blast: int = 130
    image_size: int = 257
    difficulty: float = 0.5
    workers: int = 0  # processes; 0 = one per CPU core

    def __post_init__(self) -> None:
        _check(0 <= self.difficulty <= 1, "synthesize.difficulty", "a number in [0, 1]")
        _check(0 <= self.workers <= 256, "synthesize.workers", "an integer in [0, 256]")
        _check(self.n_blast >= 1, "synthesize.n_blast", "an integer >= 1")
        _check(self.n_not_blast >= 1, "synthesize.n_not_blast", "an integer >= 1")
        _check(16 <= self.image_size <= 2048, "synthesize.image_size", "an integer in [16, 2048]")


FILL_MODES = ("constant", "nearest", "reflect", "wrap")


@_section("augment")
class AugmentParams(Section):
    copies: int = 4
    rotation_range: float = 45.0
    width_shift_range: float = 0.2
    height_shift_range: float = 0.2
    shear_range: float = 0.2
    zoom_range: float = 0.2
    horizontal_flip: bool = True
    vertical_flip: bool = False
    fill_mode: str = "constant"
    cval: float = 125.0
    workers: int = 0  # processes; 0 = one per CPU core

    def __post_init__(self) -> None:
        _check(0 <= self.copies <= 100, "augment.copies", "an integer in [0, 100]")
        _check(0 <= self.workers <= 256, "augment.workers", "an integer in [0, 256]")
        _check(0 <= self.rotation_range <= 180, "augment.rotation_range", "degrees in [0, 180]")
        for key in ("width_shift_range", "height_shift_range"):
            _check(0 <= getattr(self, key) < 1, f"augment.{key}", "a fraction in [0, 1)")
        _check(0 <= self.shear_range <= 90, "augment.shear_range", "degrees in [0, 90]")
        _check(0 <= self.zoom_range < 1, "augment.zoom_range", "a number in [0, 1)")
        _check(self.fill_mode in FILL_MODES, "augment.fill_mode", f"one of {list(FILL_MODES)}")
        _check(0 <= self.cval <= 255, "augment.cval", "a pixel value in [0, 255]")


SPLITS = ("source", "random")


@_section("prepare")
class PrepareParams(Section):
    split: str = "source"
    test_fraction: float = 0.2
    val_fraction: float = 0.15
    image_size: int = 128
    shard_size: int = 512  # images per TFRecord shard

    def __post_init__(self) -> None:
        _check(1 <= self.shard_size <= 1_000_000, "prepare.shard_size", "an integer >= 1")
        _check(self.split in SPLITS, "prepare.split", f"one of {list(SPLITS)}")
        _check(0 < self.test_fraction < 1, "prepare.test_fraction", "a fraction in (0, 1)")
        _check(0 < self.val_fraction < 1, "prepare.val_fraction", "a fraction in (0, 1)")
        _check(
            self.test_fraction + self.val_fraction < 1,
            "prepare.test_fraction + prepare.val_fraction",
            "below 1, leaving images to train on",
        )
        _check(16 <= self.image_size <= 1024, "prepare.image_size", "an integer in [16, 1024]")


@dataclasses.dataclass(frozen=True)
class Block:
    """One convolution block: [zero padding] conv → ReLU [zero padding] [max pooling]."""

    filters: int
    kernel: int
    stride: int = 1
    conv_padding: str = "valid"
    zero_pad: int | None = None
    zero_pad_after: bool = False
    pool: int | None = None
    pool_stride: int | None = None


ARCHITECTURES = ("seed_cnn", "alexnet")
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")


@_section("model")
class ModelParams(Section):
    architecture: str = "seed_cnn"
    width: float = 1.0
    blocks: tuple[Block, ...] = ()
    dense_units: int = 1000
    dropout: float = 0.5

    def __post_init__(self) -> None:
        _check(self.architecture in ARCHITECTURES, "model.architecture", f"one of {ARCHITECTURES}")
        _check(0 < self.width <= 8, "model.width", "a multiplier in (0, 8]")
        _check(self.dense_units >= 1, "model.dense_units", "an integer >= 1")
        _check(0 <= self.dropout < 1, "model.dropout", "a rate in [0, 1)")
        _check(
            self.architecture != "seed_cnn" or len(self.blocks) > 0,
            "model.blocks",
            "a non-empty list of blocks for the seed_cnn architecture",
        )


MONITORS = ("val_loss", "val_accuracy")
STRATEGIES = ("auto", "mirrored", "multi_worker")


@_section("train")
class TrainParams(Section):
    epochs: int = 110
    batch_size: int = 100
    learning_rate: float = 1e-4
    precision: str = "auto"
    monitor: str = "val_loss"
    shuffle_buffer: int = 2000  # images held for shuffling; >= the training set: a full shuffle
    strategy: str = "auto"

    def __post_init__(self) -> None:
        _check(self.shuffle_buffer >= 1, "train.shuffle_buffer", "an integer >= 1")
        _check(self.strategy in STRATEGIES, "train.strategy", f"one of {list(STRATEGIES)}")
        _check(1 <= self.epochs <= 10_000, "train.epochs", "an integer in [1, 10000]")
        _check(1 <= self.batch_size <= 4096, "train.batch_size", "an integer in [1, 4096]")
        _check(0 < self.learning_rate < 1, "train.learning_rate", "a number in (0, 1)")
        _check(self.precision in PRECISIONS, "train.precision", f"one of {list(PRECISIONS)}")
        _check(self.monitor in MONITORS, "train.monitor", f"one of {list(MONITORS)}")


@_section("evaluate")
class EvaluateParams(Section):
    batch_size: int = 100
    bootstrap: int = 2000  # resamples of the test images for 95 % intervals; 0: none
    calibration_bins: int = 10  # equal-width confidence bins for ECE and the reliability diagram

    def __post_init__(self) -> None:
        _check(1 <= self.batch_size <= 4096, "evaluate.batch_size", "an integer in [1, 4096]")
        _check(
            0 <= self.bootstrap <= 1_000_000,
            "evaluate.bootstrap",
            "an integer in [0, 1000000] (resamples; 0 turns the intervals off)",
        )
        _check(
            1 <= self.calibration_bins <= 1000,
            "evaluate.calibration_bins",
            "an integer in [1, 1000]",
        )


@_section("explain")
class ExplainParams(Section):
    max_misclassified: int = 32  # misclassified test images shown, in test order
    per_class: int = 4  # Grad-CAM: the first N test images of each class, in stored order
    layer: str | None = None  # Grad-CAM layer; null: the last convolution's activation
    batch_size: int = 100

    def __post_init__(self) -> None:
        _check(
            1 <= self.max_misclassified <= 1000,
            "explain.max_misclassified",
            "an integer in [1, 1000]",
        )
        _check(1 <= self.per_class <= 32, "explain.per_class", "an integer in [1, 32]")
        _check(
            self.layer is None or self.layer.strip() != "",
            "explain.layer",
            "null (the last convolution's activation) or a layer name",
        )
        _check(1 <= self.batch_size <= 4096, "explain.batch_size", "an integer in [1, 4096]")


@_section("audit")
class AuditParams(Section):
    bins: int = 24  # levels per RGB channel of the colour histograms compared
    threshold: float = 0.06  # nearest distance below which a test image is a near-duplicate
    batch_size: int = 256  # images compared at a time (bounds memory)

    def __post_init__(self) -> None:
        _check(2 <= self.bins <= 64, "audit.bins", "an integer in [2, 64]")
        _check(0 < self.threshold < 1, "audit.threshold", "a distance in (0, 1)")
        _check(1 <= self.batch_size <= 65536, "audit.batch_size", "an integer in [1, 65536]")


@_section("cv")
class CvParams(Section):
    splits: int = 10  # repeated splits of the cells, drawn with seeds 1 to splits

    def __post_init__(self) -> None:
        _check(2 <= self.splits <= 1000, "cv.splits", "an integer in [2, 1000]")

    @property
    def seeds(self) -> tuple[int, ...]:
        """The split seeds: 1 to `splits`."""
        return tuple(range(1, self.splits + 1))


SECTIONS: dict[str, type] = {
    cls._name: cls
    for cls in (
        BaseParams,
        DataParams,
        SynthesizeParams,
        AugmentParams,
        PrepareParams,
        ModelParams,
        TrainParams,
        EvaluateParams,
        ExplainParams,
        AuditParams,
        CvParams,
    )
}


@dataclasses.dataclass(frozen=True)
class Params:
    """The whole validated params.yaml."""

    base: BaseParams
    data: DataParams
    synthesize: SynthesizeParams
    augment: AugmentParams
    prepare: PrepareParams
    model: ModelParams
    train: TrainParams
    evaluate: EvaluateParams
    explain: ExplainParams
    audit: AuditParams
    cv: CvParams


def _convert(value: Any, hint: Any, key: str) -> Any:
    """Check `value` against the type `hint`, converting YAML ints to floats where asked."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        (inner,) = [o for o in options if o is not type(None)]
        return _convert(value, inner, key)
    if hint is bool:
        _check(isinstance(value, bool), key, "true or false")
        return value
    if hint is int:
        _check(isinstance(value, int) and not isinstance(value, bool), key, "an integer")
        return value
    if hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        _check(ok, key, "a number")
        return float(value)
    if hint is str:
        _check(isinstance(value, str), key, "a string")
        return value
    if origin is tuple:
        _check(isinstance(value, list), key, "a list")
        (item,) = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return tuple(_convert(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key)
    raise TypeError(f"unsupported params type {hint!r} for {key}")


def _build(cls: type, raw: Any, prefix: str) -> Any:
    _check(isinstance(raw, Mapping), prefix, "a mapping of keys to values")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ParamsError(
            f"params: unknown key '{prefix}.{unknown[0]}'; '{prefix}' accepts {sorted(fields)}"
        )
    values = {}
    for name, field in fields.items():
        key = f"{prefix}.{name}"
        if name in raw:
            values[name] = _convert(raw[name], hints[name], key)
        elif field.default is dataclasses.MISSING:
            raise ParamsError(f"params: missing key '{key}'")
    if issubclass(cls, Block):
        _check_block(values, prefix)
    return cls(**values)


def _check_block(v: dict[str, Any], key: str) -> None:
    _check(v["filters"] >= 1, f"{key}.filters", "an integer >= 1")
    _check(v["kernel"] >= 1, f"{key}.kernel", "an integer >= 1")
    _check(v.get("stride", 1) >= 1, f"{key}.stride", "an integer >= 1")
    padding = v.get("conv_padding", "valid")
    _check(padding in ("valid", "same"), f"{key}.conv_padding", "'valid' or 'same'")
    _check(v.get("zero_pad") is None or v["zero_pad"] >= 0, f"{key}.zero_pad", "null or >= 0")
    _check(v.get("pool") is None or v["pool"] >= 1, f"{key}.pool", "null or an integer >= 1")
    stride = v.get("pool_stride")
    _check(stride is None or stride >= 1, f"{key}.pool_stride", "null or an integer >= 1")


def from_dict(raw: Mapping[str, Any]) -> Params:
    """Validate a parsed params mapping; every section must be present."""
    _check(isinstance(raw, Mapping), "params.yaml", "a mapping of sections")
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ParamsError(
            f"params: unknown section '{unknown[0]}'; params.yaml accepts {sorted(SECTIONS)}"
        )
    missing = sorted(set(SECTIONS) - set(raw))
    if missing:
        raise ParamsError(f"params: missing section '{missing[0]}'")
    global _LOADING
    _LOADING = True
    try:
        sections = {name: _build(cls, raw[name], name) for name, cls in SECTIONS.items()}
    finally:
        _LOADING = False
    return Params(**sections)


def read_yaml(path: Path) -> dict[str, Any]:
    """Parse a params file, naming it in any error."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ParamsError(f"params: cannot read {path}: {err}") from err
    return raw if raw is not None else {}


def load(path: Path | str = "params.yaml", overrides: Iterable[str] = ()) -> Params:
    """Load and validate params, applying `KEY=VALUE` overrides in DVC's dotted form."""
    raw = read_yaml(Path(path))
    for item in overrides:
        set_dotted(raw, item)
    return from_dict(raw)


def set_dotted(raw: dict[str, Any], item: str) -> None:
    """Apply one `a.b.c=value` override (value parsed as YAML), as `dvc exp run -S` does."""
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise ParamsError(f"params: override '{item}' must look like KEY=VALUE")
    node = raw
    *parents, leaf = key.split(".")
    for part in parents:
        child = node.get(part) if isinstance(node, dict) else None
        if not isinstance(child, dict):
            raise ParamsError(f"params: override '{key}': '{part}' is not a section")
        node = child
    node[leaf] = yaml.safe_load(text)


TRACE_ENV = "BLASTCELL_TRACE"


def trace(stage: str) -> None:
    """If $BLASTCELL_TRACE names a file, append the params keys and blastcell modules used.

    The end-to-end test sets it to check dvc.yaml's declared params and deps against reality;
    the memory benchmark reads the peak resident set size of the stage's process and of its
    largest child process (worker pools), in MiB.
    """
    path = os.environ.get(TRACE_ENV)
    if not path:
        return
    modules = sorted(
        "src/" + name.replace(".", "/") + ("/__init__.py" if name == "blastcell" else ".py")
        for name in sys.modules
        if name == "blastcell" or name.startswith("blastcell.")
    )
    line = {
        "stage": stage,
        "params": sorted(reads()),
        "modules": modules,
        "peak_rss_mb": _peak_rss_mb(resource.RUSAGE_SELF),
        "children_peak_rss_mb": _peak_rss_mb(resource.RUSAGE_CHILDREN),
    }
    with Path(path).open("a") as f:
        f.write(json.dumps(line) + "\n")


def _peak_rss_mb(who: int) -> float:
    """Peak resident set size in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(who).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)
