"""Tests for the synthetic ALL-IDB2-style data generator."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest

from blastcell.synthetic import dataset, draw_cell, file_name, image_at

SIZE = 64


@pytest.fixture(scope="module")
def class_sample():
    """40 images per class at 64 px, grouped by label."""
    by_label: dict[int, list[np.ndarray]] = {0: [], 1: []}
    for _, label, image in dataset(40, 40, SIZE, seed=123):
        by_label[label].append(image)
    return by_label


# ----------------------------------------------------------------------------- shape / dtype


@pytest.mark.parametrize("label", [0, 1])
@pytest.mark.parametrize("size", [16, SIZE, 257])
def test_draw_cell_shape_dtype_range(label, size):
    image = draw_cell(label, size, np.random.default_rng(0))
    assert image.shape == (size, size, 3)
    assert image.dtype == np.uint8
    # Not degenerate: uses a real range of intensities, neither black nor saturated.
    assert image.min() < 150
    assert image.max() > 200
    assert 120 < image.mean() < 250


def test_dataset_items_shape_dtype():
    for name, label, image in dataset(2, 2, SIZE, seed=1):
        assert isinstance(name, str)
        assert label in (0, 1)
        assert image.shape == (SIZE, SIZE, 3)
        assert image.dtype == np.uint8


# ----------------------------------------------------------------------------- naming / order


def test_naming_and_order_small():
    items = list(dataset(3, 2, 16, seed=0))
    assert [name for name, _, _ in items] == [
        "Im001_1.tif",
        "Im002_1.tif",
        "Im003_1.tif",
        "Im004_0.tif",
        "Im005_0.tif",
    ]
    assert [label for _, label, _ in items] == [1, 1, 1, 0, 0]


def test_labels_match_suffix():
    for name, label, _ in dataset(2, 3, 16, seed=5):
        match = re.fullmatch(r"Im(\d{3,})_([01])\.tif", name)
        assert match is not None
        assert int(match.group(2)) == label


def test_only_one_class():
    assert [n for n, _, _ in dataset(0, 2, 16, seed=0)] == ["Im001_0.tif", "Im002_0.tif"]
    assert [n for n, _, _ in dataset(2, 0, 16, seed=0)] == ["Im001_1.tif", "Im002_1.tif"]


def test_name_width_grows_beyond_999():
    assert file_name(0, 1, 999) == "Im001_1.tif"
    assert file_name(998, 0, 999) == "Im999_0.tif"
    assert file_name(0, 1, 1000) == "Im0001_1.tif"
    assert file_name(12344, 0, 12345) == "Im12345_0.tif"
    # The generator is lazy, so the first names of a large set are cheap to check.
    first = [name for name, _, _ in itertools.islice(dataset(1000, 1, 16, seed=0), 2)]
    assert first == ["Im0001_1.tif", "Im0002_1.tif"]
    assert image_at(999, 1000, 1, 16, seed=0)[:2] == ("Im1000_1.tif", 1)
    assert image_at(1000, 1000, 1, 16, seed=0)[:2] == ("Im1001_0.tif", 0)


# ----------------------------------------------------------------------------- determinism


def test_reruns_are_byte_identical():
    first = list(dataset(3, 3, SIZE, seed=42))
    second = list(dataset(3, 3, SIZE, seed=42))
    for (n1, l1, a), (n2, l2, b) in zip(first, second, strict=True):
        assert (n1, l1) == (n2, l2)
        assert a.tobytes() == b.tobytes()


def test_image_regenerated_alone_matches_dataset():
    items = list(dataset(3, 3, SIZE, seed=42))
    for i in (0, 2, 3, 5):
        name, label, image = items[i]
        assert image_at(i, 3, 3, SIZE, seed=42)[0] == name
        assert np.array_equal(image_at(i, 3, 3, SIZE, seed=42)[2], image)
        alone = draw_cell(label, SIZE, np.random.default_rng([42, i]))
        assert np.array_equal(alone, image)


def test_different_seeds_differ():
    a = [im for _, _, im in dataset(2, 2, SIZE, seed=1)]
    b = [im for _, _, im in dataset(2, 2, SIZE, seed=2)]
    for x, y in zip(a, b, strict=True):
        assert not np.array_equal(x, y)


def test_images_within_a_set_differ():
    images = [im for _, _, im in dataset(3, 3, SIZE, seed=3)]
    for x, y in itertools.combinations(images, 2):
        assert not np.array_equal(x, y)


# ----------------------------------------------------------------------------- class signal


def _central_disc(size: int) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    c = (size - 1) / 2.0
    return np.hypot(yy - c, xx - c) < 0.2 * size


def _border_band(size: int) -> np.ndarray:
    band = max(1, round(0.1 * size))
    mask = np.ones((size, size), dtype=bool)
    mask[band:-band, band:-band] = False
    return mask


def _purple_fraction(image: np.ndarray, mask: np.ndarray) -> float:
    f = image.astype(np.float64) / 255.0
    purple = (f[..., 2] - f[..., 1] > 0.15) & (f.mean(axis=-1) < 0.6)
    return float(purple[mask].mean())


def test_blasts_have_more_purple_in_centre(class_sample):
    mask = _central_disc(SIZE)
    stats = {
        k: np.array([_purple_fraction(im, mask) for im in v]) for k, v in class_sample.items()
    }
    darkness = {
        k: np.array([1.0 - im[mask].mean() / 255.0 for im in v]) for k, v in class_sample.items()
    }
    for values in (stats, darkness):
        diff = values[1].mean() - values[0].mean()
        pooled_sd = np.sqrt((values[1].var(ddof=1) + values[0].var(ddof=1)) / 2.0)
        assert diff > 0
        assert diff > pooled_sd  # clearly separated class means
    # ...but not a perfect one-feature split: the class ranges overlap or nearly touch.
    assert stats[1].min() < stats[0].max() + 0.1
    # Every image has a leukocyte in the middle.
    assert min(stats[0].min(), stats[1].min()) > 0.02


def test_border_band_colour_does_not_depend_on_class(class_sample):
    mask = _border_band(SIZE)
    colour = {k: np.array([im[mask].mean(axis=0) for im in v]) for k, v in class_sample.items()}
    diff = np.abs(colour[1].mean(axis=0) - colour[0].mean(axis=0))
    spread = np.sqrt((colour[1].var(axis=0, ddof=1) + colour[0].var(axis=0, ddof=1)) / 2.0)
    assert np.all(spread > 0)
    assert np.all(diff < 0.5 * spread), (diff, spread)


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize("label", [2, -1, 0.5, "1", True])
def test_draw_cell_bad_label(label):
    with pytest.raises(ValueError, match="label"):
        draw_cell(label, SIZE, np.random.default_rng(0))


@pytest.mark.parametrize("size", [15, 0, -3, 32.0])
def test_draw_cell_bad_size(size):
    with pytest.raises(ValueError, match="size"):
        draw_cell(1, size, np.random.default_rng(0))


def test_draw_cell_bad_rng():
    with pytest.raises(ValueError, match="rng"):
        draw_cell(1, SIZE, 0)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_blast": -1, "n_not_blast": 2, "size": SIZE, "seed": 0}, "n_blast"),
        ({"n_blast": 2, "n_not_blast": -1, "size": SIZE, "seed": 0}, "n_not_blast"),
        ({"n_blast": 0, "n_not_blast": 0, "size": SIZE, "seed": 0}, "n_blast"),
        ({"n_blast": 2, "n_not_blast": 2, "size": 8, "seed": 0}, "size"),
        ({"n_blast": 2, "n_not_blast": 2, "size": SIZE, "seed": -1}, "seed"),
    ],
)
def test_dataset_bad_arguments_raise_eagerly(kwargs, name):
    # Raised when dataset() is called, before any item is requested.
    with pytest.raises(ValueError, match=name):
        dataset(**kwargs)


def test_both_counts_zero_names_both():
    with pytest.raises(ValueError, match="n_not_blast"):
        dataset(0, 0, SIZE, seed=0)


def test_image_at_bad_index():
    with pytest.raises(ValueError, match="index"):
        image_at(5, 3, 2, SIZE, seed=0)
