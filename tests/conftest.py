import pytest
from dvc_repo import Repo, build_repo


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Repo:
    """The tiny pipeline in a fresh git + DVC repo, run and committed; one per test module."""
    return build_repo(tmp_path_factory.mktemp("pipeline") / "repo")
