"""Store each split as TFRecord shards of raw pixels and stream them back with tf.data.

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
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from blastcell.data import DataError, read_json, write_json
from blastcell.tf import tf

SUFFIX = ".tfrecord"
SPEC = "spec.json"
_FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64),
}


@dataclass(frozen=True)
class Spec:
    """What the prepared folder holds: image size, class names (label order), images per split."""

    image_size: int
    classes: list[str]
    images: dict[str, int]


def write_spec(folder: Path, image_size: int, classes: Sequence[str], images: dict) -> None:
    write_json(folder / SPEC, asdict(Spec(image_size, list(classes), dict(images))))


def read_spec(folder: Path) -> Spec:
    path = folder / SPEC
    if not path.is_file():
        raise DataError(f"{path} is missing: {folder} is not a prepared folder; run prepare")
    return Spec(**read_json(path))


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


def write(
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


def dataset(
    folder: Path,
    split: str,
    batch_size: int,
    shuffle_buffer: int | None = None,
    seed: int = 0,
    shard_by_data: bool = False,
) -> tf.data.Dataset:
    """Batches of (uint8 images, one-hot float32 labels) streamed from a split's shards.

    Image size, classes and the number of images come from the folder's spec.json.
    With `shuffle_buffer`, the order changes every epoch (seeded); without, it is the stored
    order. `shard_by_data` makes a multi-worker strategy split the batches between workers
    rather than the files (there may be fewer files than workers).
    """
    spec = read_spec(folder)
    paths = [str(p) for p in find(folder, split)]
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
        .apply(tf.data.experimental.assert_cardinality(n_batches))  # Keras knows the epoch length
    )
    if shard_by_data:
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA
        )
        ds = ds.with_options(options)
    return ds.prefetch(tf.data.AUTOTUNE)


def iterate(folder: Path, split: str, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(images, labels) NumPy batches of a split in stored order, labels as class indices."""
    for x, y in dataset(folder, split, batch_size):
        yield x.numpy(), np.argmax(y.numpy(), axis=1)
