"""The prepared folder, written by the prepare stage and read by train, evaluate, explain and
audit: its one owner.

The folder holds, for each split (train, val, test), TFRecord shards of raw pixels, a table
`{split}.csv` naming each record's file, source cell, group and class in record order, and
`spec.json` (image size, class names in label order, images per split, and what the images came
from: `augmented.Source`). A reader opens the folder once (`read`: a `Folder`, the path and its
`Spec`) and takes its tables and splits from that.

A record is a `tf.train.Example` with `image`, the S x S x 3 uint8 pixels as raw bytes
(row-major), and `label`, the class index. A split of N images is written as
`{split}-00000-of-0000K.tfrecord` ... with at most `shard_size` images each, in the split's
order. Reading back needs no image decoding (the bytes are reshaped), so the input pipeline
costs little next to the network, and streaming keeps memory at the shuffle buffer plus a few
batches, whatever the size of the set.

Training reads the shards in a new order every epoch, interleaves them and shuffles through a
buffer of `shuffle_buffer` images (a full shuffle when the buffer holds the whole split); all
of it seeded, so an epoch's batches are the same on every run.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from blastcell.augmented import Source
from blastcell.files import DataError, read_csv, read_json, write_csv, write_json
from blastcell.tf import tf

SPLITS = ("train", "val", "test")
SUFFIX = ".tfrecord"
SPEC = "spec.json"
_TABLE_COLUMNS = ["file", "source", "group", "class"]
_FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64),
}


@dataclass(frozen=True)
class Spec:
    """What the prepared folder holds: image size, class names (label order), images per split,
    and what the images came from (the augmented folder's `source.json`)."""

    image_size: int
    classes: list[str]
    images: dict[str, int]
    source: Source | None = None  # None: written without one (`"source": {}` in spec.json)

    def to_json(self) -> dict[str, object]:
        """spec.json's object: the fields in order, the source as a nested object."""
        return {
            "image_size": self.image_size,
            "classes": list(self.classes),
            "images": dict(self.images),
            "source": self.source.to_json() if self.source is not None else {},
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, object]) -> Spec:
        """The spec that `to_json` wrote (one without `source` too); TypeError if a field is
        missing or unknown."""
        fields = dict(raw)
        source = fields.pop("source", None)
        return cls(**fields, source=Source.from_json(source) if source else None)


@dataclass(frozen=True)
class Entry:
    """One record of a split, as its table names it: file, source cell, group, class index."""

    file: str
    source: str
    group: str
    label: int


class Row(Protocol):
    """What `write` needs of each image: e.g. an `augmented.Record`."""

    file: str
    source: str
    group: str
    label: int


def write(
    folder: Path,
    splits: Mapping[str, Sequence[Row]],
    classes: Sequence[str],
    image_size: int,
    shard_size: int,
    pixels: Callable[[Row], np.ndarray],
    source: Source | None = None,
) -> None:
    """Write each split's shards and table, and the spec, into `folder`.

    `pixels(row)` gives the row's image at `image_size`, read when it is written, so memory
    holds one image at a time. A split with the same rows as an earlier one (the random split's
    val and test) is copied, not encoded again.
    """
    written: dict[tuple[Row, ...], list[Path]] = {}
    for name, rows in splits.items():
        paths = shard_paths(folder, name, len(rows), shard_size)
        if tuple(rows) in written:
            for src, dst in zip(written[tuple(rows)], paths, strict=True):
                shutil.copyfile(src, dst)
        else:
            examples = ((pixels(r), r.label) for r in rows)
            written[tuple(rows)] = write_shards(folder, name, examples, len(rows), shard_size)
        table = [[r.file, r.source, r.group, classes[r.label]] for r in rows]
        write_csv(folder / f"{name}.csv", _TABLE_COLUMNS, table)
    images = {name: len(rows) for name, rows in splits.items()}
    write_spec(folder, image_size, classes, images, source)


def write_spec(
    folder: Path,
    image_size: int,
    classes: Sequence[str],
    images: dict,
    source: Source | None = None,
) -> None:
    """Write spec.json."""
    write_json(folder / SPEC, Spec(image_size, list(classes), dict(images), source).to_json())


def read_spec(folder: Path) -> Spec:
    """Read spec.json, naming the folder if it is not a prepared one."""
    path = folder / SPEC
    if not path.is_file():
        raise DataError(f"{path} is missing: {folder} is not a prepared folder; run prepare")
    return Spec.from_json(read_json(path))


def shard_paths(folder: Path, split: str, n_images: int, shard_size: int) -> list[Path]:
    """The shard files that hold a split of `n_images` (at least one, even when empty)."""
    n = max(1, -(-n_images // shard_size))
    return [folder / f"{split}-{i:05d}-of-{n:05d}{SUFFIX}" for i in range(n)]


def serialize(image: np.ndarray, label: int) -> bytes:
    """One record; byte-identical for equal inputs (deterministic protobuf serialization)."""
    example = tf.train.Example(
        features=tf.train.Features(
            feature={
                "image": tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[np.ascontiguousarray(image).tobytes()])
                ),
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
            }
        )
    )
    return example.SerializeToString(deterministic=True)


def write_shards(
    folder: Path,
    split: str,
    examples: Iterable[tuple[np.ndarray, int]],
    n_images: int,
    shard_size: int,
) -> list[Path]:
    """Write `n_images` (image, label) pairs to a split's shards, holding one image at a time."""
    paths = shard_paths(folder, split, n_images, shard_size)
    count = 0
    with ExitStack() as stack:
        writers = [stack.enter_context(tf.io.TFRecordWriter(str(p))) for p in paths]
        for count, (image, label) in enumerate(examples, start=1):
            if count > n_images:
                raise ValueError(f"split '{split}': expected {n_images} images, got more")
            writers[(count - 1) // shard_size].write(serialize(image, label))
    if count != n_images:
        raise ValueError(f"split '{split}': expected {n_images} images, got {count}")
    return paths


def find(folder: Path, split: str) -> list[Path]:
    """The split's shard files, checked to be the complete set that `write` made."""
    paths = sorted(folder.glob(f"{split}-*-of-*{SUFFIX}"))
    pattern = re.compile(rf"{re.escape(split)}-(\d{{5}})-of-(\d{{5}}){re.escape(SUFFIX)}")
    found = [pattern.fullmatch(p.name) for p in paths]
    totals = {int(m.group(2)) for m in found if m}
    if not paths or len(totals) != 1 or len(paths) != totals.pop():
        raise DataError(
            f"{folder}: the '{split}' split's shards are missing or incomplete "
            f"(found {[p.name for p in paths]}); rerun the prepare stage"
        )
    return paths


def _parse(image_size: int, n_classes: int):
    def parse(serialized: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        features = tf.io.parse_example(serialized, _FEATURES)
        images = tf.reshape(
            tf.io.decode_raw(features["image"], tf.uint8), (-1, image_size, image_size, 3)
        )
        return images, tf.one_hot(features["label"], n_classes, dtype=tf.float32)

    return parse


@dataclass(frozen=True)
class Folder:
    """A prepared folder and its spec, read once (`read`): what the stages that read the folder
    pass on, so that spec.json is read once per run."""

    path: Path
    spec: Spec

    def table(self, split: str) -> list[Entry]:
        """The split's records in stored order, checked against the spec."""
        folder, spec = self.path, self.spec
        path = folder / f"{split}.csv"
        if not path.is_file():
            raise DataError(f"{path} is missing: {folder} is not a prepared folder; run prepare")
        label = {name: i for i, name in enumerate(spec.classes)}
        rows = read_csv(path)
        if len(rows) != spec.images.get(split):
            raise DataError(
                f"{path} lists {len(rows)} images, {folder / SPEC} says "
                f"{spec.images.get(split)}; rerun the prepare stage"
            )
        bad = next((r for r in rows if r.get("class") not in label), None)
        if bad is not None:
            raise DataError(f"{path}: class {bad.get('class')!r} is not in {folder / SPEC}")
        return [Entry(r["file"], r["source"], r["group"], label[r["class"]]) for r in rows]

    def dataset(
        self,
        split: str,
        batch_size: int,
        shuffle_buffer: int | None = None,
        seed: int = 0,
        shard_by_data: bool = False,
    ) -> tf.data.Dataset:
        """Batches of (uint8 images, one-hot float32 labels) streamed from a split's shards.

        Image size, classes and the number of images come from the spec.
        With `shuffle_buffer`, the order changes every epoch (seeded); without, it is the
        stored order. `shard_by_data` makes a multi-worker strategy split the batches between
        workers rather than the files (there may be fewer files than workers).
        """
        spec = self.spec
        paths = [str(p) for p in find(self.path, split)]
        if shuffle_buffer:
            files = tf.data.Dataset.from_tensor_slices(paths).shuffle(
                len(paths), seed=seed, reshuffle_each_iteration=True
            )
            records = files.interleave(
                tf.data.TFRecordDataset,
                cycle_length=min(len(paths), 4),
                num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True,
            ).shuffle(shuffle_buffer, seed=seed + 1, reshuffle_each_iteration=True)
        else:
            records = tf.data.TFRecordDataset(paths)
        n_batches = -(-spec.images[split] // batch_size)
        parse = _parse(spec.image_size, len(spec.classes))
        ds = (
            records.batch(batch_size)
            .map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .apply(tf.data.experimental.assert_cardinality(n_batches))  # Keras knows the length
        )
        if shard_by_data:
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = (
                tf.data.experimental.AutoShardPolicy.DATA
            )
            ds = ds.with_options(options)
        return ds.prefetch(tf.data.AUTOTUNE)

    def iterate(self, split: str, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(images, labels) NumPy batches of a split in stored order, labels as class indices."""
        for x, y in self.dataset(split, batch_size):
            yield x.numpy(), np.argmax(y.numpy(), axis=1)


def read(folder: Path) -> Folder:
    """The prepared folder `folder` with its spec, read once (DataError if it is not one)."""
    return Folder(Path(folder), read_spec(folder))
