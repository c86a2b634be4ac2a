"""The stage scripts, run in-process on tiny data: bad input fails early, naming the key or file,
and leaves no output behind."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    ROOT,
    SMALL,
    augment_args,
    contents,
    edit_params,
    run_data_stages,
    run_prepare,
    run_stage,
    sources,
    write_params,
)

from blastcell import images, prepared
from blastcell.files import DataError
from blastcell.params import ParamsError


@pytest.fixture
def params(tmp_path) -> Path:
    return write_params(tmp_path / "params.yaml", *SMALL, tiny=True)


@pytest.fixture(scope="module")
def chained(tmp_path_factory) -> tuple[Path, Path, Path]:
    """The data stages run once on 12 synthetic cells: their folder, params, and prepare's
    output (source split). Tests read it; a test that runs a stage writes in its own folder."""
    folder = tmp_path_factory.mktemp("chained")
    params = write_params(folder / "params.yaml", *SMALL, tiny=True)
    return folder, params, run_data_stages(folder, params)[1]


def test_data_stages_chain_and_are_byte_reproducible(chained):
    folder, params, prep = chained
    aug = folder / "augmented"
    names = sorted(p.name for p in (folder / "synthetic").iterdir())
    assert names[:2] == [".blastcell-synthetic", "Im001_1.tif"]  # the marker: synthetic cells
    assert (folder / "p.png").stat().st_size > 0
    assert len(list(aug.glob("*.png"))) == 24  # 12 originals + 1 copy each

    first = contents(aug, prep)
    assert contents(*run_data_stages(folder, params)) == first  # run again: the same bytes

    spec = prepared.read_spec(prep)
    assert spec.image_size == 32
    assert sum(spec.images.values()) == 24 - spec.images["test"]  # test: originals, no copies
    batches = list(prepared.read(prep).iterate("test", batch_size=100))
    (test_x, _), n_test = batches[0], spec.images["test"]
    assert test_x.dtype == np.uint8
    assert test_x.shape == (n_test, 32, 32, 3)
    assert (prep / "test.csv").read_text().count("_0.png") == n_test  # originals only
    assert not sources(prep / "train.csv") & sources(prep / "test.csv")


def test_random_split_reproduces_the_seeds_leak(chained, tmp_path):
    folder = chained[0]
    random = write_params(tmp_path / "params.yaml", *SMALL, "prepare.split=random", tiny=True)
    prep = run_prepare(tmp_path, random, folder / "augmented")
    assert (prep / "test.csv").read_bytes() == (prep / "val.csv").read_bytes()
    assert prepared.read_spec(prep).images["train"] == round(24 * 1020 / 1268)
    for val, test in zip(prepared.find(prep, "val"), prepared.find(prep, "test"), strict=True):
        assert val.read_bytes() == test.read_bytes()
    assert sources(prep / "train.csv") & sources(prep / "test.csv")  # one cell on both sides


def test_a_bad_param_fails_before_any_output(tmp_path, params):
    edit_params(params, "augment.rotation_range=lots")
    out = tmp_path / "synthetic"
    with pytest.raises(ParamsError, match=r"'augment.rotation_range' must be a number"):
        run_stage("synthesize", ["--params", str(params), "--output", str(out)])
    assert not out.exists()


def test_bad_data_folders_are_named_and_leave_no_output(tmp_path, params):
    data, out = tmp_path / "data", tmp_path / "augmented"
    args = ["--params", str(params), *augment_args(data, tmp_path)]
    with pytest.raises(DataError, match="does not exist"):
        run_stage("augment", args)
    data.mkdir()
    images.write(data / "Im001_1.tif", np.full((16, 16, 3), 200, np.uint8))
    images.write(data / "Im002_0.tif", np.full((16, 16, 3), 100, np.uint8))
    (data / "Im003_1.tif").write_bytes(b"truncated")
    with pytest.raises(DataError, match=r"Im003_1.tif: cannot read image"):
        run_stage("augment", args)
    assert not out.exists()
    assert list(tmp_path.glob(".augmented*")) == []  # no temporary folder left either


def _augment_into(folder: Path, data: Path, params: Path, workers: int) -> dict[str, bytes]:
    """Run the augment stage with `workers` processes; every output file's bytes by name."""
    edit_params(params, f"augment.workers={workers}")
    run_stage("augment", ["--params", str(params), *augment_args(data, folder)])
    files = [p for p in folder.rglob("*") if p.is_file()]
    return {str(p.relative_to(folder)): p.read_bytes() for p in files}


def test_augment_outputs_do_not_depend_on_workers(tmp_path, params):
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(7):
        images.write(
            data / f"Im{i + 1:03d}_{i % 2}.tif", rng.integers(0, 256, (40, 40, 3), np.uint8)
        )
    (data / "Im008_1.tif").write_bytes((data / "Im002_1.tif").read_bytes())  # a duplicate
    edit_params(params, "augment.copies=2")
    one = _augment_into(tmp_path / "one", data, params, workers=1)
    two = _augment_into(tmp_path / "two", data, params, workers=2)
    assert len([name for name in one if name.endswith("_2.png")]) == 8
    assert b",Im002_1.tif,\n" in one["manifest.csv"]  # Im008 is its duplicate
    assert two == one  # PNGs, index.csv, classes.json, manifest, metrics and preview


def test_augment_stage_passes_augment_workers_on(tmp_path, params, monkeypatch):
    from blastcell import parallel

    seen = []
    map_ordered = parallel.map_ordered

    def spy(*args, **kwargs):
        seen.append(kwargs["workers"])
        return map_ordered(*args, **kwargs)

    monkeypatch.setattr(parallel, "map_ordered", spy)
    data = tmp_path / "data"
    data.mkdir()
    images.write(data / "Im001_1.tif", np.full((16, 16, 3), 200, np.uint8))
    images.write(data / "Im002_0.tif", np.full((16, 16, 3), 100, np.uint8))
    _augment_into(tmp_path / "out", data, params, workers=3)
    assert seen == [3]


@pytest.mark.parametrize("workers", [1, 2])
def test_augment_error_in_a_worker_names_the_file_and_leaves_no_output(tmp_path, params, workers):
    data, out = tmp_path / "data", tmp_path / "augmented"
    (data / "blast").mkdir(parents=True)
    (data / "normal").mkdir()
    long = data / "blast" / ("a" * 251 + ".png")  # readable, but its outputs' names are too long
    images.write(long, np.full((16, 16, 3), 200, np.uint8))
    images.write(data / "blast" / "b.png", np.full((16, 16, 3), 150, np.uint8))
    images.write(data / "normal" / "c.png", np.full((16, 16, 3), 100, np.uint8))
    (data / "normal" / "d.png").write_bytes(b"truncated")  # read after the long one is sent
    edit_params(params, f"augment.workers={workers}")
    args = ["--params", str(params), *augment_args(data, tmp_path)]
    with pytest.raises(
        DataError, match=rf"{long}: cannot augment or write its copies: .*too long"
    ):
        run_stage("augment", args)
    assert not out.exists()
    assert list(tmp_path.glob(".augmented*")) == []


def test_a_data_error_is_one_line_and_a_bug_keeps_its_traceback(tmp_path, params):
    import subprocess
    import sys

    script = str(ROOT / "stages" / "augment.py")
    args = [
        sys.executable,
        script,
        "--params",
        str(params),
        *augment_args(tmp_path / "x", tmp_path),
    ]
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"augment: data folder {tmp_path / 'x'} does not exist or is not a folder"
    ]

    debug = {**os.environ, "BLASTCELL_DEBUG": "1"}
    result = subprocess.run(args, capture_output=True, text=True, check=False, env=debug)
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.rstrip().endswith("does not exist or is not a folder")


@pytest.mark.slow  # a process of its own, importing TensorFlow
def test_a_tensorflow_stage_starts_quietly(chained, tmp_path):
    """No TensorFlow start-up lines (oneDNN, CUDA, CPU hints) reach a stage's output."""
    import subprocess
    import sys

    folder, params, prep = chained
    args = [sys.executable, str(ROOT / "stages" / "audit.py"), "--params", str(params)]
    args += ["--data", str(prep), "--copies", str(folder / "copies")]
    args += ["--metrics", str(tmp_path / "a.json")]
    args += ["--report", str(tmp_path / "r.json"), "--nearest", str(tmp_path / "n.csv")]
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run(args, capture_output=True, text=True, check=False, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.count("\n") == 1  # its one summary line
    assert result.stdout.startswith("audit: ")
    assert json.loads((tmp_path / "a.json").read_text()) == {"near_duplicates": 0}


def test_a_multi_patient_set_is_split_by_patient(tmp_path, params):
    """Eight patients, each with cells of both classes: every patient on one side only."""
    data = tmp_path / "data"
    rng = np.random.default_rng(5)
    for patient in range(8):
        for cls, n in (("blast", 3), ("normal", 2)):
            for cell in range(n):
                name = data / cls / f"P{patient:02d}_{cls}{cell}.png"
                name.parent.mkdir(parents=True, exist_ok=True)
                images.write(name, rng.integers(0, 256, (24, 24, 3), np.uint8))
    group_by = r"data.group_by=/(P\d+)_"
    edit_params(params, group_by, "prepare.test_fraction=0.25", "prepare.val_fraction=0.25")
    run_stage("augment", ["--params", str(params), *augment_args(data, tmp_path)])
    manifest = (tmp_path / "manifest.csv").read_text().splitlines()
    assert manifest[0].split(",")[8] == "group"
    assert manifest[1].split(",")[8] == "P00"
    prep = tmp_path / "prepared"
    line = run_stage(
        "prepare", ["--params", str(params), "--input", str(tmp_path / "augmented"),
                    "--output", str(prep)],
    )  # fmt: skip
    assert "prepare: split by group (copies found, data.group_by) with seed 42" in line
    groups = {
        name: {e.group for e in prepared.read(prep).table(name)}
        for name in ("train", "val", "test")
    }
    assert not groups["train"] & groups["test"]
    assert not groups["train"] & groups["val"]
    assert not groups["val"] & groups["test"]
    assert sum(map(len, groups.values())) == 8  # every patient once
    test = prepared.read(prep).table("test")
    assert len(test) == 5 * len(groups["test"])  # all of a test patient's cells, originals only
