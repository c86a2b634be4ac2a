"""Tests for blastcell.augment: equivalence with Keras's legacy ImageDataGenerator geometry."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest

from blastcell.augment import (
    FILL_MODES,
    Source,
    Transform,
    apply_transform,
    augment_image,
    copies,
    random_transform,
    write_sets,
)
from blastcell.data import DataError, write_image
from blastcell.params import AugmentParams

# Keras's legacy module calls the deprecated scipy.ndimage.interpolation namespace.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Please import `affine_transform`:DeprecationWarning"
)

SEED_RANGES = {
    "rotation_range": 45.0,
    "width_shift_range": 0.2,
    "height_shift_range": 0.2,
    "shear_range": 0.2,
    "zoom_range": 0.2,
    "horizontal_flip": True,
    "vertical_flip": True,
}
ZERO_RANGES = {
    "rotation_range": 0.0,
    "width_shift_range": 0.0,
    "height_shift_range": 0.0,
    "shear_range": 0.0,
    "zoom_range": 0.0,
    "horizontal_flip": False,
    "vertical_flip": False,
}

FIXED_TRANSFORMS = {
    "rotation": Transform(theta=30.0),
    "rotation_180": Transform(theta=180.0),  # source coords land exactly on the border
    "shift_rows": Transform(tx=7.3),
    "shift_cols": Transform(ty=-9.6),
    "shift_integer": Transform(tx=5.0, ty=-3.0),
    "shear": Transform(shear=11.0),
    "zoom": Transform(zx=0.83, zy=1.17),
    "flip_horizontal": Transform(flip_horizontal=True),
    "flip_vertical": Transform(flip_vertical=True),
    "combined": Transform(
        theta=-37.2,
        tx=-6.1,
        ty=8.4,
        shear=-0.17,
        zx=1.12,
        zy=0.86,
        flip_horizontal=True,
        flip_vertical=True,
    ),
    "combined_extreme": Transform(
        theta=45.0, tx=11.0, ty=-11.0, shear=0.2, zx=0.8, zy=1.2, flip_horizontal=True
    ),
}


@pytest.fixture(scope="module")
def keras_image():
    """Keras's legacy preprocessing module (slow import, done once)."""
    return pytest.importorskip("keras.src.legacy.preprocessing.image")


def _keras_reference(
    kimg, image: np.ndarray, t: Transform, fill_mode: str = "constant", cval: float = 125.0
) -> np.ndarray:
    """Run Keras's apply_affine_transform + flip_axis on a float32 copy and round to uint8."""
    x = image.astype(np.float32)
    if x.ndim == 2:
        x = x[..., np.newaxis]
    x = kimg.apply_affine_transform(
        x,
        theta=t.theta,
        tx=t.tx,
        ty=t.ty,
        shear=t.shear,
        zx=t.zx,
        zy=t.zy,
        row_axis=0,
        col_axis=1,
        channel_axis=2,
        fill_mode=fill_mode,
        cval=cval,
        order=1,
    )
    if t.flip_horizontal:
        x = kimg.flip_axis(x, 1)
    if t.flip_vertical:
        x = kimg.flip_axis(x, 0)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8).reshape(image.shape)


def _assert_close_to_keras(ours: np.ndarray, ref: np.ndarray) -> None:
    """Allow only rare off-by-one rounding differences (observed: none at all)."""
    diff = np.abs(ours.astype(np.int16) - ref.astype(np.int16))
    assert diff.max() <= 1, f"max abs diff {diff.max()}"
    assert np.count_nonzero(diff) <= 1e-3 * diff.size, f"{np.count_nonzero(diff)} pixels differ"
    assert diff.mean() < 1e-3


@pytest.mark.parametrize("shape", [(40, 56, 3), (64, 64, 3)])
@pytest.mark.parametrize("name", sorted(FIXED_TRANSFORMS))
def test_fixed_transforms_match_keras(keras_image, shape, name):
    image = np.random.default_rng(7).integers(0, 256, shape, dtype=np.uint8)
    t = FIXED_TRANSFORMS[name]
    ours = apply_transform(image, t, fill_mode="constant", cval=125.0)
    assert ours.shape == image.shape
    assert ours.dtype == np.uint8
    _assert_close_to_keras(ours, _keras_reference(keras_image, image, t))


@pytest.mark.parametrize("fill_mode", FILL_MODES)
def test_random_transforms_match_keras_in_every_fill_mode(keras_image, fill_mode):
    rng = np.random.default_rng(123)
    shapes = [(40, 56, 3), (64, 64, 3), (57, 31, 1), (33, 47)]
    for i in range(40):
        image = rng.integers(0, 256, shapes[i % len(shapes)], dtype=np.uint8)
        t = random_transform(rng, image.shape[:2], **SEED_RANGES)
        ours = apply_transform(image, t, fill_mode=fill_mode, cval=125.0)
        ref = _keras_reference(keras_image, image, t, fill_mode=fill_mode)
        _assert_close_to_keras(ours, ref)


def test_random_transform_follows_keras_draw_order(keras_image):
    # Feed Keras's global RandomState and our Generator the same MT19937 stream.
    configs = [SEED_RANGES, {**SEED_RANGES, "rotation_range": 0.0, "shear_range": 0.0}]
    configs.append({**SEED_RANGES, "zoom_range": 0.0, "vertical_flip": False})
    configs.append({**SEED_RANGES, "width_shift_range": 5.0, "height_shift_range": 0.0})
    fields = [f.name for f in dataclasses.fields(Transform)]
    state = np.random.get_state()  # noqa: NPY002 - Keras reseeds the global RandomState
    try:
        for config in configs:
            generator = keras_image.ImageDataGenerator(**config)
            for seed in range(5):
                expected = generator.get_random_transform((40, 56, 3), seed=seed)
                bit_gen = np.random.MT19937()
                legacy = np.random.RandomState(seed).get_state(legacy=False)
                bit_gen.state = {"bit_generator": "MT19937", "state": legacy["state"]}
                t = random_transform(np.random.Generator(bit_gen), (40, 56), **config)
                for field in fields:
                    assert getattr(t, field) == expected[field], (config, seed, field)
    finally:
        np.random.set_state(state)  # noqa: NPY002


def test_shift_tx_moves_columns_like_keras():
    # Keras's row/col swap makes tx (drawn from height_shift_range * H) act along columns.
    image = np.zeros((40, 56), dtype=np.uint8)
    image[20:25, 20:25] = 255
    out = apply_transform(image, Transform(tx=10.0), cval=0.0)
    rows, cols = np.nonzero(out > 128)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (20, 24, 10, 14)


def test_same_seed_is_byte_identical_and_different_seeds_differ():
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    a = augment_image(image, np.random.default_rng(42))
    b = augment_image(image, np.random.default_rng(42))
    c = augment_image(image, np.random.default_rng(43))
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, c)


def test_apply_transform_is_pure():
    image = np.random.default_rng(1).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    before = image.copy()
    t = FIXED_TRANSFORMS["combined"]
    first = apply_transform(image, t)
    assert np.array_equal(image, before)
    assert np.array_equal(first, apply_transform(image, t))


@pytest.mark.parametrize("shape", [(40, 56, 3), (64, 64), (17, 9, 1)])
def test_zero_ranges_give_identity(shape):
    image = np.random.default_rng(2).integers(0, 256, shape, dtype=np.uint8)
    out = augment_image(image, np.random.default_rng(3), **ZERO_RANGES)
    assert np.array_equal(out, image)
    assert out.dtype == np.uint8
    assert not np.shares_memory(out, image)
    t = random_transform(np.random.default_rng(3), shape[:2], **ZERO_RANGES)
    assert t == Transform()


def test_random_transform_stays_within_ranges():
    rng = np.random.default_rng(4)
    h, w = 40, 56
    draws = [random_transform(rng, (h, w), **SEED_RANGES) for _ in range(1000)]
    theta = np.array([t.theta for t in draws])
    tx = np.array([t.tx for t in draws])
    ty = np.array([t.ty for t in draws])
    shear = np.array([t.shear for t in draws])
    zoom = np.array([(t.zx, t.zy) for t in draws])
    assert np.all(np.abs(theta) <= 45.0)
    assert np.all(np.abs(tx) <= 0.2 * h)
    assert np.all(np.abs(ty) <= 0.2 * w)
    assert np.all(np.abs(shear) <= 0.2)
    assert np.all((zoom >= 0.8) & (zoom <= 1.2))
    # The ranges are actually used, and zx / zy are independent draws.
    assert np.abs(theta).max() > 40.0
    assert np.abs(tx).max() > 0.18 * h
    assert np.abs(ty).max() > 0.18 * w
    assert not np.allclose(zoom[:, 0], zoom[:, 1])
    flips_h = sum(t.flip_horizontal for t in draws)
    flips_v = sum(t.flip_vertical for t in draws)
    assert 400 < flips_h < 600
    assert 400 < flips_v < 600

    no_vflip = {**SEED_RANGES, "vertical_flip": False, "width_shift_range": 3.0}
    more = [random_transform(rng, (h, w), **no_vflip) for _ in range(200)]
    assert not any(t.flip_vertical for t in more)
    assert all(abs(t.ty) <= 3.0 for t in more)  # >= 1 means pixels, not a fraction


def test_big_shift_leaves_constant_fill():
    image = np.random.default_rng(5).integers(0, 124, (64, 64, 3), dtype=np.uint8)
    out = apply_transform(image, Transform(tx=40.0), fill_mode="constant", cval=125.0)
    # Output column c samples input column c + 40: columns 24.. fall outside the image.
    assert np.all(out[:, 24:] == 125)
    assert np.array_equal(out[:, :24], image[:, 40:])
    out = apply_transform(image, Transform(ty=-40.0), fill_mode="constant", cval=7.0)
    assert np.all(out[:40] == 7)
    assert np.array_equal(out[40:], image[:24])


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"rotation_range": -1.0}, "rotation_range"),
        ({"width_shift_range": -0.1}, "width_shift_range"),
        ({"height_shift_range": -0.1}, "height_shift_range"),
        ({"shear_range": -0.2}, "shear_range"),
        ({"zoom_range": -0.2}, "zoom_range"),
        ({"zoom_range": 1.0}, "zoom_range"),
        ({"rotation_range": float("nan")}, "rotation_range"),
    ],
)
def test_bad_ranges_raise(kwargs, name):
    with pytest.raises(ValueError, match=name):
        random_transform(np.random.default_rng(0), (8, 8), **{**SEED_RANGES, **kwargs})


def test_bad_inputs_raise():
    good = np.zeros((8, 8, 3), dtype=np.uint8)
    t = Transform(theta=10.0)
    with pytest.raises(ValueError, match="image"):
        apply_transform(good.astype(np.float32), t)
    with pytest.raises(ValueError, match="image"):
        apply_transform(np.zeros((2, 8, 8, 3), dtype=np.uint8), t)
    with pytest.raises(ValueError, match="image"):
        apply_transform(np.zeros(8, dtype=np.uint8), t)
    with pytest.raises(ValueError, match="image"):
        augment_image(good.astype(np.int64), np.random.default_rng(0))
    with pytest.raises(ValueError, match="fill_mode"):
        apply_transform(good, t, fill_mode="mirror")
    with pytest.raises(ValueError, match="cval"):
        apply_transform(good, t, cval=300.0)
    with pytest.raises(ValueError, match="rng"):
        random_transform(np.random.RandomState(0), (8, 8), **SEED_RANGES)
    with pytest.raises(ValueError, match="shape"):
        random_transform(np.random.default_rng(0), (0, 8), **SEED_RANGES)


def write_with_pid(path: Path, image: np.ndarray) -> None:
    """Write the image and, beside it, the id of the process that wrote it."""
    write_image(path, image)
    path.with_suffix(".pid").write_text(str(os.getpid()))


def fail_on_second(path: Path, image: np.ndarray) -> None:
    if path.name.startswith("s1_"):
        raise OSError("disk full")
    write_image(path, image)


def _sources(n: int, keep: int = 0) -> list[Source]:
    rng = np.random.default_rng(1)
    return [
        Source(
            f"in/s{i}.tif",
            f"s{i}.tif",
            f"s{i}",
            rng.integers(0, 256, (32, 40, 3), np.uint8),
            i < keep,
        )
        for i in range(n)
    ]


def test_write_sets_in_workers_match_one_process(tmp_path):
    params = AugmentParams(copies=2)
    sources = _sources(6, keep=2)
    out = {}
    for workers in (1, 2):
        folder = tmp_path / str(workers)
        folder.mkdir()
        got = list(write_sets(folder, sources, params, 7, workers=workers, write=write_with_pid))
        assert [s.key for s, _ in got] == [s.key for s in sources]
        kept = [images for _, images in got if images is not None]
        assert len(kept) == 2
        first = [sources[0].pixels, *copies(sources[0].pixels, "s0.tif", params, 7)]
        assert [a.tobytes() for a in kept[0]] == [a.tobytes() for a in first]
        pids = {p.read_text() for p in folder.glob("*.pid")}
        if workers == 1:
            assert pids == {str(os.getpid())}
        else:  # written by the workers
            assert pids
            assert str(os.getpid()) not in pids
        out[workers] = {p.name: p.read_bytes() for p in folder.glob("*.png")}
    assert len(out[1]) == 18
    assert out[2] == out[1]


@pytest.mark.parametrize("workers", [1, 2])
def test_write_sets_error_names_the_source(tmp_path, workers):
    params = AugmentParams(copies=1)
    with pytest.raises(
        DataError, match=r"^in/s1.tif: cannot augment or write its copies: disk full$"
    ):
        list(write_sets(tmp_path, _sources(4), params, 0, workers=workers, write=fail_on_second))
