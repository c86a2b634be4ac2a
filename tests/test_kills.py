"""Kills and interrupts leave nothing behind: no process of a killed stage lives on, every
temporary a killed stage leaves is ignored by git and removed by the stage's next run or by the
validate stage, and an interrupted training leaves the previous curves."""

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, random_prepared, run_stage, stage, write_params

from blastcell import files

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


def _stat(pid: int) -> tuple[str, int, int] | None:
    """A process's state, parent and start time (`/proc/<pid>/stat`), or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()  # after the command, which may hold spaces
    return fields[0], int(fields[1]), int(fields[19])


def _descendants(pid: int) -> set[tuple[int, int]]:
    """The processes below `pid` (children, theirs, ...), as (pid, start time)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) and stat[0] != "Z":
            parents[int(entry.name)] = (stat[1], stat[2])
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        for child, (ppid, start) in parents.items():
            if ppid == parent:
                found.add((child, start))
                todo.append(child)
    return found


def _living(processes: set[tuple[int, int]]) -> set[tuple[int, int]]:
    """Those of `processes` that still run (not gone, not a zombie, not a new process)."""
    alive = set()
    for pid, start in processes:
        stat = _stat(pid)
        if stat is not None and stat[0] != "Z" and stat[2] == start:
            alive.add((pid, start))
    return alive


def _ignored_by_git(folder: Path, paths: list[Path]) -> list[Path]:
    """Those of `paths` (in `folder`) that the project's .gitignore ignores."""
    subprocess.run(["git", "init", "-q", str(folder)], check=True)
    shutil.copy(ROOT / ".gitignore", folder / ".gitignore")
    names = [str(p.relative_to(folder)) for p in paths]
    out = subprocess.run(
        ["git", "-C", str(folder), "check-ignore", *names], capture_output=True, text=True
    )
    return [folder / name for name in out.stdout.split()]


def _kill_stage(folder: Path, started: set[tuple[int, int]]) -> None:
    """Start the synthesize stage with 2 workers in `folder` and kill it with SIGKILL once its
    workers are writing images; `started` gets the processes it had started."""
    params = write_params(
        folder / "params.yaml",
        *("synthesize.n_blast=150", "synthesize.n_not_blast=150", "synthesize.workers=2"),
    )
    command = [sys.executable, str(ROOT / "stages" / "synthesize.py"), "--params", str(params)]
    command += ["--output", "data/synthetic", "--preview", "plots/synthesize/preview.png"]
    stage = subprocess.Popen(command, cwd=folder, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and stage.poll() is None:
            started |= _descendants(stage.pid)
            writing = any(p.is_file() for p in (folder / "data").glob(".synthetic.*/*.tif"))
            if len(started) >= 4 and writing:  # resource tracker, forkserver, 2 workers
                break
            time.sleep(0.05)
        assert stage.poll() is None, "the stage ended before it could be killed"
        assert len(started) >= 4, f"the stage started only {started}"
        started |= _descendants(stage.pid)
        stage.send_signal(signal.SIGKILL)
    finally:
        stage.kill()  # if it is still running: the test failed
        stage.wait()


@pytest.fixture(scope="module")
def killed(tmp_path_factory) -> Iterator[tuple[Path, set[tuple[int, int]], list[Path]]]:
    """A project folder where a synthesize stage was killed: the folder, the processes the
    stage started and what the kill left."""
    folder = tmp_path_factory.mktemp("killed")
    started: set[tuple[int, int]] = set()
    try:
        _kill_stage(folder, started)
        yield folder, started, _temporaries(folder)
    finally:
        for pid, _ in _living(started):  # what a failed test found alive
            os.kill(pid, signal.SIGKILL)


def _temporaries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if files.is_temporary(p.name))


def test_no_process_of_a_killed_stage_lives_on(killed):
    _, started, _ = killed
    deadline = time.monotonic() + 5
    while _living(started) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _living(started) == set()  # workers, forkserver and resource tracker


def test_what_a_kill_leaves_is_a_temporary_that_git_ignores(killed, tmp_path):
    folder, _, left = killed
    assert [p.name.split(".blastcell-tmp-")[0] for p in left] == [".synthetic"]
    assert any(left[0].iterdir())  # the images written before the kill
    copy = tmp_path / "project"
    shutil.copytree(folder, copy, symlinks=True)
    leftovers = [copy / p.relative_to(folder) for p in left]
    assert _ignored_by_git(copy, leftovers) == leftovers


def test_the_stages_next_run_removes_what_the_kill_left(killed, tmp_path):
    folder, _, _ = killed
    copy = tmp_path / "project"
    shutil.copytree(folder, copy, symlinks=True)
    edit = ("synthesize.n_blast=3", "synthesize.n_not_blast=3", "synthesize.image_size=32")
    write_params(copy / "params.yaml", *edit)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(copy)  # the stage's paths are relative, as dvc.yaml gives them
        run_stage("synthesize", ["--output", "data/synthetic"])
    assert sorted(p.name for p in (copy / "data").iterdir()) == ["synthetic"]


def _leave_temporaries(folder: Path) -> list[Path]:
    """Kill a process in `folder` in the middle of each way the project writes through a
    temporary (atomic_dir, atomic_file, scratch_dir, model.save's unstamped Keras file); return
    what it left."""
    code = """
import contextlib, os, signal
from pathlib import Path
from blastcell import files
with contextlib.ExitStack() as stack:
    for tmp in (
        stack.enter_context(files.atomic_dir(Path("data/augmented"))),
        stack.enter_context(files.scratch_dir(Path("cv"), "cv-work")),
    ):
        (tmp / "half.png").write_bytes(b"half")
    for path in ("plots/train/loss.json", "metrics/train.json", "models/model.keras"):
        stack.enter_context(files.atomic_file(Path(path))).write_text("{")
    # what model.save writes Keras's file to, before it takes the time stamps out
    stack.enter_context(files.scratch_file(Path("models"), "model.unstamped.keras"))
    os.kill(os.getpid(), signal.SIGKILL)
"""
    subprocess.run([sys.executable, "-c", code], cwd=folder, check=False)
    return _temporaries(folder)


def _plant_others(folder: Path) -> None:
    """What a sweep must not touch: a user's hidden files, git's and DVC's."""
    (folder / ".dvc").mkdir()
    (folder / ".dvc" / "config").write_text("[core]\n")
    (folder / "data" / ".gitignore").write_text("/augmented\n")
    (folder / "data" / "augmented.dvc").write_text("outs:\n")
    (folder / "models" / ".hidden").write_text("mine\n")
    (folder / "models" / ".model.a1b2c3d4.keras").write_text("not ours\n")  # no marker
    (folder / "plots" / ".blastcell-synthetic").write_text("{}\n")
    (folder / "plots" / "train" / "loss.json").write_text("[]\n")


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) in `folder` but temporaries and git's own."""
    return {
        str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None
        for p in folder.rglob("*")
        if ".git" not in p.parts and not any(files.is_temporary(part) for part in p.parts)
    }


def test_the_validate_stage_removes_every_kind_of_temporary_and_nothing_else(tmp_path):
    left = _leave_temporaries(tmp_path)
    assert sorted(p.name.split(".blastcell-tmp-")[0] for p in left) == [
        ".augmented",
        ".cv-work",
        ".loss",
        ".model",
        ".model.unstamped",
        ".train",
    ]
    assert _ignored_by_git(tmp_path, left) == left
    _plant_others(tmp_path)
    params = write_params(tmp_path / "params.yaml")
    kept = _snapshot(tmp_path)
    line = run_stage("validate", ["--params", str(params), "--output", str(tmp_path / "data/ok")])
    assert line == "validate: params are valid; removed what killed stages left: " + ", ".join(
        str(p.relative_to(tmp_path)) for p in left
    )
    assert _temporaries(tmp_path) == []
    assert _snapshot(tmp_path) == {**kept, "data/ok": b'{\n  "params": "valid"\n}\n'}


def test_the_validate_stage_sweeps_the_folders_of_every_output_of_the_pipelines():
    found = set()
    for pipeline in (ROOT / "dvc.yaml", ROOT / "cv" / "dvc.yaml"):  # cv's runs at the root
        for declared in yaml.safe_load(pipeline.read_text())["stages"].values():
            declared = declared.get("do", declared)  # a foreach stage: its template
            for kind in ("outs", "metrics", "plots"):
                for out in declared.get(kind, []):
                    found.add(Path(next(iter(out)) if isinstance(out, dict) else out).parts[0])
    assert found == set(stage("validate").OUTPUT_FOLDERS)


# Training: a tiny prepared folder of random images, and the train stage run in this process.


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A project folder where the train stage ran to the end on tiny data (3 epochs)."""
    folder = tmp_path_factory.mktemp("trained")
    random_prepared(folder / "data" / "prepared")
    write_params(
        folder / "params.yaml",
        *("model.width=0.125", "model.dense_units=8", "train.epochs=3"),
        *("train.warmup_epochs=0", "train.batch_size=8", "train.precision=float32"),
    )
    _train(folder)
    return folder


def _train(folder: Path) -> str:
    """Run the train stage in `folder` as dvc.yaml does."""
    args = ["--input", "data/prepared", "--model", "models/model.keras", "--plots", "plots/train"]
    args += ["--metrics", "metrics/train.json", "--report", "reports/train.json"]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        return run_stage("train", args)


def _outputs(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for name in ("models", "metrics", "reports", "plots")
        for p in sorted((folder / name).rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_an_interrupted_training_leaves_the_previous_outputs(
    trained, tmp_path, monkeypatch, error
):
    from blastcell import train

    folder = tmp_path / "project"
    shutil.copytree(trained, folder)
    before = _outputs(folder)
    assert len(before["plots/train/loss.json"]) > 0
    written = train.Curves.on_epoch_end

    def stop_after_epoch_2(self, epoch, logs=None):
        written(self, epoch, logs)  # the curve so far is written: then Ctrl-C, or an error
        if epoch == 1:
            raise error("stopped")

    monkeypatch.setattr(train.Curves, "on_epoch_end", stop_after_epoch_2)
    with pytest.raises(error):
        _train(folder)
    assert _outputs(folder) == before  # the previous curves, model and metrics, whole
    assert _temporaries(folder) == []


def test_an_interrupted_first_training_leaves_no_curves(trained, tmp_path, monkeypatch):
    from blastcell import train

    folder = tmp_path / "project"
    shutil.copytree(trained, folder, ignore=shutil.ignore_patterns("models", "metrics", "plots"))
    written = train.Curves.on_epoch_end

    def interrupt_after_epoch_2(self, epoch, logs=None):
        written(self, epoch, logs)
        if epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(train.Curves, "on_epoch_end", interrupt_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        _train(folder)
    assert [p for p in (folder / "plots").rglob("*") if p.is_file()] == []  # no curve at all
    assert _temporaries(folder) == []


def test_the_train_stages_next_run_removes_what_a_kill_left(trained, tmp_path):
    folder = tmp_path / "project"
    shutil.copytree(trained, folder)
    before = _outputs(folder)
    left = [p.relative_to(folder) for p in _leave_temporaries(folder)]
    assert sorted({p.parts[0] for p in left}) == ["cv", "data", "metrics", "models", "plots"]
    _train(folder)
    # its own (the model's two, the curve's, the metrics') are gone; other stages' are theirs
    assert sorted({p.relative_to(folder).parts[0] for p in _temporaries(folder)}) == ["cv", "data"]
    assert _outputs(folder).keys() == before.keys()
