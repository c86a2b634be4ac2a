"""TFRecord shards: a lossless, byte-reproducible round trip, and a seeded per-epoch shuffle."""

import numpy as np
import pytest

pytest.importorskip("tensorflow")
from blastcell import shards
from blastcell.data import DataError

SIZE = 4


def _images(n: int) -> list[tuple[np.ndarray, int]]:
    """n distinct images: image i is filled with i, label i % 3."""
    return [(np.full((SIZE, SIZE, 3), i, np.uint8), i % 3) for i in range(n)]


def _ids(batch: np.ndarray) -> list[int]:
    return batch[:, 0, 0, 0].tolist()


def test_round_trip_in_order_across_shards(tmp_path):
    paths = shards.write(tmp_path, "train", iter(_images(10)), 10, shard_size=4)
    shards.write_spec(tmp_path, SIZE, ["a", "b", "c"], {"train": 10})
    assert [p.name for p in paths] == [f"train-0000{i}-of-00003.tfrecord" for i in range(3)]
    assert shards.find(tmp_path, "train") == paths
    batches = list(shards.iterate(tmp_path, "train", batch_size=3))
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    assert [len(b[0]) for b in batches] == [3, 3, 3, 1]
    np.testing.assert_array_equal(x, np.stack([im for im, _ in _images(10)]))
    assert y.tolist() == [i % 3 for i in range(10)]


def test_writing_twice_gives_the_same_bytes(tmp_path):
    first = [p.read_bytes() for p in shards.write(tmp_path, "a", iter(_images(5)), 5, 2)]
    again = [p.read_bytes() for p in shards.write(tmp_path, "a", iter(_images(5)), 5, 2)]
    assert first == again


def test_a_short_or_long_stream_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="expected 5 images, got 4"):
        shards.write(tmp_path, "a", iter(_images(4)), 5, 2)
    with pytest.raises(ValueError, match="expected 3 images"):
        shards.write(tmp_path, "b", iter(_images(4)), 3, 2)


def test_missing_shards_are_named(tmp_path):
    paths = shards.write(tmp_path, "val", iter(_images(6)), 6, 2)
    paths[1].unlink()
    with pytest.raises(DataError, match="'val' split's shards are missing or incomplete"):
        shards.find(tmp_path, "val")
    with pytest.raises(DataError, match="'test' split"):
        shards.find(tmp_path, "test")
    with pytest.raises(DataError, match=r"spec\.json is missing"):
        shards.read_spec(tmp_path)


def test_shuffle_changes_every_epoch_reproducibly_and_loses_nothing(tmp_path):
    shards.write(tmp_path, "train", iter(_images(40)), 40, shard_size=8)
    shards.write_spec(tmp_path, SIZE, ["a", "b", "c"], {"train": 40})

    def epochs(n: int) -> list[list[int]]:
        ds = shards.dataset(tmp_path, "train", 40, shuffle_buffer=10, seed=7)
        return [_ids(next(iter(ds))[0].numpy()) for _ in range(n)]

    first, second = epochs(2)
    assert sorted(first) == sorted(second) == list(range(40))
    assert first != second  # a new epoch, a new order
    assert epochs(2) == [first, second]  # and the same orders on every run
    assert first != list(range(40))
    assert ds_length(tmp_path) == 1


def ds_length(folder) -> int:
    """Batches per epoch as Keras sees it before iterating (known, not 'unknown')."""
    return int(shards.dataset(folder, "train", 40, shuffle_buffer=10).cardinality())


def test_spec_round_trip(tmp_path):
    shards.write_spec(tmp_path, 32, ["a", "b"], {"train": 3, "val": 1, "test": 1})
    spec = shards.read_spec(tmp_path)
    assert spec == shards.Spec(32, ["a", "b"], {"train": 3, "val": 1, "test": 1})
