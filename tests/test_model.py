"""The seed CNN must match the seed's Keras summary exactly; width and AlexNet by params."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from blastcell import params
from blastcell.files import DataError

keras = pytest.importorskip("keras")
from blastcell import model  # noqa: E402
from blastcell.cli import main as cli_main  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# The seed's model.summary() table (layer type, output shape, params), input 257x257x3.
SEED_TABLE = [
    ("Conv2D", (129, 129, 256), 7168),
    ("ReLU", (129, 129, 256), 0),
    ("ZeroPadding2D", (129, 129, 256), 0),
    ("MaxPooling2D", (64, 64, 256), 0),
    ("ZeroPadding2D", (68, 68, 256), 0),
    ("Conv2D", (66, 66, 128), 295040),
    ("ReLU", (66, 66, 128), 0),
    ("MaxPooling2D", (33, 33, 128), 0),
    ("ZeroPadding2D", (39, 39, 128), 0),
    ("Conv2D", (35, 35, 96), 307296),
    ("ReLU", (35, 35, 96), 0),
    ("ZeroPadding2D", (39, 39, 96), 0),
    ("Conv2D", (35, 35, 96), 230496),
    ("ReLU", (35, 35, 96), 0),
    ("ZeroPadding2D", (39, 39, 96), 0),
    ("Conv2D", (37, 37, 32), 27680),
    ("ReLU", (37, 37, 32), 0),
    ("MaxPooling2D", (18, 18, 32), 0),
    ("GlobalAveragePooling2D", (32,), 0),
    ("Dense", (1000,), 33000),
    ("ReLU", (1000,), 0),
    ("Dropout", (1000,), 0),
    ("Dense", (2,), 2002),
]
SEED_PARAMS = 902_682


def _params(*overrides):
    return params.load(ROOT / "params.yaml", list(overrides))


def test_seed_cnn_matches_the_seed_summary():
    net = model.build(_params("model.width=1.0").model, 257, 2)
    table = [
        (type(layer).__name__, tuple(layer.output.shape[1:]), layer.count_params())
        for layer in net.layers
        if not isinstance(layer, keras.layers.InputLayer | keras.layers.Rescaling)
    ]
    assert table == SEED_TABLE
    assert net.count_params() == SEED_PARAMS


def test_model_scales_pixels_itself():
    net = model.build(_params("model.input_scaling=unit").model, 64, 2)
    assert isinstance(net.layers[1], keras.layers.Rescaling)
    assert net.layers[1].scale == pytest.approx(1 / 255)


def test_width_scales_every_convolution():
    half = model.build(_params("model.width=0.5").model, 128, 2)
    filters = [layer.filters for layer in half.layers if isinstance(layer, keras.layers.Conv2D)]
    assert filters == [128, 64, 48, 48, 16]


def test_alexnet_is_one_param_away():
    net = model.build(_params("model.architecture=alexnet", "model.width=0.25").model, 128, 2)
    assert net.name == "alexnet"
    convs = [layer for layer in net.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.kernel_size for c in convs] == [(11, 11), (5, 5), (3, 3), (3, 3), (3, 3)]
    assert net.output.shape[1:] == (2,)


def test_blocks_that_shrink_the_image_to_nothing_name_the_block():
    blocks = "[{filters: 8, kernel: 3, stride: 2, pool: 2}, {filters: 8, kernel: 5}]"
    with pytest.raises(params.ParamsError, match=r"model.blocks\[1\].*prepare.image_size=16"):
        model.build(_params(f"model.blocks={blocks}").model, 16, 2)
    assert model.build(_params(f"model.blocks={blocks}").model, 32, 2).output.shape[1:] == (2,)


def test_seed_parameter_count_is_kept_by_standardization_and_grown_by_batch_norm():
    seed = _params("model.width=1.0", "model.input_scaling=unit", "model.batch_norm=false")
    assert model.build(seed.model, 257, 2).count_params() == SEED_PARAMS
    standardized = _params("model.width=1.0", "model.input_scaling=standardize").model
    assert model.build(standardized, 257, 2).count_params() == SEED_PARAMS  # constants only
    normalised = _params("model.width=1.0", "model.batch_norm=true").model
    net = model.build(normalised, 257, 2)
    bn = [layer for layer in net.layers if isinstance(layer, keras.layers.BatchNormalization)]
    convs = [layer for layer in net.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(bn) == len(convs) == 5
    assert not any(c.use_bias for c in convs)
    # each convolution loses its bias (filters) and gains gamma, beta, mean, variance
    assert net.count_params() == SEED_PARAMS + 3 * sum(c.filters for c in convs)


def test_input_stats_are_the_scaled_pixels_mean_and_variance():
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 256, (n, 5, 5, 3), dtype=np.uint8) for n in (4, 3)]
    stats = model.input_stats(iter(batches))
    pixels = np.concatenate(batches).reshape(-1, 3) / 255.0
    np.testing.assert_allclose(stats.mean, pixels.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats.variance, pixels.var(axis=0), rtol=1e-9)
    with pytest.raises(DataError, match="no training images"):
        model.input_stats(iter([]))


def test_center_scales_pixels_to_minus_one_to_one():
    net = model.build(_params("model.input_scaling=center").model, 64, 2)
    scaling = keras.Model(net.input, net.layers[1].output)
    x = np.array([0, 127.5, 255], dtype=np.float32).reshape(1, 1, 3, 1).repeat(3, axis=3)
    x = np.pad(x, ((0, 0), (0, 63), (0, 61), (0, 0)))
    np.testing.assert_allclose(scaling.predict(x, verbose=0)[0, 0, :3, 0], [-1, 0, 1])


def test_a_standardized_model_keeps_its_statistics_when_saved(tmp_path):
    stats = model.InputStats((0.8, 0.7, 0.75), (0.04, 0.09, 0.01))
    settings = _params(
        "model.width=0.125", "model.dense_units=8", "model.input_scaling=standardize"
    )
    net = model.build(settings.model, 32, 2, stats)
    x = np.full((1, 32, 32, 3), [204, 178.5, 191.25], dtype=np.float32)  # the mean, in pixels
    standardize = keras.Model(net.input, net.get_layer("standardize").output)
    np.testing.assert_allclose(standardize.predict(x, verbose=0), 0.0, atol=1e-5)
    path = tmp_path / "model.keras"
    model.save(net, path)
    loaded = model.load(path, image_size=32, n_classes=2)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), net.predict(x, verbose=0))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny seed CNN for 32x32 images and 2 classes, saved as the train stage saves it."""
    path = tmp_path_factory.mktemp("model") / "model.keras"
    model.save(model.build(_params("model.width=0.125", "model.dense_units=8").model, 32, 2), path)
    return path


def test_load_checks_the_model_against_its_use(saved):
    net = model.load(saved, image_size=32, n_classes=2)
    assert net.input_shape == (None, 32, 32, 3)
    assert model.load(saved).output_shape == (None, 2)
    with pytest.raises(DataError) as err:
        model.load(saved, image_size=64)
    assert str(err.value) == (
        f"{saved} takes 32x32 images; the prepared data has 64x64: retrain on it or prepare at 32"
    )
    with pytest.raises(DataError) as err:
        model.load(saved, image_size=32, n_classes=3)
    assert str(err.value) == (
        f"{saved} scores 2 classes but 3 class names are given: it was trained on other classes"
    )


def test_load_names_a_missing_file_or_one_that_is_no_model(tmp_path):
    with pytest.raises(DataError, match=r"^model file .*none.keras does not exist$"):
        model.load(tmp_path / "none.keras")
    text = tmp_path / "model.keras"
    text.write_text("not a model\n")
    with pytest.raises(DataError) as err:
        model.load(text)
    assert str(err.value).startswith(f"{text}: not a Keras model file (.keras): ")
    assert "\n" not in str(err.value)
    other = tmp_path / "model.txt"
    other.write_text("not a model\n")
    with pytest.raises(DataError, match=r"model.txt: not a Keras model file \(.keras\): "):
        model.load(other)


def test_load_refuses_a_model_without_square_rgb_input(tmp_path):
    inputs = keras.Input(shape=(32, 16, 3))
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(inputs))
    path = tmp_path / "model.keras"
    model.save(keras.Model(inputs, outputs), path)
    with pytest.raises(DataError, match=r"model.keras: input shape .* is not square RGB"):
        model.load(path)


def test_summary_command_prints_total_params(capsys):
    assert (
        cli_main(
            [
                "summary",
                "--params",
                str(ROOT / "params.yaml"),
                "--set",
                "model.width=1.0",
                "--set",
                "prepare.image_size=257",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == f"total params: {SEED_PARAMS}"
    assert any("(None, 18, 18, 32)" in line for line in out)


def test_summary_command_rejects_bad_override(capsys):
    assert (
        cli_main(["summary", "--params", str(ROOT / "params.yaml"), "--set", "model.dropout=2"])
        == 2
    )
    assert "'model.dropout'" in capsys.readouterr().err


@pytest.mark.slow  # two processes of their own, one importing TensorFlow
def test_the_command_prints_its_version_and_starts_quietly():
    declared = re.search(r'^version = "(.+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    shown = subprocess.run(
        [sys.executable, "-m", "blastcell.cli", "--version"], capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    assert shown.stdout.strip() == f"blastcell {declared.group(1)}"

    # `summary` imports TensorFlow: none of its start-up lines (oneDNN, cuInit, absl) may show.
    done = subprocess.run(
        [sys.executable, "-m", "blastcell.cli", "summary", "--params", str(ROOT / "params.yaml")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert done.stderr == ""
    assert done.stdout.strip().splitlines()[-1].startswith("total params: ")
