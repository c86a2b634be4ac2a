"""A temporary git + DVC repo holding the real pipeline on tiny params, and helpers to drive it.

Shared by the end-to-end tests (test_pipeline.py, test_team.py) through the `repo` fixture in
conftest.py.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["synthesize", "augment", "prepare", "audit", "train", "evaluate", "explain"]
# Each stage's upstream stage: DVC runs audit and train (both after prepare) in either order,
# and likewise evaluate and explain (both after train).
UPSTREAM = {
    "augment": "synthesize",
    "prepare": "augment",
    "audit": "prepare",
    "train": "prepare",
    "evaluate": "train",
    "explain": "train",
}
TINY = {
    "synthesize": {"n_blast": 12, "n_not_blast": 12, "image_size": 64},
    "augment": {"copies": 2},
    "prepare": {"image_size": 32},
    "model": {"width": 0.125, "dense_units": 32},
    "train": {"epochs": 2, "batch_size": 16},
    "evaluate": {"batch_size": 16},
    "explain": {"per_class": 2, "batch_size": 16},
}


@dataclass
class Repo:
    """A temporary git + DVC repo holding the pipeline, and the environment to run it in."""

    path: Path
    env: dict[str, str]

    def __truediv__(self, other: str) -> Path:
        return self.path / other


def run(repo: Repo, *cmd: str, stdout_only: bool = False) -> str:
    """Run a command in the repo; fail the test with its output if it fails."""
    result = subprocess.run(cmd, cwd=repo.path, capture_output=True, text=True, env=repo.env)
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result.stdout if stdout_only else result.stdout + result.stderr


def dvc(repo: Repo, *args: str) -> str:
    return run(repo, sys.executable, "-m", "dvc", *args)


def dvc_json(repo: Repo, *args: str) -> object:
    """A DVC command's `--json` output; warnings go to stderr and are left out."""
    return json.loads(run(repo, sys.executable, "-m", "dvc", *args, "--json", stdout_only=True))


def status(repo: Repo) -> dict:
    """`dvc status` of the default pipeline, dvc.yaml."""
    return dvc_json(repo, "status", "dvc.yaml")


def ran_stages(output: str) -> list[str]:
    """The stages a `dvc repro` or `dvc exp run` ran, in order, from its output."""
    return re.findall(r"Running stage '([\w@./:-]+)'", output)


def in_order(ran: list[str], expected: list[str]) -> bool:
    """`ran` holds the stages of `expected`, once each, every one after its upstream stage."""
    return sorted(ran) == sorted(expected) and all(
        UPSTREAM.get(s) not in ran or ran.index(UPSTREAM[s]) < i for i, s in enumerate(ran)
    )


def repro(repo: Repo, *args: str) -> list[str]:
    """`dvc repro`; returns the stages that actually ran, in order."""
    return ran_stages(dvc(repo, "repro", *args))


def set_params(repo: Repo, **changes: object) -> None:
    """Change params.yaml like `dvc exp run -S section.key=value` does."""
    path = repo / "params.yaml"
    raw = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        raw[section][key] = value
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


def add_cv(repo: Repo, seeds: list[int], env: dict[str, str] | None = None) -> list[str]:
    """Add the repeated-splits pipeline, cv/dvc.yaml, with `cv.seeds` set to `seeds`, and run it;
    returns the stages that ran (named `cv/dvc.yaml:train@3` and so on)."""
    (repo / "cv").mkdir(exist_ok=True)
    shutil.copy(ROOT / "cv" / "dvc.yaml", repo / "cv" / "dvc.yaml")
    set_params(repo, cv__seeds=seeds)
    with_env = Repo(repo.path, env or repo.env)
    return ran_stages(dvc(with_env, "repro", "cv/dvc.yaml"))


def build_repo(path: Path, cv_seeds: list[int] | None = None) -> Repo:
    """A git + DVC repo at `path` with the pipeline on tiny params, run once and committed.

    With `cv_seeds`, the repeated splits over those seeds are run and committed too.
    """
    path.mkdir()
    for name in ["dvc.yaml", "params.yaml", ".gitignore"]:
        shutil.copy(ROOT / name, path / name)
    shutil.copytree(ROOT / "stages", path / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(
        ROOT / "src", path / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    raw = yaml.safe_load((path / "params.yaml").read_text())
    for section, values in TINY.items():
        raw[section].update(values)
    (path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    env = {
        **os.environ,
        "BLASTCELL_TRACE": str(path.parent / "trace.jsonl"),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    repo = Repo(path, env)
    run(repo, "git", "init", "-q", "-b", "main")
    dvc(repo, "init", "-q")
    shutil.copytree(ROOT / ".dvc" / "plots", path / ".dvc" / "plots")  # dvc.yaml's templates
    run(repo, "git", "add", "-A")  # DVCLive needs a commit to exist
    run(repo, "git", "commit", "-q", "-m", "tiny pipeline, not yet run")
    assert in_order(repro(repo), STAGES)
    if cv_seeds:
        assert add_cv(repo, cv_seeds)[-1] == "cv/dvc.yaml:aggregate"
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-q", "-m", "tiny pipeline, run")
    return repo
