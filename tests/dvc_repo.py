"""Helpers to drive a temporary git + DVC repo holding the real pipeline on tiny params.

The repo is built by bench/pipeline_repo.py (the builder the benchmarks use too), once per test
session: `built_repo` in conftest.py builds it, `repo` gives each test module its own copy.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pipeline_repo import ROOT, STAGES, TINY, Repo, commit, copy, init, make
from pipeline_repo import run as run_in

from blastcell import params

__all__ = ["ROOT", "STAGES", "Repo", "init"]

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


def run(repo: Repo, *cmd: str, stdout_only: bool = False) -> str:
    """Run a command in the repo; fail the test with its output if it fails."""
    done = run_in(repo, *cmd)
    return done.stdout if stdout_only else done.stdout + done.stderr


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


def set_params(repo: Repo, *overrides: str) -> None:
    """Change the repo's params.yaml: `section.key=value` items, as `dvc exp run -S` takes."""
    params.write_overridden(repo / "params.yaml", overrides)


def cv_trace(repo: Repo) -> Path:
    """The trace of the build's repeated-splits run (kept apart from the default pipeline's)."""
    return repo.trace.with_name(repo.trace.name.replace(".trace.", ".cv-trace."))


def add_cv(repo: Repo) -> list[str]:
    """Add the repeated-splits pipeline, cv/dvc.yaml, and run it, tracing to `cv_trace(repo)`;
    returns the stages that ran (`cv/dvc.yaml:cv`, and any of the default pipeline's that it
    needed)."""
    (repo / "cv").mkdir(exist_ok=True)
    shutil.copy(ROOT / "cv" / "dvc.yaml", repo / "cv" / "dvc.yaml")
    return ran_stages(dvc(repo.with_trace(cv_trace(repo)), "repro", "cv/dvc.yaml"))


def build_repo(path: Path) -> Repo:
    """A git + DVC repo at `path` with the pipeline on tiny params (tests/tiny.yaml) and its
    repeated splits (cv.splits: 2), run once and committed."""
    repo = make(path, TINY)
    assert in_order(repro(repo), STAGES)
    assert add_cv(repo) == ["cv/dvc.yaml:cv"]
    commit(repo, "tiny pipeline and repeated splits, run")
    return repo


def copy_repo(repo: Repo, path: Path) -> Repo:
    """A copy of the built repo at `path`, both traces with it."""
    copied = copy(repo, path)
    if cv_trace(repo).is_file():
        shutil.copy(cv_trace(repo), cv_trace(copied))
    return copied


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
