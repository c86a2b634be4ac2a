"""params.yaml validation: unknown keys, wrong types and out-of-range values name the key."""

from pathlib import Path

import pytest
import yaml

from blastcell import params

ROOT = Path(__file__).resolve().parents[1]


def test_committed_params_load():
    loaded = params.load(ROOT / "params.yaml")
    assert loaded.explain.layer is None  # written empty: the layout `dvc exp run -S` keeps
    assert loaded.cv.seeds == tuple(range(1, 11))
    assert loaded.model.architecture == "seed_cnn"
    assert len(loaded.model.blocks) == 5
    assert loaded.model.blocks[1].stride == 1  # an optional part of a block, absent
    assert loaded.train.batch_size == 100  # the seed's; the rest of the recipe is measured
    assert (loaded.train.schedule, loaded.train.patience) == ("cosine", 8)
    assert loaded.train.learning_rate == pytest.approx(5e-4)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("augment.rotaton_range=10", "unknown key 'augment.rotaton_range' (did you mean"),
        ("train.epochs=2.5", "'train.epochs' must be an integer in [1, 10000]"),
        ("train.epochs=0", "'train.epochs' must be an integer in [1, 10000] (passes over"),
        ("augment.horizontal_flip=1", "'augment.horizontal_flip' must be true or false"),
        ("augment.zoom_range=1.5", "'augment.zoom_range' must be a number in [0, 1)"),
        ("augment.fill_mode=mirror", "'augment.fill_mode' must be one of"),
        ("prepare.split=leaky", "'prepare.split' must be one of ['source', 'random']"),
        ("prepare.test_fraction=0.9", "prepare.test_fraction + prepare.val_fraction"),
        ("model.width=big", "'model.width' must be a number in (0, 8]"),
        ("model.blocks=[{filters: 8}]", "missing key 'model.blocks[0].kernel'"),
        ("model.blocks=[{filters: 8, kernel: 3, conv_padding: full}]", "model.blocks[0]"),
        ("model.blocks=[]", "'model.blocks' must be a non-empty list of blocks"),
        ("model.blocks.0.filters=0", "'model.blocks[0].filters' must be an integer in [1, 4096]"),
        ("train.precision=float64", "'train.precision' must be one of"),
        ("train.warmup_epochs=50", "'train.warmup_epochs' must be below 'train.epochs'"),
        ("train.schedule=linear", "'train.schedule' must be one of ['constant', 'cosine']"),
        ("train.label_smoothing=1", "'train.label_smoothing' must be a number in [0, 1)"),
        ("model.input_scaling=none", "'model.input_scaling' must be one of ['unit', 'center'"),
        ("synthesize.image_size=8", "'synthesize.image_size' must be an integer in [16, 2048]"),
        ("evaluate.bootstrap=-1", "'evaluate.bootstrap' must be an integer in [0, 1000000]"),
        ("evaluate.calibration_bins=0", "'evaluate.calibration_bins' must be an integer in"),
        ("audit.min_inliers=1", "'audit.min_inliers' must be an integer in [3, 5000]"),
        ("audit.threshold=0.06", "unknown key 'audit.threshold'"),
        ("audit.bins=1", "'audit.bins' must be an integer in [2, 64]"),
        ("cv.splits=1", "'cv.splits' must be an integer in [2, 1000]"),
        ("cv.splits=[1, 2]", "'cv.splits' must be an integer"),
        ("cv.seeds=[1, 2]", "unknown key 'cv.seeds'"),
        ("explain.layer=''", "'explain.layer' must be null or a non-empty string"),
        ("base.seed=-1", "'base.seed' must be an integer in [0, 4294967295]"),
        ("data=3", "'data' must be a mapping of keys to values, got 3"),
        ("data.group_by='P[0-9]+'", "'data.group_by' must have a group, (...), naming"),
        ("data.square=fit", "'data.square' must be one of ['stretch', 'pad', 'center_crop']"),
        ("external={'lab b': data/b}", "'external.lab b' must be named with letters, digits"),
        ("external={lab_b: 3}", "'external.lab_b' must name a data folder, got 3"),
    ],
)
def test_bad_values_name_the_key(override, message):
    with pytest.raises(params.ParamsError) as err:
        params.load(ROOT / "params.yaml", [override])
    assert message in str(err.value)


def test_unknown_and_missing_sections_and_keys(tmp_path):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["trian"] = {"epochs": 1}
    with pytest.raises(params.ParamsError, match=r"unknown section 'trian' \(did you mean"):
        params.from_dict(raw)
    del raw["trian"], raw["evaluate"]
    with pytest.raises(params.ParamsError, match="missing section 'evaluate'"):
        params.from_dict(raw)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    del raw["train"]["epochs"]  # no default stands in for a deleted key
    with pytest.raises(params.ParamsError, match=r"missing key 'train\.epochs'"):
        params.from_dict(raw)
    raw["train"]["epoch"] = 5  # misspelt: named as unknown, which explains the missing one
    with pytest.raises(params.ParamsError, match=r"unknown key 'train\.epoch'"):
        params.from_dict(raw)


def test_every_param_is_declared_with_its_meaning_and_what_it_allows():
    rows = params.reference()
    assert all(allowed and meaning for _, allowed, meaning in rows)
    assert [key for key, _, _ in rows if "[]" not in key] == [
        f"{section}.{key}" if isinstance(values, dict) and section != "external" else section
        for section, values in yaml.safe_load((ROOT / "params.yaml").read_text()).items()
        for key in (values if section != "external" else [None])
    ]
    epochs = params.TrainParams.model_fields["epochs"]
    assert params.allowed(epochs) == "an integer in [1, 10000]"
    assert params.allowed(params.AugmentParams.model_fields["zoom_range"]) == "a number in [0, 1)"


def test_ints_are_accepted_where_floats_are_expected():
    loaded = params.load(ROOT / "params.yaml", ["model.width=1", "augment.cval=125"])
    assert loaded.model.width == 1.0
    assert isinstance(loaded.model.width, float)


def test_set_dotted_rejects_malformed_overrides():
    with pytest.raises(params.ParamsError, match="KEY=VALUE"):
        params.set_dotted({}, "train.epochs")
    with pytest.raises(params.ParamsError, match="'nope' is not a section"):
        params.set_dotted({}, "nope.x=1")


def test_dvc_rewrites_params_yaml_only_where_it_is_set(tmp_path):
    """`dvc exp run -S` rewrites params.yaml with DVC's YAML writer: the committed layout is the
    one it writes, so each -S changes one line (tests/test_pipeline.py runs it for real)."""
    from dvc.utils.hydra import apply_overrides

    original = (ROOT / "params.yaml").read_text().splitlines()
    path = tmp_path / "params.yaml"
    for key, value in [
        ("train.epochs", "2"),
        ("model.dropout", "0.25"),
        ("explain.layer", "conv2d"),
        ("cv.splits", "3"),
        ("model.blocks.0.filters", "128"),
    ]:
        path.write_text("\n".join(original) + "\n")
        apply_overrides(path, [f"{key}={value}"])
        changed = [
            (a, b) for a, b in zip(original, path.read_text().splitlines(), strict=True) if a != b
        ]
        assert len(changed) == 1, (key, changed)
        assert changed[0][1].split("#")[0].strip().endswith(f": {value}"), changed


def test_blastcell_params_lists_every_key_of_params_yaml(capsys):
    from blastcell import cli

    assert cli.main(["params"]) == 0
    out = capsys.readouterr().out
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in raw.items():
        for key in values if section != "external" else []:
            assert f"\n{section}.{key} " in f"\n{out}", f"{section}.{key}"
    assert "train.epochs" in out
    assert "an integer in [1, 10000]: passes over the training images" in out
    assert "model.blocks[].kernel" in out
    assert max(len(line) for line in out.splitlines()) <= 99


def test_write_overridden_writes_what_dvc_exp_run_would(tmp_path):
    """The tests' and benchmarks' params edits keep the layout `dvc exp run -S` keeps."""
    from dvc.utils.hydra import apply_overrides

    overrides = ["train.epochs=2", "model.blocks.0.filters=128", "explain.layer=conv2d"]
    ours = params.write_overridden(ROOT / "params.yaml", overrides, tmp_path / "ours.yaml")
    theirs = tmp_path / "theirs.yaml"
    theirs.write_text((ROOT / "params.yaml").read_text())
    apply_overrides(theirs, overrides)
    assert ours.read_text() == theirs.read_text()
    assert params.load(ours).train.epochs == 2
