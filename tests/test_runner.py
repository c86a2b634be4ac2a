"""The stage runner: a stage's command line comes from its `run` signature, params are loaded and
checked before it runs, its summary is one line, and with $BLASTCELL_TRACE it notes the params
keys it read (instrument.Recorded) and the modules it loaded."""

import json
import pickle
from pathlib import Path

import pytest
import yaml

from blastcell import instrument, params, runner

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params.yaml"


def example(params, *, data: Path, out: Path | None = None, split_seed: int | None = None) -> str:
    """A stage: reads two keys, reports its arguments."""
    return f"{params.train.epochs} epochs, seed {params.base.seed}: {data} {out} {split_seed}"


def runs_others(params, *, data: Path, params_file: Path) -> str:
    return f"{data} with {params_file}"


def test_the_command_line_comes_from_the_signature(capsys):
    line = runner.invoke(example, ["--params", str(PARAMS), "--data", "d", "--split-seed", "3"])
    raw = yaml.safe_load(PARAMS.read_text())
    epochs, seed = raw["train"]["epochs"], raw["base"]["seed"]
    assert line == f"test_runner: {epochs} epochs, seed {seed}: d None 3"
    assert capsys.readouterr().out == line + "\n"
    with pytest.raises(SystemExit):
        runner.invoke(example, ["--params", str(PARAMS)])  # --data is required
    with pytest.raises(SystemExit):
        runner.invoke(example, ["--params", str(PARAMS), "--data", "d", "--split-seed", "-1"])
    usage = runner.parser(example).format_help()
    assert "--data DATA" in usage
    assert "--out OUT" in usage
    assert "--params-file" not in runner.parser(runs_others).format_help()


def test_a_stage_that_runs_others_gets_the_params_file():
    line = runner.invoke(runs_others, ["--params", str(PARAMS), "--data", "d"])
    assert line == f"test_runner: d with {PARAMS}"


def test_a_stage_run_by_another_is_quiet_and_its_error_is_one_line_in_context(tmp_path, capsys):
    """The cv stage runs prepare, audit, train and evaluate in its own process (`run_stage`)."""
    script = tmp_path / "fussy.py"
    script.write_text(
        "from pathlib import Path\n\n"
        "from blastcell.files import DataError\n\n"
        "def run(params, *, data: Path) -> str:\n"
        "    if data.name == 'bad':\n"
        "        raise DataError(f'{data}: not an image folder')\n"
        "    if data.name == 'gone':\n"
        "        data.read_bytes()\n"
        "    return f'{params.train.epochs} epochs on {data}'\n"
    )
    stage = runner.stage_module(script).run
    epochs = params.load(PARAMS).train.epochs
    argv = ["--params", PARAMS, "--data"]
    assert runner.run_stage(stage, [*argv, Path("d")], "split 3") == f"fussy: {epochs} epochs on d"
    assert capsys.readouterr().out == ""  # the line is the caller's to print, or not
    with pytest.raises(runner.StageFailed) as failed:
        runner.run_stage(stage, [*argv, "x/bad"], "split 3")
    assert str(failed.value) == "split 3: fussy: x/bad: not an image folder"
    with pytest.raises(runner.StageFailed, match=r"^split 4: fussy: .*gone.*No such file"):
        runner.run_stage(stage, [*argv, tmp_path / "gone"], "split 4")
    with pytest.raises(runner.StageFailed, match=r"^split 5: fussy: params: cannot read .*none"):
        runner.run_stage(stage, ["--params", tmp_path / "none.yaml", "--data", "d"], "split 5")


def test_params_are_checked_before_the_stage_runs(tmp_path):
    bad = tmp_path / "params.yaml"
    text = PARAMS.read_text()
    assert "\n  epochs:" in text
    bad.write_text(text.replace("\n  epochs:", "\n  epoch:"))
    with pytest.raises(params.ParamsError, match=r"unknown key 'train\.epoch'"):
        runner.invoke(example, ["--params", str(bad), "--data", "d"])


def test_the_trace_holds_the_keys_read_and_the_modules_loaded(tmp_path, monkeypatch):
    trace = tmp_path / "trace.jsonl"
    monkeypatch.setenv(instrument.TRACE_ENV, str(trace))
    runner.invoke(example, ["--params", str(PARAMS), "--data", "d"])
    (line,) = [json.loads(text) for text in trace.read_text().splitlines()]
    assert line["stage"] == "test_runner"
    assert line["params"] == ["base.seed", "train.epochs"]
    assert "src/blastcell/runner.py" in line["modules"]
    assert line["peak_rss_mb"] > 0


def test_recorded_params_note_reads_properties_and_what_goes_to_another_process():
    reads: set[str] = set()
    recorded = instrument.Recorded(params.load(PARAMS), reads)
    assert recorded.cv.seeds == tuple(range(1, 11))  # a property: the field it reads counts
    assert reads == {"cv.splits"}
    sent = pickle.loads(pickle.dumps(recorded.augment))  # a worker may read any of them
    assert isinstance(sent, params.AugmentParams)
    assert {f"augment.{name}" for name in params.AugmentParams.model_fields} <= reads
    assert len(recorded.model.blocks) == 5
    assert "model.blocks" in reads
    assert "model.dropout" not in reads
    with pytest.raises(AttributeError, match="read-only"):
        recorded.train.epochs = 3
