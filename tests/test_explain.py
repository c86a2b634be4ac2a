"""Grad-CAM against known answers, the Grad-CAM layer finder, and the explain stage end to end on
a tiny prepared folder: misclassified images, none misclassified, and a bad `explain.layer`."""

from pathlib import Path

import imageio.v3 as iio
import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml
from helpers import run_stage as run_stage_script
from helpers import write_params
from keras import layers

from blastcell import explain, model, params, prepared

ROOT = Path(__file__).resolve().parents[1]
SIZE = 32
DARK, BRIGHT = 40, 220


def brightness_model(
    size: int = SIZE, conv_dtype: str = "float32", gain: float = 100.0, pad: int = 0
) -> keras.Model:
    """Class 1 ('bright') if enough pixels are brighter than mid-grey, else class 0 ('dark').

    A 2x2 stride-2 convolution averages pixels into a map, ReLU keeps what is above 0.5 (of 1),
    global average pooling and a fixed dense layer turn the bright area into logits. With `pad`,
    the image is zero-padded first, so the map reaches beyond the image (as the seed CNN's do).
    """
    inputs = keras.Input((size, size, 3))
    x = layers.Rescaling(1.0 / 255, dtype=conv_dtype)(inputs)
    if pad:
        x = layers.ZeroPadding2D(pad, dtype=conv_dtype)(x)
    conv = layers.Conv2D(1, 2, strides=2, name="conv", dtype=conv_dtype)
    x = layers.ReLU(name="relu", dtype=conv_dtype)(conv(x))
    x = layers.GlobalAveragePooling2D(dtype=conv_dtype)(x)
    dense = layers.Dense(2, activation="softmax", name="scores", dtype="float32")
    net = keras.Model(inputs, dense(x), name="brightness")
    conv.set_weights([np.full((2, 2, 3, 1), 1 / 12, np.float32), np.array([-0.5], np.float32)])
    dense.set_weights([np.array([[-gain, gain]], np.float32), np.array([1.0, -1.0], np.float32)])
    return net


def square_image(top: int, left: int, side: int = 8) -> np.ndarray:
    image = np.full((SIZE, SIZE, 3), DARK, np.uint8)
    image[top : top + side, left : left + side] = BRIGHT
    return image


@pytest.mark.parametrize(
    ("conv_dtype", "pad"), [("float32", 0), ("mixed_bfloat16", 0), ("float32", 8)]
)
def test_gradcam_is_bright_where_the_deciding_region_is(tmp_path, conv_dtype, pad):
    path = tmp_path / "model.keras"
    brightness_model(conv_dtype=conv_dtype, gain=100.0 + 30 * pad, pad=pad).save(path)
    net = keras.models.load_model(path, safe_mode=True)  # as the stage loads it
    images = np.stack([square_image(4, 18), square_image(20, 2)])
    heat, probs = explain.gradcam(net, images, "relu")
    assert np.argmax(probs, axis=1).tolist() == [1, 1]
    assert heat.shape == (2, SIZE, SIZE)
    assert heat.dtype == np.float32
    assert np.isfinite(heat).all()
    assert heat.min() >= 0
    assert heat.max() == pytest.approx(1.0)
    for h, (top, left) in zip(heat, [(4, 18), (20, 2)], strict=True):
        inside = np.zeros(h.shape, bool)
        inside[top : top + 8, left : left + 8] = True
        assert h[inside].mean() > 0.8
        assert h[~inside].mean() < 0.1
        row, col = np.unravel_index(np.argmax(h), h.shape)
        assert inside[row, col]


def test_gradcam_of_a_confident_prediction_is_not_blank():
    # Logits 725 apart: p(dark) is 0 in float32, so the gradient of p(bright) is exactly 0.
    net = brightness_model(gain=1000.0)
    image = np.full((1, SIZE, SIZE, 3), BRIGHT, np.uint8)
    heat, probs = explain.gradcam(net, image, "relu")
    assert probs[0, 1] == 1.0
    assert heat.min() > 0.9


def test_gradcam_equals_the_class_activation_map_of_a_gap_model():
    # conv -> ReLU -> global average pooling -> dense softmax: Grad-CAM of class c is
    # ReLU(sum_k W[k, c] A_k) up to scale (Selvaraju et al. 2017, section 3.1; Zhou et al. 2016).
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = layers.Conv2D(6, 3, padding="same", name="conv")(x)
    features = layers.ReLU(name="relu")(x)
    x = layers.GlobalAveragePooling2D()(features)
    dense = layers.Dense(3, activation="softmax")
    net = keras.Model(inputs, dense(x))
    images = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3)).astype(np.uint8)
    fmaps = keras.Model(inputs, features).predict_on_batch(images)
    kernel = dense.get_weights()[0]
    for c in range(3):
        heat, _ = explain.gradcam(net, images, "relu", classes=[c] * 4)
        cam = np.maximum(fmaps @ kernel[:, c], 0)
        top = cam.max(axis=(1, 2), keepdims=True)
        expected = np.divide(cam, top, out=np.zeros_like(cam), where=top > 0)
        np.testing.assert_allclose(heat, expected, atol=1e-5)
    heat, probs = explain.gradcam(net, images, "relu")  # default: the predicted class
    first, _ = explain.gradcam(net, images[:1], "relu", classes=[int(np.argmax(probs[0]))])
    np.testing.assert_allclose(heat[:1], first, atol=1e-6)


def test_feature_grid_finds_the_receptive_field_centres():
    # Ones kernels and no activation: a unit's input gradient is symmetric about its centre.
    inputs = keras.Input((40, 40, 1))
    x = layers.ZeroPadding2D(((1, 2), (3, 0)))(inputs)
    x = layers.Conv2D(1, 3, strides=2, padding="same", kernel_initializer="ones")(x)
    x = layers.AveragePooling2D(2)(x)
    x = layers.Conv2D(1, 3, dilation_rate=2, kernel_initializer="ones", name="last")(x)
    net = keras.Model(inputs, layers.ReLU(name="relu")(x))
    grid = explain.feature_grid(net, "relu")
    image = tf.ones((1, 40, 40, 1))
    for i, j in [(2, 2), (3, 1), (1, 4)]:
        with tf.GradientTape() as tape:
            tape.watch(image)
            unit = net(image)[0, i, j, 0]
        weight = tape.gradient(unit, image).numpy()[0, ..., 0]
        assert weight[0].sum() == weight[-1].sum() == 0  # the field lies inside the image
        rows, cols = np.indices(weight.shape)
        centre = ((rows * weight).sum() / weight.sum(), (cols * weight).sum() / weight.sum())
        expected = [grid.offset[a] + (i, j)[a] * grid.stride[a] for a in (0, 1)]
        assert centre == pytest.approx(expected)
    assert grid.stride == (4, 4)


def test_the_seed_cnns_last_map_reaches_two_units_beyond_the_image():
    net = model.build(_model_params(), 128, 2)
    # Stride 8; blocks 3-5 pad 3 + 2 + 2 and shrink 2 + 2 + 1: 21 units from -16 to 144.
    grid = explain.feature_grid(net, explain.last_conv_layer(net))
    assert grid == explain.Grid((-16.0, -16.0), (8.0, 8.0))


def test_feature_grid_of_a_branching_model_stretches_the_map():
    inputs = keras.Input((32, 32, 3))
    a = layers.Conv2D(2, 3, strides=2, padding="same")(inputs)
    b = layers.Conv2D(2, 3, strides=2, padding="same")(inputs)
    features = layers.ReLU(name="relu")(layers.Add()([a, b]))
    net = keras.Model(inputs, layers.Dense(2)(layers.GlobalAveragePooling2D()(features)))
    assert explain.feature_grid(net, "relu") == explain.Grid((0.5, 0.5), (2.0, 2.0))


def _model_params(**changes) -> params.ModelParams:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["model"].update(changes)
    return params.from_dict(raw).model


def test_the_seed_cnns_gradcam_layer_is_its_last_convolutions_relu():
    net = model.build(_model_params(), 64, 2)
    name = explain.last_conv_layer(net)
    convs = [layer for layer in net.layers if isinstance(layer, layers.Conv2D)]
    chosen = net.get_layer(name)
    assert isinstance(chosen, layers.ReLU)
    assert chosen.input is convs[-1].output
    assert explain.resolve_layer(net, None) == name
    assert name in explain.feature_layers(net)
    assert convs[-1].name in explain.feature_layers(net)
    assert explain.resolve_layer(net, convs[0].name) == convs[0].name


def test_alexnets_gradcam_layer_is_its_last_convolutions_activation():
    net = model.build(_model_params(architecture="alexnet", width=0.125, dense_units=16), 67, 3)
    convs = [layer for layer in net.layers if isinstance(layer, layers.Conv2D)]
    chosen = net.get_layer(explain.last_conv_layer(net))
    assert isinstance(chosen, layers.ReLU)
    assert chosen.input is convs[-1].output


def test_with_batch_norm_the_gradcam_layer_is_the_relu_after_the_normalisation():
    net = model.build(_model_params(batch_norm=True), 64, 2)
    chosen = net.get_layer(explain.last_conv_layer(net))
    assert isinstance(chosen, layers.ReLU)
    normalisation = [layer for layer in net.layers if isinstance(layer, layers.BatchNormalization)]
    assert chosen.input is normalisation[-1].output


def test_a_bad_layer_names_the_key_and_the_choices():
    net = brightness_model()
    for bad in ["nope", "scores"]:  # no such layer; a layer without 4-D feature maps
        with pytest.raises(params.ParamsError) as err:
            explain.resolve_layer(net, bad)
        message = str(err.value)
        assert "'explain.layer'" in message
        assert f"'{bad}'" in message
        assert "['conv', 'relu']" in message


def test_a_model_without_convolutions_is_refused():
    inputs = keras.Input((8, 8, 3))
    net = keras.Model(inputs, layers.Dense(2, activation="softmax")(layers.Flatten()(inputs)))
    with pytest.raises(ValueError, match="no Conv2D layer"):
        explain.last_conv_layer(net)


@pytest.mark.parametrize("bad", ["explain.per_class=0", "explain.layer=''"])
def test_bad_explain_params_name_the_key(bad):
    with pytest.raises(params.ParamsError, match=bad.split("=")[0]):
        params.load(ROOT / "params.yaml", [bad])


def write_prepared(folder: Path, bright: list[bool], labels: list[int], classes: list[str]):
    """A prepared folder holding only a test split: dark or bright noisy images, as prepare
    writes it (shards of 5, test.csv in record order, spec.json)."""
    rng = np.random.default_rng(0)
    images = [
        np.clip(rng.normal(BRIGHT if b else DARK, 8, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
        for b in bright
    ]
    folder.mkdir()
    rows = [
        prepared.Entry(f"img{i:02d}_0.png", f"img{i:02d}.tif", f"img{i:02d}.tif", y)
        for i, y in enumerate(labels)
    ]
    pixels = dict(zip(rows, images, strict=True))
    prepared.write(folder, {"test": rows}, classes, SIZE, 5, pixels.__getitem__)


def run_stage(tmp_path: Path, data: Path, model_path: Path, **explain_params) -> Path:
    changes = [f"explain.{key}={value}" for key, value in explain_params.items()]
    path = write_params(tmp_path / "params.yaml", *changes)
    plots = tmp_path / "plots" / "explain"
    args = ["--params", str(path), "--data", str(data), "--model", str(model_path)]
    run_stage_script("explain", [*args, "--plots", str(plots)])
    return plots


@pytest.fixture
def bright_model(tmp_path) -> Path:
    path = tmp_path / "model.keras"
    brightness_model().save(path)
    return path


def test_explain_stage_shows_the_misclassified_images_in_test_order(
    tmp_path, bright_model, capsys
):
    bright = [i % 2 == 1 for i in range(12)]
    labels = [int(b) for b in bright]
    for i in (2, 5, 6, 9):  # mislabelled: the model disagrees with these four
        labels[i] = 1 - labels[i]
    data = tmp_path / "prepared"
    write_prepared(data, bright, labels, ["dark", "bright"])

    net = keras.models.load_model(bright_model, safe_mode=True)
    found = explain.find_examples(
        net, prepared.read(data), batch_size=4, max_misclassified=3, per_class=2
    )
    assert (found.n_test, found.n_wrong) == (12, 4)
    assert [e.file for e in found.misclassified] == ["img02_0.png", "img05_0.png", "img06_0.png"]
    assert [(e.label, e.pred) for e in found.misclassified] == [(1, 0), (0, 1), (1, 0)]
    assert all(e.prob > 0.5 for e in found.misclassified)
    assert [[e.index for e in row] for row in found.samples] == [[0, 4], [1, 2]]
    np.testing.assert_array_equal(found.samples[1][1].image, found.misclassified[0].image)

    plots = run_stage(tmp_path, data, bright_model, max_misclassified=3, per_class=2)
    assert sorted(p.name for p in plots.iterdir()) == ["gradcam.png", "misclassified.png"]
    assert "4 of 12 test images misclassified (3 shown)" in capsys.readouterr().out
    assert iio.imread(plots / "misclassified.png").shape[:2] == (int(100 * (2.3 + 0.4)), 570)


def test_explain_stage_with_nothing_misclassified_says_so(tmp_path, bright_model, capsys):
    bright = [i % 3 == 0 for i in range(9)]
    data = tmp_path / "prepared"
    write_prepared(data, bright, [int(b) for b in bright], ["dark", "bright"])
    plots = run_stage(tmp_path, data, bright_model)
    assert "0 of 9 test images misclassified" in capsys.readouterr().out
    assert iio.imread(plots / "misclassified.png").shape[:2] == (160, 480)  # the message
    assert (plots / "gradcam.png").is_file()


def test_explain_stage_on_a_three_class_seed_cnn(tmp_path, capsys):
    data = tmp_path / "prepared"
    write_prepared(data, [False] * 7, [i % 3 for i in range(7)], ["a", "b", "c"])
    path = tmp_path / "model.keras"
    model.build(_model_params(width=0.125, dense_units=16), SIZE, 3).save(path)
    plots = run_stage(tmp_path, data, path, per_class=2)
    out = capsys.readouterr().out
    assert "for 6 images" in out
    assert f"'{explain.last_conv_layer(keras.models.load_model(path))}'" in out
    assert (plots / "gradcam.png").is_file()


def test_explain_stage_with_a_bad_layer_fails_before_writing(tmp_path, bright_model):
    data = tmp_path / "prepared"
    write_prepared(data, [True, False], [1, 0], ["dark", "bright"])
    bad = r"'explain\.layer' is 'conv9'.*\['conv', 'relu'\]"
    with pytest.raises(params.ParamsError, match=bad):
        run_stage(tmp_path, data, bright_model, layer="conv9")
    assert not (tmp_path / "plots").exists()
