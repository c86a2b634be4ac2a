"""TFRecord shards: a lossless, byte-reproducible round trip, and a seeded per-epoch shuffle."""

import numpy as np
import pytest

pytest.importorskip("tensorflow")
from blastcell import prepared
from blastcell.files import DataError

SIZE = 4


def _images(n: int) -> list[tuple[np.ndarray, int]]:
    """n distinct images: image i is filled with i, label i % 3."""
    return [(np.full((SIZE, SIZE, 3), i, np.uint8), i % 3) for i in range(n)]


def _ids(batch: np.ndarray) -> list[int]:
    return batch[:, 0, 0, 0].tolist()


def test_round_trip_in_order_across_shards(tmp_path):
    paths = prepared.write_shards(tmp_path, "train", iter(_images(10)), 10, shard_size=4)
    prepared.write_spec(tmp_path, SIZE, ["a", "b", "c"], {"train": 10})
    assert [p.name for p in paths] == [f"train-0000{i}-of-00003.tfrecord" for i in range(3)]
    assert prepared.find(tmp_path, "train") == paths
    batches = list(prepared.read(tmp_path).iterate("train", batch_size=3))
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    assert [len(b[0]) for b in batches] == [3, 3, 3, 1]
    np.testing.assert_array_equal(x, np.stack([im for im, _ in _images(10)]))
    assert y.tolist() == [i % 3 for i in range(10)]


def test_writing_twice_gives_the_same_bytes(tmp_path):
    first = [p.read_bytes() for p in prepared.write_shards(tmp_path, "a", iter(_images(5)), 5, 2)]
    again = [p.read_bytes() for p in prepared.write_shards(tmp_path, "a", iter(_images(5)), 5, 2)]
    assert first == again


def test_a_short_or_long_stream_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="expected 5 images, got 4"):
        prepared.write_shards(tmp_path, "a", iter(_images(4)), 5, 2)
    with pytest.raises(ValueError, match="expected 3 images"):
        prepared.write_shards(tmp_path, "b", iter(_images(4)), 3, 2)


def test_missing_shards_are_named(tmp_path):
    paths = prepared.write_shards(tmp_path, "val", iter(_images(6)), 6, 2)
    paths[1].unlink()
    with pytest.raises(DataError, match="'val' split's shards are missing or incomplete"):
        prepared.find(tmp_path, "val")
    with pytest.raises(DataError, match="'test' split"):
        prepared.find(tmp_path, "test")
    with pytest.raises(DataError, match=r"spec\.json is missing"):
        prepared.read_spec(tmp_path)


def test_shuffle_changes_every_epoch_reproducibly_and_loses_nothing(tmp_path):
    prepared.write_shards(tmp_path, "train", iter(_images(40)), 40, shard_size=8)
    prepared.write_spec(tmp_path, SIZE, ["a", "b", "c"], {"train": 40})

    def epochs(n: int) -> list[list[int]]:
        ds = prepared.read(tmp_path).dataset("train", 40, shuffle_buffer=10, seed=7)
        return [_ids(next(iter(ds))[0].numpy()) for _ in range(n)]

    first, second = epochs(2)
    assert sorted(first) == sorted(second) == list(range(40))
    assert first != second  # a new epoch, a new order
    assert epochs(2) == [first, second]  # and the same orders on every run
    assert first != list(range(40))
    assert ds_length(tmp_path) == 1


def ds_length(folder) -> int:
    """Batches per epoch as Keras sees it before iterating (known, not 'unknown')."""
    return int(prepared.read(folder).dataset("train", 40, shuffle_buffer=10).cardinality())


def test_spec_round_trip(tmp_path):
    prepared.write_spec(tmp_path, 32, ["a", "b"], {"train": 3, "val": 1, "test": 1})
    spec = prepared.read_spec(tmp_path)
    assert spec == prepared.Spec(32, ["a", "b"], {"train": 3, "val": 1, "test": 1})


def test_write_and_read_tables(tmp_path):
    rows = [prepared.Entry(f"f{i}.png", f"s{i // 2}", f"g{i // 4}", i % 2) for i in range(6)]
    splits = {"train": rows[:4], "val": rows[4:], "test": rows[4:]}
    written = []

    def pixels(row: prepared.Entry) -> np.ndarray:
        written.append(row.file)
        return np.full((SIZE, SIZE, 3), int(row.file[1]), np.uint8)

    prepared.write(tmp_path, splits, ["a", "b"], SIZE, 3, pixels)
    assert written == [r.file for r in rows]  # val's copy, test, is not encoded again
    assert prepared.read(tmp_path).table("test") == rows[4:]
    assert prepared.read_spec(tmp_path).images == {"train": 4, "val": 2, "test": 2}
    x, y = next(prepared.read(tmp_path).iterate("test", 10))
    assert x[:, 0, 0, 0].tolist() == [4, 5]
    assert y.tolist() == [0, 1]

    (tmp_path / "test.csv").write_text("file,source,group,class\nf4.png,s2,g1,a\n")
    with pytest.raises(DataError, match=r"test.csv lists 1 images, .*spec.json says 2"):
        prepared.read(tmp_path).table("test")
    (tmp_path / "val.csv").write_text("file,source,group,class\nf4.png,s2,g1,a\nf5.png,s2,g1,c\n")
    with pytest.raises(DataError, match=r"val.csv: class 'c' is not in"):
        prepared.read(tmp_path).table("val")
