"""params.yaml validation: unknown keys, wrong types and out-of-range values name the key."""

from pathlib import Path

import pytest
import yaml

from blastcell import params as P

ROOT = Path(__file__).resolve().parents[1]


def test_committed_params_load():
    params = P.load(ROOT / "params.yaml")
    assert params.explain.layer is None  # written empty: the layout `dvc exp run -S` keeps
    assert params.cv.seeds == tuple(range(1, 11))
    assert params.model.architecture == "seed_cnn"
    assert len(params.model.blocks) == 5
    assert params.train.batch_size == 100
    assert params.train.learning_rate == pytest.approx(1e-4)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("augment.rotaton_range=10", "unknown key 'augment.rotaton_range'"),
        ("train.epochs=2.5", "'train.epochs' must be an integer"),
        ("train.epochs=0", "'train.epochs' must be an integer in [1, 10000]"),
        ("augment.horizontal_flip=1", "'augment.horizontal_flip' must be true or false"),
        ("augment.zoom_range=1.5", "'augment.zoom_range'"),
        ("augment.fill_mode=mirror", "'augment.fill_mode' must be one of"),
        ("prepare.split=leaky", "'prepare.split' must be one of ['source', 'random']"),
        ("prepare.test_fraction=0.9", "prepare.test_fraction + prepare.val_fraction"),
        ("model.width=big", "'model.width' must be a number"),
        ("model.blocks=[{filters: 8}]", "missing key 'model.blocks[0].kernel'"),
        ("model.blocks=[{filters: 8, kernel: 3, conv_padding: full}]", "model.blocks[0]"),
        ("train.precision=float64", "'train.precision' must be one of"),
        ("synthesize.image_size=8", "'synthesize.image_size'"),
        ("evaluate.bootstrap=-1", "'evaluate.bootstrap' must be an integer in [0, 1000000]"),
        ("evaluate.calibration_bins=0", "'evaluate.calibration_bins' must be an integer in"),
        ("audit.threshold=0", "'audit.threshold' must be a distance in (0, 1)"),
        ("audit.bins=1", "'audit.bins' must be an integer in [2, 64]"),
        ("cv.splits=1", "'cv.splits' must be an integer in [2, 1000]"),
        ("cv.splits=[1, 2]", "'cv.splits' must be an integer"),
        ("cv.seeds=[1, 2]", "unknown key 'cv.seeds'"),
    ],
)
def test_bad_values_name_the_key(override, message):
    with pytest.raises(P.ParamsError) as err:
        P.load(ROOT / "params.yaml", [override])
    assert message in str(err.value)


def test_unknown_and_missing_sections(tmp_path):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["trian"] = {"epochs": 1}
    with pytest.raises(P.ParamsError, match="unknown section 'trian'"):
        P.from_dict(raw)
    del raw["trian"], raw["evaluate"]
    with pytest.raises(P.ParamsError, match="missing section 'evaluate'"):
        P.from_dict(raw)


def test_ints_are_accepted_where_floats_are_expected():
    params = P.load(ROOT / "params.yaml", ["model.width=1", "augment.cval=125"])
    assert params.model.width == 1.0
    assert isinstance(params.model.width, float)


def test_reads_are_recorded_but_validation_is_not():
    params = P.load(ROOT / "params.yaml")
    before = P.reads()
    assert not any(key.startswith("evaluate.") for key in before)
    assert params.evaluate.batch_size == 100
    assert "evaluate.batch_size" in P.reads()


def test_set_dotted_rejects_malformed_overrides():
    with pytest.raises(P.ParamsError, match="KEY=VALUE"):
        P.set_dotted({}, "train.epochs")
    with pytest.raises(P.ParamsError, match="'nope' is not a section"):
        P.set_dotted({}, "nope.x=1")


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
