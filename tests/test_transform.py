"""Tests for blastcell.transform: equivalence with Keras's legacy ImageDataGenerator geometry."""

from __future__ import annotations

import dataclasses
import tracemalloc

import numpy as np
import pytest
from pydantic import ValidationError

from blastcell import transform
from blastcell.params import AugmentParams, FillMode, choices
from blastcell.transform import (
    Transform,
    apply_transform,
    augment_image,
    random_transform,
    source_rng,
)

FILL_MODES = choices(FillMode)

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
# The rest of the augment section: what the transform does not read.
OTHER_SETTINGS = {"copies": 1, "fill_mode": "constant", "cval": 125.0, "workers": 1}


def settings(ranges: dict[str, object], **others: object) -> AugmentParams:
    """An augment section (checked, as params.yaml's is) with these ranges."""
    return AugmentParams(**{**OTHER_SETTINGS, **ranges, **others})


def unchecked(ranges: dict[str, object]) -> AugmentParams:
    """An augment section out of params' range: Keras reads a shift >= 1 as pixels."""
    return AugmentParams.model_construct(**{**OTHER_SETTINGS, **ranges})


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
        t = random_transform(rng, image.shape[:2], settings(SEED_RANGES))
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
                t = random_transform(np.random.Generator(bit_gen), (40, 56), unchecked(config))
                for field in fields:
                    assert getattr(t, field) == expected[field], (config, seed, field)
    finally:
        np.random.set_state(state)  # noqa: NPY002


def test_shift_tx_moves_columns_like_keras():
    # Keras's row/col swap makes tx (drawn from height_shift_range * H) act along columns.
    image = np.zeros((40, 56), dtype=np.uint8)
    image[20:25, 20:25] = 255
    out = apply_transform(image, Transform(tx=10.0), fill_mode="constant", cval=0.0)
    rows, cols = np.nonzero(out > 128)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (20, 24, 10, 14)


def test_same_seed_is_byte_identical_and_different_seeds_differ():
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    seed_settings = settings(SEED_RANGES)
    a = augment_image(image, np.random.default_rng(42), seed_settings)
    b = augment_image(image, np.random.default_rng(42), seed_settings)
    c = augment_image(image, np.random.default_rng(43), seed_settings)
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, c)


def test_augment_image_is_random_transform_then_apply_transform():
    image = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    for fill_mode, cval in (("constant", 7.0), ("wrap", 125.0)):
        seed_settings = settings(SEED_RANGES, fill_mode=fill_mode, cval=cval)
        t = random_transform(np.random.default_rng(5), image.shape[:2], seed_settings)
        expected = apply_transform(image, t, fill_mode=fill_mode, cval=cval)
        out = augment_image(image, np.random.default_rng(5), seed_settings)
        assert out.tobytes() == expected.tobytes()


def test_source_rng_depends_on_seed_and_key_only():
    first = source_rng(42, "a/b.tif").random(4)
    assert np.array_equal(source_rng(42, "a/b.tif").random(4), first)
    assert not np.array_equal(source_rng(43, "a/b.tif").random(4), first)
    assert not np.array_equal(source_rng(42, "a/c.tif").random(4), first)


def test_apply_transform_is_pure():
    image = np.random.default_rng(1).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    before = image.copy()
    t = FIXED_TRANSFORMS["combined"]
    first = apply_transform(image, t, fill_mode="reflect", cval=125.0)
    assert np.array_equal(image, before)
    assert np.array_equal(first, apply_transform(image, t, fill_mode="reflect", cval=125.0))


@pytest.mark.parametrize("shape", [(40, 56, 3), (64, 64), (17, 9, 1)])
def test_zero_ranges_give_identity(shape):
    image = np.random.default_rng(2).integers(0, 256, shape, dtype=np.uint8)
    out = augment_image(image, np.random.default_rng(3), settings(ZERO_RANGES))
    assert np.array_equal(out, image)
    assert out.dtype == np.uint8
    assert not np.shares_memory(out, image)
    t = random_transform(np.random.default_rng(3), shape[:2], settings(ZERO_RANGES))
    assert t == Transform()


def test_random_transform_stays_within_ranges():
    rng = np.random.default_rng(4)
    h, w = 40, 56
    draws = [random_transform(rng, (h, w), settings(SEED_RANGES)) for _ in range(1000)]
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
    more = [random_transform(rng, (h, w), unchecked(no_vflip)) for _ in range(200)]
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
        ({"width_shift_range": 1.0}, "width_shift_range"),
        ({"height_shift_range": -0.1}, "height_shift_range"),
        ({"shear_range": -0.2}, "shear_range"),
        ({"zoom_range": -0.2}, "zoom_range"),
        ({"zoom_range": 1.0}, "zoom_range"),
        ({"rotation_range": float("nan")}, "rotation_range"),
        ({"fill_mode": "mirror"}, "fill_mode"),
        ({"cval": 300.0}, "cval"),
    ],
)
def test_bad_settings_are_refused_by_params(kwargs, name):
    # The transform takes its settings from params.yaml's augment section, checked there.
    with pytest.raises(ValidationError, match=name):
        settings({**SEED_RANGES, **kwargs})


def test_bad_inputs_raise():
    good = np.zeros((8, 8, 3), dtype=np.uint8)
    t = Transform(theta=10.0)
    seed_settings = settings(SEED_RANGES)
    with pytest.raises(ValueError, match="image"):
        apply_transform(good.astype(np.float32), t, fill_mode="constant", cval=0.0)
    with pytest.raises(ValueError, match="image"):
        apply_transform(np.zeros((2, 8, 8, 3), dtype=np.uint8), t, fill_mode="constant", cval=0.0)
    with pytest.raises(ValueError, match="image"):
        apply_transform(np.zeros(8, dtype=np.uint8), t, fill_mode="constant", cval=0.0)
    with pytest.raises(ValueError, match="image"):
        apply_transform(np.zeros((0, 8, 3), dtype=np.uint8), t, fill_mode="constant", cval=0.0)
    with pytest.raises(ValueError, match="image"):
        augment_image(good.astype(np.int64), np.random.default_rng(0), seed_settings)
    with pytest.raises(ValueError, match="rng"):
        random_transform(np.random.RandomState(0), (8, 8), seed_settings)
    with pytest.raises(ValueError, match="rng"):
        augment_image(good, np.random.RandomState(0), seed_settings)
    with pytest.raises(ValueError, match="shape"):
        random_transform(np.random.default_rng(0), (0, 8), seed_settings)


# Beside SEED_RANGES' draws: exact border hits, far outside (several mirrors, wraps), a zoom
# that lands on whole and half pixels, both flips.
BAND_TRANSFORMS = [
    FIXED_TRANSFORMS["rotation_180"],
    FIXED_TRANSFORMS["combined"],
    Transform(theta=90.0, tx=-3.0, ty=2.0, flip_vertical=True),
    Transform(theta=-151.0, tx=97.0, ty=-120.5, shear=23.0, zx=0.3, zy=3.7),
    Transform(zx=0.5, zy=2.0, tx=0.5, flip_horizontal=True),
]


def _band_cases(seed: int) -> list[tuple[np.ndarray, Transform]]:
    """Random images (RGB, RGBA, one channel, 2-D; not square) with BAND_TRANSFORMS and
    random draws of SEED_RANGES."""
    rng = np.random.default_rng(seed)
    shapes = [(67, 93, 3), (90, 41, 4), (53, 58, 1), (45, 77)]
    cases = []
    for i in range(16):
        image = rng.integers(0, 256, shapes[i % len(shapes)], dtype=np.uint8)
        if i < len(BAND_TRANSFORMS):
            cases.append((image, BAND_TRANSFORMS[i]))
        else:
            cases.append((image, random_transform(rng, image.shape[:2], settings(SEED_RANGES))))
    return cases


@pytest.mark.parametrize("fill_mode", FILL_MODES)
def test_banded_warp_gives_scikit_images_bytes(monkeypatch, fill_mode):
    # A large image is warped by bands of rows: the same bytes as scikit-image's whole-image
    # warp, which these small images take. Bands of 3 to 40 rows, a short one last.
    cases = _band_cases(11)
    expected = [apply_transform(image, t, fill_mode=fill_mode, cval=93.0) for image, t in cases]
    monkeypatch.setattr(transform, "SKIMAGE_SAMPLES", 0)
    for band in (300, 3000):
        monkeypatch.setattr(transform, "_BAND_SAMPLES", band)
        for (image, t), reference in zip(cases, expected, strict=True):
            out = apply_transform(image, t, fill_mode=fill_mode, cval=93.0)
            assert out.dtype == np.uint8
            assert out.flags.c_contiguous
            assert not np.shares_memory(out, image)
            np.testing.assert_array_equal(out, reference, err_msg=f"{t} {image.shape}")


@pytest.mark.parametrize("fill_mode", FILL_MODES)
def test_a_band_holds_scikit_images_float64_bits_before_rounding(fill_mode):
    # Stricter than the bytes: rounding to uint8 would hide a last-bit difference.
    for image, t in _band_cases(12):
        planar = image.reshape(*image.shape[:2], -1)
        matrix = transform.transform_matrix(t, image.shape[:2])
        whole = transform._warp_channels(planar.astype(np.float64), matrix, fill_mode, 93.0)
        rows = np.arange(5, image.shape[0], dtype=np.float64)[:, np.newaxis]  # from row 5 on
        cols = np.arange(image.shape[1], dtype=np.float64)[np.newaxis, :]
        band = transform._warp_band(planar, matrix, rows, cols, fill_mode, 93.0)
        np.testing.assert_array_equal(band.view(np.int64), whole[5:].view(np.int64), str(t))


@pytest.mark.parametrize("fill_mode", FILL_MODES)
def test_a_large_image_is_warped_in_its_own_size_plus_small_bands(monkeypatch, fill_mode):
    # What numpy allocates (tracemalloc): the uint8 result and a few float64 bands, not the
    # float64 copies of the image that scikit-image's warp holds (30 times the result here).
    image = np.random.default_rng(13).integers(0, 256, (1000, 1100, 3), dtype=np.uint8)
    assert image.size > transform.SKIMAGE_SAMPLES
    monkeypatch.setattr(transform, "warp", None)  # scikit-image is not called
    t = FIXED_TRANSFORMS["combined"]
    tracemalloc.start()
    try:
        out = apply_transform(image, t, fill_mode=fill_mode, cval=125.0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.shape == image.shape
    assert peak <= out.nbytes + 24 * transform._BAND_SAMPLES * 8, peak - out.nbytes
