"""A temporary git + DVC repo holding a copy of this project's pipeline: the one builder that the
tests (tests/dvc_repo.py) and the benchmarks (bench/pipeline.py) use.

The stage list comes from dvc.yaml, the tiny params from tests/tiny.yaml, and params are edited
with the library's own `blastcell.params.write_overridden` (DVC's `section.key=value` form).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from blastcell import params

ROOT = Path(__file__).resolve().parents[1]
# The default pipeline's stages, as dvc.yaml lists them (external: one per set, none by default)
STAGES = [s for s in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"] if s != "external"]
# The tiny params of the tests and of `bench/run.py --quick`, as `section.key=value` overrides.
TINY = [
    f"{section}.{key}={value}"
    for section, values in yaml.safe_load((ROOT / "tests" / "tiny.yaml").read_text()).items()
    for key, value in values.items()
]
TAIL_LINES = 40
PIPELINE = ["dvc.yaml", "params.yaml", ".gitignore", "stages", "src", "weights"]
DVC_SETTINGS = [".dvc/plots", ".dvc/config"]  # the plot templates and offline page, the config
IGNORED = shutil.ignore_patterns("__pycache__", "*.egg-info")


class RepoError(RuntimeError):
    """A command in the repo failed; the message names it and shows the end of its output."""


@dataclass
class Repo:
    """A git + DVC repo holding the pipeline, and the environment its commands run in
    (`BLASTCELL_TRACE`: the file each stage appends its params, modules and memory to)."""

    path: Path
    env: dict[str, str]

    def __truediv__(self, other: str) -> Path:
        return self.path / other

    @property
    def trace(self) -> Path:
        return Path(self.env["BLASTCELL_TRACE"])

    def with_trace(self, trace: Path) -> Repo:
        """The same repo, its stages tracing to `trace`."""
        return Repo(self.path, {**self.env, "BLASTCELL_TRACE": str(trace)})


@dataclass
class Done:
    """A command that succeeded: its wall seconds and output."""

    seconds: float
    stdout: str
    stderr: str


def tail(text: str) -> str:
    return "\n".join(text.rstrip().splitlines()[-TAIL_LINES:])


def run(repo: Repo, *cmd: str | Path) -> Done:
    """Run a command in the repo; RepoError with the end of its output if it fails."""
    start = time.perf_counter()
    result = subprocess.run(
        [str(c) for c in cmd], cwd=repo.path, env=repo.env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RepoError(
            f"`{' '.join(map(str, cmd))}` failed (exit {result.returncode}) in {repo.path}; "
            f"last {TAIL_LINES} lines of its output:\n{tail(result.stdout + result.stderr)}"
        )
    return Done(seconds, result.stdout, result.stderr)


def environment(path: Path, trace: Path) -> dict[str, str]:
    """The environment of the repo's commands: its own copy of the library, a trace file, a
    git identity, quiet TensorFlow and no DVC analytics."""
    python_path = [str(path / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {
        **os.environ,
        "BLASTCELL_TRACE": str(trace),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONPATH": os.pathsep.join(python_path),  # the stages run the copy's blastcell
        "PYTHONUNBUFFERED": "1",  # "Running stage" lines arrive when DVC writes them
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "blastcell",
        "GIT_AUTHOR_EMAIL": "blastcell@example.invalid",
        "GIT_COMMITTER_NAME": "blastcell",
        "GIT_COMMITTER_EMAIL": "blastcell@example.invalid",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def trace_of(path: Path) -> Path:
    """The trace file of the repo at `path`: beside it, not in it (git would see it)."""
    return path.with_name(f"{path.name}.trace.jsonl")


def open_repo(path: Path) -> Repo:
    """The repo that `make` made at `path`, in its environment."""
    return Repo(path, environment(path, trace_of(path)))


def _copy(names: list[str], path: Path) -> None:
    for name in names:
        source, target = ROOT / name, path / name
        if source.is_dir():
            shutil.copytree(source, target, ignore=IGNORED, dirs_exist_ok=True)
        else:
            shutil.copy(source, target)


def init(path: Path) -> Repo:
    """An empty git + DVC repo at the new folder `path` with this project's DVC settings (plot
    templates, offline page, config; no analytics, no update check); nothing committed."""
    path.mkdir(parents=True)
    repo = open_repo(path)
    run(repo, "git", "init", "-q", "-b", "main")
    run(repo, sys.executable, "-m", "dvc", "init", "-q")  # .dvc/: after it, the copied settings
    _copy(DVC_SETTINGS, path)
    with (path / ".dvc" / "config").open("a") as config:  # as `dvc config` would write them
        config.write("[core]\n    analytics = false\n    check_update = false\n")
    return repo


def make(path: Path, overrides: list[str] = ()) -> Repo:
    """`init` a repo at the new folder `path`, copy the pipeline into it (dvc.yaml, params.yaml
    with `overrides` applied, stages/, src/) and commit. Nothing is run. Its stages trace to
    `<path>.trace.jsonl` beside it."""
    repo = init(path)
    _copy(PIPELINE, path)
    params.write_overridden(path / "params.yaml", overrides)
    commit(repo, "pipeline, not yet run")
    return repo


def commit(repo: Repo, message: str) -> None:
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-q", "-m", message)


def copy(repo: Repo, path: Path) -> Repo:
    """A copy of the repo (git history, DVC cache and all) at the new folder `path`, its own
    trace file starting as a copy of the original's."""
    shutil.copytree(repo.path, path, symlinks=True)
    copied = open_repo(path)
    if repo.trace.is_file():
        shutil.copy(repo.trace, copied.trace)
    return copied
