"""Fixtures shared by the test modules. bench/ is importable (its repo builder, its benchmarks).

The tiny pipeline repo is built once per test session (`built_repo`: the default pipeline and
its repeated splits, run and committed), by whichever pytest-xdist worker needs it first while
the others wait for it (the modules that use it run first, so one worker builds it at the start
while the other runs the rest); each module that changes a repo gets its own copy (`repo`).
"""

import multiprocessing
import os
import shutil
import sys
from multiprocessing import forkserver
from pathlib import Path

import pytest
from filelock import FileLock

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from dvc_repo import Repo, build_repo, copy_repo  # needs bench/ on the path
from pipeline_repo import open_repo
from pool import WORKER_MODULES

BUILT = ".built"  # written in the built repo's folder once it is complete


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The test modules that use the built repo first, each kept whole: pytest-xdist hands the
    first half of the list to one worker, which then builds the repo at once while the other
    runs the rest, instead of waiting for the build when it reaches a test that needs it."""
    needs = {item.module for item in items if "built_repo" in getattr(item, "fixturenames", ())}
    items.sort(key=lambda item: getattr(item, "module", None) not in needs)  # stable: in order


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


@pytest.fixture(scope="session", autouse=True)
def forkserver_with_every_worker_module():
    """Start this test process's one forkserver with all the modules whose functions run in
    pool workers imported. A stage's process starts its own, importing the module of its first
    map (`parallel._context`); a test process runs many stages, and without this each later
    pool's workers would import their module themselves (about a second per pool)."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        multiprocessing.get_context("forkserver").set_forkserver_preload(list(WORKER_MODULES))
        forkserver.ensure_running()
