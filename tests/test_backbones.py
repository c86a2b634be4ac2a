"""The Keras Applications backbones and `model.weights`.

Each backbone is built under the seed's head on raw pixels, saved, loaded in safe mode (as
`blastcell predict` loads it) and explained by Grad-CAM. Their ImageNet files are checked against
what Keras itself asks for, offline: no network here, so the `imagenet` path is tested with a
weights file this module writes in Keras's format (a randomly initialised backbone under the
published file name) and a fake MD5 table. A warm start from an earlier blastcell model, and a
backbone through the train and evaluate stages.
"""

import dataclasses
import json
import typing
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
from helpers import random_prepared, run_source_stages, run_stage, write_params
from keras import layers
from keras.src.legacy.saving import legacy_h5_format
from keras.src.utils import file_utils
from PIL import Image

from blastcell import backbones, cli, explain, model, params
from blastcell.files import DataError

ROOT = Path(__file__).resolve().parents[1]
SIZE = 32  # the smallest input Keras Applications take without their classifier
SMALL = "mobilenet_v3_small"


def model_params(*overrides: str) -> params.ModelParams:
    return params.load(ROOT / "params.yaml", ["model.dense_units=8", *overrides]).model


def weighted(net: keras.Model) -> list[keras.layers.Layer]:
    return [layer for layer in net.layers if layer.weights]


def same_weights(a: keras.layers.Layer, b: keras.layers.Layer) -> bool:
    pairs = zip(a.get_weights(), b.get_weights(), strict=True)
    return all(np.array_equal(x, y) for x, y in pairs)


def test_the_backbones_are_the_architectures_params_allows():
    architectures = typing.get_args(params.ModelParams.model_fields["architecture"].annotation)
    assert tuple(backbones.BACKBONES) == params.BACKBONES
    assert architectures == ("seed_cnn", "alexnet", *params.BACKBONES)
    assert Path(params.WEIGHTS_DIR) == backbones.WEIGHTS_DIR


class Asked(Exception):
    """Keras asked for its weights file: what it asked is recorded, nothing is downloaded."""


@pytest.mark.parametrize("name", params.BACKBONES)
def test_the_imagenet_file_is_the_one_keras_asks_for(monkeypatch, name):
    asked = {}

    def get_file(fname, origin, file_hash=None, **_):
        asked.update(fname=fname, origin=origin, file_hash=file_hash)
        raise Asked

    monkeypatch.setattr(file_utils, "get_file", get_file)
    backbone = backbones.BACKBONES[name]
    with pytest.raises(Asked):
        getattr(keras.applications, backbone.constructor)(
            include_top=False, weights="imagenet", input_shape=(SIZE, SIZE, 3)
        )
    assert asked == dict(fname=backbone.file_name, origin=backbone.url, file_hash=backbone.md5)
    command = backbone.fetch_command()
    assert command == f"dvc import-url {backbone.url} weights/{backbone.file_name}"


@pytest.mark.parametrize("name", params.BACKBONES)
def test_each_backbone_takes_raw_pixels_under_the_seeds_head(tmp_path, capsys, name):
    net = model.build(model_params(f"model.architecture={name}"), SIZE, 3)
    assert (net.name, net.output_shape) == (name, (None, 3))
    assert net.input_shape == (None, SIZE, SIZE, 3)
    assert [layer.name for layer in net.layers[-4:]] == list(model.HEAD)
    assert isinstance(net.layers[1], layers.Rescaling)  # the model scales raw pixels itself

    path = tmp_path / "model.keras"
    model.save(net, path)
    again = model.load(path, image_size=SIZE, n_classes=3)  # safe mode, as predict loads it
    norms = [layer for layer in again.layers if isinstance(layer, layers.BatchNormalization)]
    assert norms  # each backbone has them, their statistics averaged over fewer steps than Keras's
    assert {layer.momentum for layer in norms} == {backbones.BATCH_NORM_MOMENTUM}
    chosen = again.get_layer(explain.last_conv_layer(again))  # the maps that the head pools
    assert isinstance(chosen, layers.Activation)
    assert chosen.output is again.get_layer("head_pool").input
    pixels = np.random.default_rng(0).integers(0, 256, (2, SIZE, SIZE, 3)).astype(np.uint8)
    heat, probs = explain.gradcam(again, pixels, chosen.name)
    assert heat.shape[0] == 2
    assert np.isfinite(heat).all()
    expected = keras.ops.convert_to_numpy(net(pixels.astype(np.float32), training=False))
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-6)  # the same model

    argv = ["summary", "--classes", "3", "--params", str(ROOT / "params.yaml")]
    argv += ["--set", "model.dense_units=8"]
    argv += ["--set", f"model.architecture={name}", "--set", f"prepare.image_size={SIZE}"]
    assert cli.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 9  # not Keras's hundreds of rows
    backbone = backbones.BACKBONES[name]
    assert lines[3].startswith(backbone.constructor)
    assert backbone.scaling in lines[3]
    assert lines[-1] == f"total params: {net.count_params()}"


def write_keras_weights(path: Path, name: str, seed: int = 1) -> keras.Model:
    """A randomly initialised backbone without its classifier, its weights written as Keras
    publishes ImageNet's: the legacy HDF5 layout, layer by layer."""
    keras.utils.set_random_seed(seed)
    backbone = backbones.BACKBONES[name]
    kwargs = {"include_preprocessing": True} if backbone.preprocessing else {}
    net = getattr(keras.applications, backbone.constructor)(
        include_top=False, weights=None, input_shape=(SIZE, SIZE, 3), **kwargs
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, net)
    return net


def test_imagenet_weights_come_from_weights_checked_by_keras_md5(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    backbone = backbones.BACKBONES[SMALL]
    settings = model_params(f"model.architecture={SMALL}", "model.weights=imagenet")
    with pytest.raises(DataError) as missing:
        model.initialised(settings, SIZE, 2)
    message = str(missing.value)
    assert message.startswith(f"{backbone.weights_path} does not exist")
    assert backbone.fetch_command() in message
    assert "dvc pull" in message
    assert "\n" not in message

    published = write_keras_weights(backbone.weights_path, SMALL)
    with pytest.raises(DataError, match=rf"MD5 [0-9a-f]{{32}} is not {backbone.md5}, which Keras"):
        model.initialised(settings, SIZE, 2)  # the real table: this file is not Keras's

    fake = dataclasses.replace(backbone, md5=backbones.md5(backbone.weights_path))
    monkeypatch.setitem(backbones.BACKBONES, SMALL, fake)
    net, start = model.initialised(settings, SIZE, 2)
    inner = weighted(net)[:-2]  # all but the head's two dense layers
    assert len(inner) == len(weighted(published)) == start.loaded
    assert all(same_weights(a, b) for a, b in zip(inner, weighted(published), strict=True))
    assert start.report() == {
        "weights": "imagenet",
        "weights_file": backbone.weights_path.as_posix(),
        "weights_md5": fake.md5,
        "layers_loaded": start.loaded,
        "layers_rebuilt": [],
    }


def test_a_backbone_file_of_another_architecture_is_one_line_naming_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    inputs = keras.Input((SIZE, SIZE, 3))
    other = keras.Model(inputs, layers.Conv2D(4, 3)(inputs))
    Path("weights").mkdir()
    with h5py.File("weights/other.h5", "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, other)
    settings = model_params(f"model.architecture={SMALL}", "model.weights=weights/other.h5")
    with pytest.raises(DataError, match=r"^weights/other.h5: not mobilenet_v3_small's weights"):
        model.initialised(settings, SIZE, 2)


def test_a_warm_start_loads_an_earlier_model_and_rebuilds_a_head_for_other_classes(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    Path("weights").mkdir()
    earlier = model.build(model_params("model.width=0.125"), SIZE, 2)
    model.save(earlier, Path("weights/lab_a.keras"))
    settings = model_params("model.width=0.125", "model.weights=weights/lab_a.keras")

    same, start = model.initialised(settings, SIZE, 2)  # the same classes: every layer
    assert (start.loaded, start.rebuilt) == (len(weighted(earlier)), ())
    assert all(same_weights(a, b) for a, b in zip(weighted(same), weighted(earlier), strict=True))
    assert start.md5 == backbones.md5(Path("weights/lab_a.keras"))

    four, start = model.initialised(settings, SIZE, 4)  # other classes: a new output layer
    *body, head = weighted(four)
    assert (start.loaded, start.rebuilt) == (len(body), (head.name,))
    assert all(same_weights(a, b) for a, b in zip(body, weighted(earlier), strict=False))
    assert f"{head.name} rebuilt" in start.describe()

    wider = model_params("model.width=0.25", "model.weights=weights/lab_a.keras")
    with pytest.raises(DataError, match=r"^weights/lab_a.keras: layer \w+ holds weights of"):
        model.initialised(wider, SIZE, 2)
    backbone = model_params(f"model.architecture={SMALL}", "model.weights=weights/lab_a.keras")
    with pytest.raises(DataError, match=r"is a seed_cnn model and model\.architecture is mobile"):
        model.initialised(backbone, SIZE, 2)
    missing = model_params("model.weights=weights/lab_b.keras")
    with pytest.raises(DataError, match=r"^weights/lab_b.keras does not exist \(model.weights\)"):
        model.initialised(missing, SIZE, 2)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.weights=imagenet"], "'model.architecture' 'seed_cnn' is no backbone"),
        (["model.weights=weights/resnet.h5"], "'model.architecture' 'seed_cnn' is no backbone"),
        (["model.weights=models/model.keras"], "must be none, imagenet or a file in weights/"),
        (["model.weights=weights/../x.keras"], "must be none, imagenet or a file in weights/"),
        (["model.weights=weights/x.pt"], "a Keras weights file (.h5) or an earlier blastcell"),
        (["model.architecture=resnet50"], "'model.architecture' must be one of ['seed_cnn'"),
        (["train.frozen_epochs=2"], "'model.architecture' is 'seed_cnn' with 'model.weights'"),
        ([f"model.architecture={SMALL}", "train.frozen_epochs=2"], "'model.weights' 'none'"),
        (
            [f"model.architecture={SMALL}", "model.weights=imagenet", "train.frozen_epochs=21"],
            "'train.frozen_epochs' must be at most 'train.epochs', got 21 of 20",
        ),
        (
            [f"model.architecture={SMALL}", "model.weights=imagenet", "train.frozen_epochs=19"],
            "'train.warmup_epochs' must be below 'train.epochs' less 'train.frozen_epochs'",
        ),
    ],
)
def test_bad_weights_params_name_the_key_and_what_is_allowed(overrides, message):
    with pytest.raises(params.ParamsError) as err:
        params.load(ROOT / "params.yaml", overrides)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_the_fine_tuning_recipe_freezes_the_backbone_then_thaws_it_but_its_batch_norm():
    from blastcell import train

    net = model.build(model_params(f"model.architecture={SMALL}"), SIZE, 2)
    recipe = params.load(
        ROOT / "params.yaml",
        [f"model.architecture={SMALL}", "model.weights=imagenet", "train.frozen_epochs=3"],
    ).train
    strategy = train.tf.distribute.get_strategy()
    frozen, thawed = train.recipe(net, 2, recipe, 4, strategy, backbone=True, from_weights=True)
    assert (frozen.end, frozen.patience, thawed.end, thawed.patience) == (3, False, 20, True)

    def trainable() -> dict[str, set[bool]]:
        kinds: dict[str, set[bool]] = {"head": set(), "norm": set(), "other": set()}
        for layer in weighted(net):
            norm = isinstance(layer, layers.BatchNormalization)
            kind = "head" if layer.name in model.HEAD else "norm" if norm else "other"
            kinds[kind].add(layer.trainable)
        return kinds

    frozen.prepare()
    assert trainable() == {"head": {True}, "norm": {False}, "other": {False}}
    assert float(net.optimizer.learning_rate) == pytest.approx(recipe.learning_rate)
    thawed.prepare()
    assert trainable() == {"head": {True}, "norm": {False}, "other": {True}}
    schedule = net.optimizer._learning_rate  # warm-up, then the cosine, over 17 epochs of 4 steps
    assert float(schedule(4)) == pytest.approx(recipe.fine_tune_learning_rate)
    assert float(schedule(4 * 17)) == pytest.approx(0.0, abs=1e-12)

    # From random weights, or asked to, the batch normalisation trains; no frozen epochs: one go
    for from_weights, fine_tune_batch_norm in ((False, False), (True, True)):
        whole = recipe.model_copy(
            update={"frozen_epochs": 0, "fine_tune_batch_norm": fine_tune_batch_norm}
        )
        assert train.recipe(net, 2, whole, 4, strategy, True, from_weights) == []
        assert trainable() == {"head": {True}, "norm": {True}, "other": {True}}
    train.recipe(net, 2, recipe.model_copy(update={"frozen_epochs": 0}), 4, strategy, True, True)
    assert trainable() == {"head": {True}, "norm": {False}, "other": {True}}


def fake_imagenet(monkeypatch) -> backbones.Backbone:
    """MobileNetV3-Small's ImageNet file under weights/ of the working folder: a randomly
    initialised backbone in Keras's format, with its MD5 in the table (no network here)."""
    backbone = backbones.BACKBONES[SMALL]
    write_keras_weights(backbone.weights_path, SMALL)
    fake = dataclasses.replace(backbone, md5=backbones.md5(backbone.weights_path))
    monkeypatch.setitem(backbones.BACKBONES, SMALL, fake)
    return fake


@pytest.mark.slow  # TensorFlow traces MobileNetV3's training step twice: about 30 s
def test_a_backbone_from_imagenet_runs_through_train_evaluate_and_external(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fake = fake_imagenet(monkeypatch)  # now backbones.BACKBONES[SMALL]
    random_prepared(Path("data/prepared"))
    write_params(
        Path("params.yaml"),
        *(f"model.architecture={SMALL}", "model.weights=imagenet", "model.dense_units=8"),
        *(
            "train.epochs=2",
            "train.frozen_epochs=1",  # the head alone, then the whole but its batch norm
            "train.warmup_epochs=0",
            "train.batch_size=8",
            "train.precision=float32",
        ),
        *("evaluate.batch_size=8", "evaluate.bootstrap=0"),
    )
    args = ["--input", "data/prepared", "--model", "models/model.keras", "--plots", "plots/train"]
    line = run_stage("train", [*args, "--metrics", "m.json", "--report", "train.json"])
    assert f"weights from {fake.weights_path} (" in line
    report = json.loads(Path("train.json").read_text())
    assert (report["weights"], report["weights_md5"]) == ("imagenet", fake.md5)
    assert report["layers_loaded"] > 0
    assert report["layers_rebuilt"] == []
    assert report["epochs_run"] == 2
    trained = keras.saving.load_model("models/model.keras")
    small = model_params(f"model.architecture={SMALL}")
    start = model.backbone_net(small, SIZE, 2, weights=fake.weights_path)  # the file's
    norms = [x for x in weighted(start) if isinstance(x, layers.BatchNormalization)]
    assert norms
    assert all(same_weights(x, trained.get_layer(x.name)) for x in norms)
    curve = json.loads(Path("plots/train/loss.json").read_text())
    assert sorted({r["epoch"] for r in curve}) == [1, 2]  # one curve across both phases

    args = ["--data", "data/prepared", "--model", "models/model.keras", "--plots", "plots/ev"]
    line = run_stage("evaluate", [*args, "--metrics", "e.json", "--report", "evaluate.json"])
    assert line.startswith("evaluate: accuracy ")
    assert "on 8 test images" in line

    # a set of images from another lab (Grad-CAM: test_each_backbone_takes_raw_pixels...)
    rng = np.random.default_rng(1)
    for name in ("blast", "not_blast"):
        (Path("lab_b") / name).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(Path("lab_b") / name / f"{i}.png")
    args = ["--model", "models/model.keras", "--data", "lab_b"]
    line = run_stage("external", [*args, "--metrics", "x.json", "--report", "xr.json"])
    assert line.startswith("external: lab_b: accuracy ")
    assert "on 6 test images" in line


@pytest.mark.slow  # a MobileNetV3 trained per split: about 30 s
def test_repeated_splits_train_a_backbone_from_imagenet(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # weights/ and the stages' paths are relative, as in dvc.yaml
    fake_imagenet(monkeypatch)
    settings = write_params(
        Path("params.yaml"),
        *(f"model.architecture={SMALL}", "model.weights=imagenet", "model.dense_units=8"),
        *("train.precision=float32", "cv.splits=2"),
        tiny=True,  # 24 cells of 64 px at 32 px, 2 epochs, online augmentation
    )
    augmented = run_source_stages(Path(), settings)
    args = ["--input", str(augmented), "--copies", "copies"]
    outputs = ["--splits", "cv/splits.json", "--metrics", "cv/metrics.json"]
    line = run_stage("cv", ["--params", str(settings), *args, *outputs])
    assert line.startswith("cv: 2 splits: accuracy ")
    rows = json.loads(Path("cv/splits.json").read_text())
    assert [r["seed"] for r in rows] == [1, 2]
    assert all(0 <= r["accuracy"] <= 1 and r["test_images"] == 4 for r in rows)
    assert sorted(p.name for p in Path("cv").iterdir()) == ["metrics.json", "splits.json"]


def test_the_parameters_page_and_params_yaml_list_every_backbone():
    page = (ROOT / "docs" / "parameters.md").read_text(encoding="utf-8")
    section = page.split("## Backbones and starting weights", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")][1:]  # no header
    assert rows == [
        f"| `{b.name}` | `{b.constructor}` | {b.scaling} | `{b.file_name}` |"
        for b in backbones.BACKBONES.values()
    ]
    assert backbones.BACKBONES[SMALL].fetch_command() in section
    line = next(x for x in (ROOT / "params.yaml").read_text().splitlines() if "architecture:" in x)
    architectures = typing.get_args(params.ModelParams.model_fields["architecture"].annotation)
    assert line.split("#", 1)[1].split() == " | ".join(architectures).split()
