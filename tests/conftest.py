"""Fixtures shared by the test modules. bench/ is importable (its repo builder, its benchmarks).

The tiny pipeline repo is built once per test session (`built_repo`: the default pipeline and
its repeated splits, run and committed), by whichever pytest-xdist worker needs it first while
the others wait for it; each module that changes a repo gets its own copy (`repo`).
"""

import os
import shutil
import sys
from pathlib import Path

import pytest
from filelock import FileLock

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from dvc_repo import Repo, build_repo, copy_repo  # needs bench/ on the path
from pipeline_repo import open_repo

BUILT = ".built"  # written in the built repo's folder once it is complete


@pytest.fixture(scope="session")
def built_repo(tmp_path_factory) -> Repo:
    """The tiny pipeline and its repeated splits in a fresh git + DVC repo, run and committed;
    built once per session, for every worker. Use `repo` to change it."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the workers' common temporary folder
    folder = shared / "built"
    with FileLock(shared / "built.lock"):
        if not (folder / BUILT).is_file():
            shutil.rmtree(folder, ignore_errors=True)  # what a failed build left: build again
            folder.mkdir()
            build_repo(folder / "repo")
            (folder / BUILT).touch()
    return open_repo(folder / "repo")


@pytest.fixture(scope="module")
def repo(built_repo, tmp_path_factory) -> Repo:
    """A copy of the built repo of the module's own."""
    return copy_repo(built_repo, tmp_path_factory.mktemp("copy") / "repo")
