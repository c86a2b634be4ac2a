"""`blastcell predict`: files and folders in, a CSV or JSON table out, bad files named."""

import csv
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from blastcell import augmented, images, ingest, params

keras = pytest.importorskip("keras")
from blastcell import model, predict  # noqa: E402
from blastcell.cli import main as cli_main  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIZE = 32
CLASSES = ["not_blast", "blast"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny untrained seed CNN (32 px, 2 classes) saved with its classes.json."""
    keras.utils.set_random_seed(0)
    settings = params.load(ROOT / "params.yaml", ["model.width=0.125", "model.dense_units=8"])
    net = model.build(settings.model, SIZE, 2)
    folder = tmp_path_factory.mktemp("model")
    net.save(folder / "model.keras")
    (folder / "classes.json").write_text(json.dumps(CLASSES))
    return folder


@pytest.fixture(scope="module")
def net(model_dir):
    return model.load(model_dir / "model.keras")


def _pixels(seed: int, shape=(40, 48, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _save(path: Path, seed: int = 0, mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_pixels(seed)).convert(mode).save(path)
    return path


def _mixed_folder(folder: Path) -> tuple[list[Path], list[Path]]:
    """Good images of every kind and bad files, plus files a folder walk must skip."""
    good = [
        _save(folder / "a.png", 1),
        _save(folder / "b.jpg", 2),
        _save(folder / "gray.png", 3, "L"),
        _save(folder / "sub" / "d.bmp", 4),
    ]
    tifffile.imwrite(folder / "c.tif", _pixels(5))
    good.insert(2, folder / "c.tif")
    (folder / "empty.png").write_bytes(b"")
    jpeg = _save(folder / "whole.jpg", 6).read_bytes()
    (folder / "whole.jpg").unlink()
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    (folder / "text.tif").write_text("not an image\n")
    bad = [folder / "empty.png", folder / "text.tif", folder / "truncated.jpg"]
    _save(folder / ".hidden.png", 7)
    _save(folder / ".cache" / "e.png", 8)
    (folder / "Thumbs.db").write_bytes(b"\0")
    (folder / "notes.txt").write_text("skipped silently\n")
    return sorted(good), sorted(bad)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _expected(net, paths: list[Path]) -> np.ndarray:
    x = np.stack([images.resize(ingest.decode(p)[0], SIZE) for p in paths])
    return net.predict(x, verbose=0)


def test_mixed_folder_predicts_good_files_and_names_bad_ones(tmp_path, model_dir, net, capsys):
    good, bad = _mixed_folder(tmp_path / "images")
    out = tmp_path / "out.csv"
    code = cli_main(
        ["predict", str(tmp_path / "images"), "--model", str(model_dir / "model.keras"),
         "--output", str(out), "--batch-size", "2"]
    )  # fmt: skip
    assert code == 1
    captured = capsys.readouterr()
    for path in bad:
        assert f"blastcell: {path}:" in captured.err
    assert "\r" not in captured.err  # standard error is not a terminal: no progress bar

    rows = _read_csv(out)
    assert list(rows[0]) == [
        "path", "status", "predicted", "probability_not_blast", "probability_blast", "message",
    ]  # fmt: skip
    assert [row["path"] for row in rows] == [str(p) for p in sorted(good + bad)]
    by_path = {row["path"]: row for row in rows}
    for path in bad:
        row = by_path[str(path)]
        assert row["status"] == "error"
        assert row["message"]
        assert "\n" not in row["message"]
        assert row["predicted"] == row["probability_blast"] == ""
    probs = np.array([[float(by_path[str(p)][f"probability_{c}"]) for c in CLASSES] for p in good])
    assert all(by_path[str(p)]["status"] == "ok" for p in good)
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=2e-6)
    np.testing.assert_allclose(probs, _expected(net, good), atol=1e-5)
    assert [by_path[str(p)]["predicted"] for p in good] == [
        CLASSES[i] for i in probs.argmax(axis=1)
    ]
    assert by_path[str(bad[0])]["message"] == "empty file (0 bytes)"
    assert "failed: 3" in captured.out
    assert f"output: {out}" in captured.out
    assert "predicted 5 images" in captured.out


def test_probabilities_equal_model_predict(tmp_path, net):
    good, _ = _mixed_folder(tmp_path)
    inputs = predict.find_inputs([tmp_path])
    results = predict.predict(net, inputs, batch_size=3)
    ok = [r for r in results if r.ok]
    assert [r.path for r in ok] == good
    np.testing.assert_allclose(
        np.stack([r.probabilities for r in ok]), _expected(net, good), atol=1e-5
    )


def test_all_good_inputs_exit_0_and_write_json(tmp_path, model_dir, capsys, monkeypatch):
    files = [_save(tmp_path / "in" / f"{i}.png", i) for i in range(10)]
    out = tmp_path / "x.json"
    code = cli_main(
        ["predict", str(tmp_path / "in"), str(files[0]), "--model",
         str(model_dir / "model.keras"), "--output", str(out), "--batch-size", "4"]
    )  # fmt: skip
    assert code == 0
    captured = capsys.readouterr()
    assert "\r" not in captured.err  # no terminal, no bar
    assert "failed: 0" in captured.out
    records = json.loads(out.read_text())
    assert [r["path"] for r in records] == [str(p) for p in sorted(files)]  # each file once
    for r in records:
        assert r["status"] == "ok"
        assert r["message"] == ""
        assert list(r["probabilities"]) == CLASSES
        assert sum(r["probabilities"].values()) == pytest.approx(1, abs=2e-6)
        assert r["predicted"] == max(r["probabilities"], key=r["probabilities"].get)

    monkeypatch.chdir(tmp_path)  # default output: predictions.csv in the current folder
    assert cli_main(["predict", "in/3.png", "--model", str(model_dir / "model.keras")]) == 0
    assert [row["path"] for row in _read_csv(tmp_path / "predictions.csv")] == ["in/3.png"]


def test_tta_averages_over_the_dihedral_group(tmp_path, model_dir, net, capsys):
    half = _pixels(11, (SIZE, SIZE // 2, 3))
    symmetric = np.concatenate([half, half[:, ::-1]], axis=1)  # mirror image of itself
    path = tmp_path / "symmetric.png"
    Image.fromarray(symmetric).save(path)
    for extra in ([], ["--tta"]):
        out = tmp_path / f"out{len(extra)}.csv"
        args = ["predict", str(path), "--model", str(model_dir / "model.keras")]
        assert cli_main([*args, "--output", str(out), *extra]) == 0
        (row,) = _read_csv(out)
        assert float(row["probability_not_blast"]) + float(row["probability_blast"]) == (
            pytest.approx(1, abs=2e-6)
        )
    capsys.readouterr()

    x = _pixels(12, (1, SIZE, SIZE, 3))
    assert len(predict.dihedral(x)) == 8
    assert len({v.tobytes() for v in predict.dihedral(x)}) == 8  # 8 distinct views
    tta = predict.probabilities(net, x, tta=True)
    np.testing.assert_allclose(tta.sum(axis=1), 1, atol=1e-6)
    for changed in (x[:, :, ::-1], x[:, ::-1], np.rot90(x, 1, axes=(1, 2))):
        np.testing.assert_allclose(predict.probabilities(net, changed, tta=True), tta, atol=1e-6)
    plain = predict.probabilities(net, x)
    assert not np.allclose(predict.probabilities(net, x[:, :, ::-1]), plain, atol=1e-5, rtol=0)
    views = np.concatenate([predict.probabilities(net, v) for v in predict.dihedral(x)])
    np.testing.assert_allclose(plain, views[:1], atol=1e-6)
    np.testing.assert_allclose(tta, views.mean(axis=0, keepdims=True), atol=1e-6)


def test_missing_classes_file_or_model_exits_2_naming_it(tmp_path, model_dir, capsys):
    image = _save(tmp_path / "a.png")
    model_file = tmp_path / "m" / "model.keras"
    model_file.parent.mkdir()
    model_file.write_bytes((model_dir / "model.keras").read_bytes())
    out = tmp_path / "out.csv"
    assert cli_main(["predict", str(image), "--model", str(model_file), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("blastcell: ")
    assert str(model_file.parent / "classes.json") in err
    assert not out.exists()

    assert cli_main(["predict", str(image), "--model", str(tmp_path / "none.keras")]) == 2
    assert f"model file {tmp_path / 'none.keras'} does not exist" in capsys.readouterr().err

    three = tmp_path / "three.json"
    three.write_text(json.dumps(["a", "b", "c"]))
    args = ["predict", str(image), "--model", str(model_file), "--classes", str(three)]
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"blastcell: {model_file} scores 2 classes but 3 class names are given")
    assert err.count("\n") == 1

    text = tmp_path / "text" / "model.keras"
    text.parent.mkdir()
    text.write_text("not a model\n")
    (text.parent / "classes.json").write_text(json.dumps(CLASSES))
    assert cli_main(["predict", str(image), "--model", str(text)]) == 2
    assert capsys.readouterr().err.startswith(
        f"blastcell: {text}: not a Keras model file (.keras): "
    )


def test_missing_path_and_explicit_non_image_are_reported(tmp_path, model_dir, capsys):
    image = _save(tmp_path / "a.png")
    missing = tmp_path / "nowhere.png"
    notes = tmp_path / "notes.txt"
    notes.write_text("hello\n")
    out = tmp_path / "out.csv"
    code = cli_main(
        ["predict", str(missing), str(image), str(notes), "--model",
         str(model_dir / "model.keras"), "--output", str(out)]
    )  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert f"blastcell: {missing}: no such file or folder" in err
    assert f"blastcell: {notes}: not an image file" in err
    rows = _read_csv(out)
    assert [(row["path"], row["status"]) for row in rows] == [
        (str(missing), "error"),
        (str(image), "ok"),
        (str(notes), "error"),
    ]
    assert rows[0]["message"] == "no such file or folder"


def test_nothing_found_exits_1(tmp_path, model_dir, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images\n")
    out = tmp_path / "out.json"
    args = ["predict", str(tmp_path / "empty"), "--model", str(model_dir / "model.keras")]
    assert cli_main([*args, "--output", str(out)]) == 1
    assert "holds no image files" in capsys.readouterr().err
    assert json.loads(out.read_text())[0]["status"] == "error"


def test_a_progress_bar_is_drawn_on_a_terminal_only(tmp_path, model_dir, monkeypatch):
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    files = [_save(tmp_path / "in" / f"{i}.png", i) for i in range(3)]
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    out = tmp_path / "p.csv"
    code = cli_main(["predict", *map(str, files), "--model", str(model_dir / "model.keras"),
                     "--output", str(out), "--batch-size", "1"])  # fmt: skip
    assert code == 0
    drawn = terminal.getvalue()
    assert "\rpredict:   0%|" in drawn
    assert "/3 [" in drawn  # counts images out of 3
    assert drawn.endswith("\r")  # and clears its line when done


def test_size_limits_and_squaring_as_the_augment_stage(tmp_path, model_dir, net, monkeypatch):
    images_dir = tmp_path / "in"
    wide = _save(images_dir / "wide.png", 1)  # 48 x 40
    tiny = images_dir / "tiny.png"
    Image.new("RGB", (10, 12)).save(tiny)
    loop = images_dir / "loop.png"
    loop.symlink_to(loop)
    seen = {}
    real = predict.predict

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(predict, "predict", spy)
    out = tmp_path / "out.csv"
    args = ["predict", str(images_dir), str(loop), "--model", str(model_dir / "model.keras")]
    assert cli_main([*args, "--output", str(out), "--max-image-pixels", "1919"]) == 1
    data = params.load(ROOT / "params.yaml").data  # the defaults are the augment stage's
    assert seen["decoding"] == predict.Decoding(1919, data.min_image_side, data.square)
    rows = [(row["path"], row["status"], row["message"]) for row in _read_csv(out)]
    assert rows == [
        (str(loop), "error", "cannot read image: Too many levels of symbolic links"),
        (str(tiny), "error", "10x12 pixels has a side under --min-image-side=16; "
                             "refused before decoding"),
        (str(wide), "error", "48x40 pixels is over --max-image-pixels=1919; "
                             "refused before decoding"),
        (str(loop), "error", "a link to nothing (broken, or a loop)"),
    ]  # fmt: skip

    args = ["predict", str(wide), "--model", str(model_dir / "model.keras")]
    assert cli_main([*args, "--output", str(out), "--square", "pad"]) == 0
    assert seen["decoding"] == predict.Decoding(data.max_image_pixels, 16, "pad")
    padded = images.square(ingest.decode(wide)[0], "pad")
    assert padded.shape == (48, 48, 3)
    (row,) = _read_csv(out)
    expected = net.predict(images.resize(padded, SIZE)[np.newaxis], verbose=0)[0]
    got = [float(row[f"probability_{c}"]) for c in CLASSES]
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_a_model_trained_on_synthetic_cells_comes_with_a_warning(tmp_path, model_dir, capsys):
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("model.keras", "classes.json"):
        (folder / name).write_bytes((model_dir / name).read_bytes())
    image = _save(tmp_path / "wide.png", 3)  # 48x40: square as the model was trained
    args = ["predict", str(image), "--model", str(folder / "model.keras")]
    args += ["--output", str(tmp_path / "p.csv")]
    assert cli_main(args) == 0
    assert "does not say what it was trained on" in capsys.readouterr().err

    source = augmented.Source("data/synthetic", True, "0" * 64, 260, "center_crop")
    learned = model.TrainingData(source, CLASSES, SIZE, 840, 200)
    (folder / model.TRAINING_DATA).write_text(json.dumps(learned.to_json()))
    assert cli_main(args) == 0
    err = capsys.readouterr().err
    assert "trained only on the embedded synthetic cells (data/synthetic)" in err
    assert "not a classifier for real blood smears" in err
    net = model.load(folder / "model.keras")
    cropped = images.resize(images.square(_pixels(3), "center_crop"), SIZE)
    expected = predict.probabilities(net, cropped[np.newaxis])[0]
    with (tmp_path / "p.csv").open() as f:
        (row,) = list(csv.DictReader(f))
    got = [float(row[f"probability_{c}"]) for c in CLASSES]
    np.testing.assert_allclose(got, expected, atol=1e-6)  # center_crop, as it was trained

    source = augmented.Source("data/ALL_IDB2", False, "0" * 64, 260, "stretch")
    learned = model.TrainingData(source, CLASSES, 32, 8, 2)
    (folder / model.TRAINING_DATA).write_text(json.dumps(learned.to_json()))
    assert cli_main(args) == 0
    assert "warning" not in capsys.readouterr().err


@pytest.mark.skipif(not (hasattr(os, "mkfifo") and Path("/dev/zero").exists()), reason="POSIX")
def test_fifos_and_links_to_devices_are_errors_naming_them_unopened(tmp_path, net):
    good = _save(tmp_path / "in" / "a.png", 1)
    fifo = tmp_path / "in" / "pipe.png"
    os.mkfifo(fifo)  # opening it would wait for a writer
    zero = tmp_path / "zero.png"
    zero.symlink_to("/dev/zero")  # reading it never ends
    results = []
    inputs = predict.find_inputs([tmp_path / "in", zero])
    worker = threading.Thread(target=lambda: results.extend(predict.predict(net, inputs)))
    worker.daemon = True
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "still predicting after 60 s: it opened the FIFO or device"
    assert [(r.path, r.ok) for r in results] == [(good, True), (fifo, False), (zero, False)]
    assert results[1].error == (
        f"{fifo}: not a regular file but a FIFO (named pipe); only image files are read"
    )
    assert results[2].message == (
        "a link to /dev/zero, not a regular file but a character device; only image files are read"
    )
