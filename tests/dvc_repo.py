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
from dvc.utils.hydra import apply_overrides

ROOT = Path(__file__).resolve().parents[1]
# The default pipeline's stages, as dvc.yaml lists them (external: one per set, none by default)
STAGES = [s for s in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"] if s != "external"]
# Each stage's upstream stage: DVC runs audit and train (both after prepare) in either order,
# and likewise evaluate and explain (both after train).
UPSTREAM = {
    "synthesize": "validate",
    "copies": "synthesize",
    "augment": "copies",
    "prepare": "augment",
    "audit": "prepare",
    "train": "prepare",
    "evaluate": "train",
    "explain": "train",
}
TINY = yaml.safe_load((ROOT / "tests" / "tiny.yaml").read_text())  # also bench --quick


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


def add_cv(repo: Repo, env: dict[str, str] | None = None) -> list[str]:
    """Add the repeated-splits pipeline, cv/dvc.yaml, and run it; returns the stages that ran
    (`cv/dvc.yaml:cv`, and any of the default pipeline's that it needed)."""
    (repo / "cv").mkdir(exist_ok=True)
    shutil.copy(ROOT / "cv" / "dvc.yaml", repo / "cv" / "dvc.yaml")
    with_env = Repo(repo.path, env or repo.env)
    return ran_stages(dvc(with_env, "repro", "cv/dvc.yaml"))


def build_repo(path: Path, cv: bool = False) -> Repo:
    """A git + DVC repo at `path` with the pipeline on tiny params, run once and committed.

    With `cv`, the repeated splits (cv.splits: 2) are run and committed too.
    """
    path.mkdir()
    for name in ["dvc.yaml", "params.yaml", ".gitignore"]:
        shutil.copy(ROOT / name, path / name)
    shutil.copytree(ROOT / "stages", path / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(
        ROOT / "src", path / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    # With DVC's own writer, as `dvc exp run -S` would: the file keeps the committed layout.
    apply_overrides(
        path / "params.yaml",
        [
            f"{section}.{key}={value}"
            for section, values in TINY.items()
            for key, value in values.items()
        ],
    )
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
    shutil.copytree(ROOT / ".dvc" / "plots", path / ".dvc" / "plots")  # templates, offline page
    shutil.copy(ROOT / ".dvc" / "config", path / ".dvc" / "config")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-q", "-m", "tiny pipeline, not yet run")
    assert in_order(repro(repo), STAGES)
    if cv:
        assert add_cv(repo) == ["cv/dvc.yaml:cv"]
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-q", "-m", "tiny pipeline, run")
    return repo


def in_terminal(repo: Repo, *cmd: str, columns: int = 200) -> str:
    """Run a command on a pseudo-terminal `columns` wide, as a user at a terminal would; its
    output with colours and carriage returns removed. Fails the test if the command fails."""
    import fcntl
    import pty
    import struct
    import termios

    main_fd, child_fd = pty.openpty()
    fcntl.ioctl(child_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 60, columns, 0, 0))
    env = {**repo.env, "COLUMNS": str(columns), "TERM": "xterm", "DVC_PAGER": "cat"}
    proc = subprocess.Popen(
        cmd, cwd=repo.path, env=env, stdin=child_fd, stdout=child_fd, stderr=child_fd
    )
    os.close(child_fd)
    chunks = []
    while True:
        try:
            data = os.read(main_fd, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(main_fd)
    code = proc.wait()
    text = b"".join(chunks).decode(errors="replace")
    text = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]|\x1b[()][AB0]", "", text).replace("\r\n", "\n")
    if code != 0:
        pytest.fail(f"{' '.join(cmd)} failed ({code}):\n{text}")
    return text


def assert_quiet(output: str) -> None:
    """A DVC command's output holds no warning or error."""
    for word in ("WARNING", "ERROR"):
        assert word not in output, output
