"""Faults a careful user or an attacker can cause, each handled with one line (issue 22): param
values that a shell would run, control characters in file names, counts without a bound, full
and read-only disks, an exact duplicate in the test set, and `blastcell check` before
`dvc add`. Kills, memory and odd files have their own modules (test_kills, test_memory,
test_ingest).
"""

import json
import re
import shlex
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import ROOT, run_stage, stage, write_params

from blastcell import DEFAULT_CLASSES, cli, params, prepare, runner
from blastcell.augmented import Record
from blastcell.files import check_writable, describe, printable

PIPELINE = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]

# Every character a shell treats specially, and a leading '-' that argparse would read as a flag:
# as a folder name each must work as a path, and nothing may run.
AWKWARD = "-my cells $(touch PWNED) ; `touch PWNED` 'q' \"d\" & | > x"
CONTROL = ["a\nb", "a\tb", "a\rb", "a\x1b[31mb", "a\u2028b"]


def _quoted(value: str) -> str:
    """A YAML scalar holding `value` exactly, for a `key=value` override."""
    return json.dumps(value)  # JSON strings are YAML


def _resolved_stages(folder: Path, *overrides: str) -> dict[str, str]:
    """The commands DVC runs for dvc.yaml with params.yaml overridden: stage name -> command."""
    from dvc.repo import Repo

    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=folder, check=True)
    shutil.copy(ROOT / "dvc.yaml", folder / "dvc.yaml")
    write_params(folder / "params.yaml", *overrides, tiny=True)
    with Repo(str(folder)) as repo:
        return {s.name: s.cmd for s in repo.index.stages}


def test_no_path_from_params_reaches_a_command(tmp_path):
    """dvc.yaml pastes no folder param into a command: the stages read data.dir and the external
    folders from params.yaml. DVC's own resolution of the commands shows it."""
    commands = _resolved_stages(
        tmp_path, f"data.dir={_quoted(AWKWARD)}", f"external.lab_b={_quoted(AWKWARD + 'b')}"
    )
    assert "external@lab_b" in commands
    for name, cmd in commands.items():
        assert "PWNED" not in cmd, name
        assert "my cells" not in cmd, name
        assert shlex.join(shlex.split(cmd)) == cmd, f"{name}: a shell would change {cmd!r}"


def test_an_external_sets_name_is_the_only_param_in_a_command():
    """`${key}` (a set's name) is allowed only letters, digits, '_' and '-', not first: the
    validate stage, which every stage runs after, refuses anything else."""
    templated = {
        name: s.get("do", s)["cmd"]
        for name, s in PIPELINE.items()
        if "${" in s.get("do", s)["cmd"]
    }
    assert set(templated) == {"external"}
    assert set(re.findall(r"\$\{[^}]*\}", templated["external"])) == {"${key}"}
    for name in ["$(touch PWNED)", "-x", "a b", "a;b", "a`b`", "a'b", ""]:
        with pytest.raises(params.ParamsError, match="must be named with letters, digits"):
            params.load(ROOT / "params.yaml", [f"external.{_quoted(name)}=data/x"])


def test_a_folder_with_every_awkward_character_works_as_data_dir(tmp_path, monkeypatch):
    """The copies and augment stages, run with the very command lines DVC resolves, read a
    data.dir full of shell syntax, spaces, quotes and a leading '-', and nothing runs."""
    commands = _resolved_stages(
        tmp_path / "repo",
        f"data.dir={_quoted(AWKWARD)}",
        *(f"{section}.workers=1" for section in ("synthesize", "copies", "augment")),
        "synthesize.n_blast=4",
        "synthesize.n_not_blast=4",
        "copies.keypoints=32",
    )
    monkeypatch.chdir(tmp_path / "repo")
    run_stage("synthesize", ["--params", "params.yaml", "--output", AWKWARD])
    for name in ("copies", "augment"):
        _, script, *argv = shlex.split(commands[name])
        assert script == f"stages/{name}.py"
        run_stage(name, argv)
    index = (tmp_path / "repo" / "data" / "augmented" / "index.csv").read_text()
    assert len(index.splitlines()) == 1 + 8 * 3
    assert not list(tmp_path.rglob("PWNED*"))
    manifest = (tmp_path / "repo" / "reports" / "data_manifest.csv").read_text()
    assert "Im001_1.tif" in manifest


@pytest.mark.parametrize("value", CONTROL)
@pytest.mark.parametrize("key", ["data.dir", "external.lab_b"])
def test_a_control_character_in_a_folder_param_is_refused_by_validate(tmp_path, key, value):
    path = write_params(tmp_path / "params.yaml", f"{key}={_quoted(value)}")
    done = _stage_process("validate", "--params", path, "--output", tmp_path / "ok")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr
    assert f"validate: params: '{key}' must be a path without control characters" in done.stderr
    assert not (tmp_path / "ok").exists()


def _stage_process(name: str, *args: object) -> subprocess.CompletedProcess:
    """Run stages/<name>.py as DVC would, in a process of its own."""
    cmd = [sys.executable, str(ROOT / "stages" / f"{name}.py"), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)


# --- names that would break a line ---------------------------------------------------------------


def test_printable_escapes_every_character_that_breaks_or_forges_a_line():
    assert printable("a\nb\tc\rd\x1b[2Je\u2028f\u202eg\x00") == (
        "a\\nb\\tc\\rd\\x1b[2Je\\u2028f\\u202eg\\x00"
    )
    assert printable("Ünïcödé name 細胞 (1).tif") == "Ünïcödé name 細胞 (1).tif"


def _cell(path: Path, seed: int) -> None:
    """A small distinct RGB image at `path` (its suffix picks the format)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (48, 48, 3), np.uint8)
    Image.fromarray(pixels).save(path)


@pytest.mark.slow  # the stage as its own process (the runner's escaping: the next test)
def test_a_file_name_with_a_newline_cannot_forge_a_log_line(tmp_path):
    """A stage's error naming a file whose name holds a newline and an escape is still one line."""
    data = tmp_path / "data"
    for seed, label in enumerate(("blast", "other")):
        _cell(data / label / "a.tif", seed)
    (data / "blast" / "x\nstage: all good\x1b[2J.tif").write_bytes(b"not an image")
    path = write_params(tmp_path / "params.yaml", tiny=True)
    done = _stage_process(
        "copies", "--params", path, "--input", data, "--output", tmp_path / "copies",
        "--metrics", tmp_path / "m.json", "--report", tmp_path / "r.json",
        "--gallery", tmp_path / "g.png",
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr
    assert "x\\nstage: all good\\x1b[2J.tif" in done.stderr
    assert "\x1b" not in done.stderr


def test_the_runner_escapes_a_stages_summary_line(capsys):
    def example(params, *, output: runner.Output) -> str:
        return f"wrote {output}"

    line = runner.invoke(example, ["--params", str(ROOT / "params.yaml"), "--output", "/dev/x\ny"])
    assert line == "test_faults: wrote /dev/x\\ny"
    assert capsys.readouterr().out == "test_faults: wrote /dev/x\\ny\n"


# --- numbers without a bound ---------------------------------------------------------------------


def _numeric_fields(section: type, prefix: str):
    for name, field in section.model_fields.items():
        hint = field.annotation
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        inner = args[0] if args else hint
        if typing.get_origin(hint) is tuple:  # model.blocks
            yield from _numeric_fields(inner, f"{prefix}{name}[0].")
        elif isinstance(inner, type) and issubclass(inner, params.Section):
            yield from _numeric_fields(inner, f"{prefix}{name}.")
        elif inner in (int, float):
            yield f"{prefix}{name}", field


def test_every_numeric_param_has_an_upper_bound_and_a_meaning():
    fields = dict(_numeric_fields(params.Params, ""))
    assert {"synthesize.n_blast", "model.blocks[0].filters"} <= set(fields)
    unbounded = [
        key
        for key, field in fields.items()
        if not any(hasattr(m, "le") or hasattr(m, "lt") for m in field.metadata)
    ]
    assert not unbounded, f"numeric params without an upper bound: {unbounded}"
    assert all(field.description for field in fields.values())


def test_a_count_past_its_bound_is_refused_with_its_meaning():
    with pytest.raises(params.ParamsError) as err:
        params.load(ROOT / "params.yaml", ["synthesize.n_blast=100000000000000000000000000"])
    assert str(err.value) == (
        "params: 'synthesize.n_blast' must be an integer in [1, 100000] (blast images written), "
        "got 100000000000000000000000000"
    )


# --- full and read-only disks --------------------------------------------------------------------


def _script_outputs(cmd: str) -> dict[str, str]:
    """A stage command's `--flag value` pairs: argument name -> value."""
    words = shlex.split(cmd)[2:]
    pairs = {words[i][2:].replace("-", "_"): words[i + 1] for i in range(0, len(words), 2)}
    return {name: value for name, value in pairs.items() if name != "params"}


@pytest.mark.parametrize("name", list(PIPELINE))
def test_every_output_a_stage_is_given_is_checked_before_it_runs(name):
    """Each command-line path that dvc.yaml lists among the stage's outs, metrics or plots (or
    a folder holding them) is an `Output` or `OutputFolder` argument, which the runner checks
    for writing before the stage's work."""
    definition = PIPELINE[name].get("do", PIPELINE[name])
    declared = {
        next(iter(p)) if isinstance(p, dict) else p
        for kind in ("outs", "metrics", "plots")
        for p in definition.get(kind, [])
    }
    hints = runner.arguments(stage(name).run)
    for arg, value in _script_outputs(definition["cmd"]).items():
        written = any(out == value or out.startswith(value + "/") for out in declared)
        checked = hints[arg][0] in (runner.Output, runner.OutputFolder)
        assert checked == written, f"{name}: --{arg} {value}"


def _in_mount(tmp_path: Path, options: str, script: str) -> subprocess.CompletedProcess:
    """Run `script` (sh) with a fresh tmpfs mounted at tmp_path/'mnt' (`options`), in a mount
    namespace of its own; skip where this machine allows none."""
    mount = tmp_path / "mnt"
    mount.mkdir()
    setup = f"mount -t tmpfs -o {options} tmpfs {shlex.quote(str(mount))}"
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", setup], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {probe.stderr.strip()}")
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", f"{setup} && {script}"],
        capture_output=True, text=True, check=False, cwd=ROOT,
    )  # fmt: skip


def _synthesize(out: Path, params_file: Path) -> str:
    return shlex.join(
        [
            sys.executable,
            "stages/synthesize.py",
            "--params",
            str(params_file),
            "--output",
            str(out),
        ]
    )


@pytest.mark.parametrize(
    ("options", "fill", "cause"),
    [
        ("size=64k", True, "No space left on device"),
        ("ro", False, "Read-only file system"),
    ],
)
def test_a_full_or_read_only_disk_stops_a_stage_in_one_line_before_its_work(
    tmp_path, options, fill, cause
):
    mount = tmp_path / "mnt"
    path = write_params(tmp_path / "params.yaml", tiny=True)
    filler = f"head -c 64k /dev/zero > {shlex.quote(str(mount / 'filler'))} 2>/dev/null; " * fill
    done = _in_mount(tmp_path, options, filler + _synthesize(mount / "out" / "synthetic", path))
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("synthesize: ")
    assert cause in done.stderr
    assert str(mount) in done.stderr  # names the folder it cannot write


def test_a_disk_that_fills_during_the_work_is_one_line_naming_the_output(tmp_path):
    """Room for the check, not for the images: the error names the output and the cause, and
    nothing half-written is left."""
    mount = tmp_path / "mnt"
    path = write_params(
        tmp_path / "params.yaml",
        "synthesize.n_blast=40", "synthesize.n_not_blast=40", "synthesize.workers=1",
    )  # fmt: skip
    out = mount / "synthetic"
    listing = f"; ls -A {shlex.quote(str(mount))} >&2"
    done = _in_mount(tmp_path, "size=1m", _synthesize(out, path) + listing)
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr  # the error, then an empty listing
    assert lines[0].startswith("synthesize: ")
    assert "No space left on device" in lines[0]
    assert str(out) in lines[0]


def test_check_writable_leaves_nothing_and_names_the_folder(tmp_path):
    check_writable(tmp_path / "a" / "b" / "c.json")
    check_writable(tmp_path / "plots", into=True)
    assert not list(tmp_path.iterdir())  # the folders it made to check are gone again
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError, match="File exists") as err:
        check_writable(tmp_path / "file" / "x.json")
    assert describe(err.value).startswith(str(tmp_path / "file"))


def test_predict_to_a_folder_it_cannot_write_is_one_line_before_any_work(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    output = tmp_path / "file" / "predictions.csv"
    status = cli.main(["predict", str(tmp_path), "--model", str(tmp_path / "none.keras"),
                       "--output", str(output)])  # fmt: skip
    err = capsys.readouterr().err
    assert status == 1
    assert err == f"blastcell: {tmp_path / 'file'}: File exists\n"  # not the missing model


# --- an exact duplicate in the test set ----------------------------------------------------------


def test_an_exact_duplicate_is_scored_once():
    """Two files with the same pixels share a source: one cell, on one side, tested once."""
    rows = []
    for label in (0, 1):
        for i in range(10):
            src = f"Im{label * 10 + i:03d}_{label}.tif"
            rows += [Record(f"{src}_{k}.png", src, src, label, k) for k in range(3)]
            dup = f"Im{label * 10 + i:03d}_{label}_again.tif"  # its exact duplicate
            rows += [Record(f"{dup}_{k}.png", src, src, label, k) for k in range(3)]
    parts = prepare.split_by_group(rows, DEFAULT_CLASSES, 0.2, 0.2, np.random.default_rng(0))
    tested = [r.source for r in parts["test"]]
    assert len(tested) == len(set(tested)) == 4
    trained = [r.source for r in parts["train"] if r.copy == 0]
    assert len(trained) == 2 * len(set(trained))


# --- blastcell check -----------------------------------------------------------------------------


def test_check_names_every_problem_before_dvc_add_and_writes_nothing(tmp_path, capsys):
    data = tmp_path / "cells"
    for seed, name in enumerate(["blast/1.tif", "blast/2.tif", "other/3.tif", "other/4.tif"]):
        _cell(data / name, seed)
    outside = tmp_path / "private.tif"
    _cell(outside, 9)
    (data / "other" / "link.tif").symlink_to(outside)
    (data / "other" / "bad\nname.tif").write_bytes(b"x")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    status = cli.main(["check", str(data), "--params", str(ROOT / "params.yaml")])
    out, err = capsys.readouterr()
    assert status == 1
    assert f"link.tif: a link to {outside}, outside the data folder" in err
    assert "bad\\nname.tif" in err
    assert len(err.splitlines()) == 2
    assert "4 images readable, 2 refused" in out
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    (data / "other" / "link.tif").unlink()
    (data / "other" / "bad\nname.tif").unlink()
    assert cli.main(["check", str(data), "--params", str(ROOT / "params.yaml")]) == 0
    assert "4 images readable, 0 refused" in capsys.readouterr().out
