"""Working as a team, end to end on the tiny pipeline (docs/experiments.md, "Working as a team").

A run pushed to a DVC remote, the repeated splits of cv/dvc.yaml included, comes back complete in
a fresh clone with no warning, and experiments queued with `dvc exp run --queue` run in parallel
with `dvc queue start -j 2`.
"""

import filecmp
import time
from pathlib import Path

import pytest
from dvc_repo import (
    Repo,
    assert_quiet,
    dvc,
    dvc_json,
    ran_stages,
    repro,
    run,
    status,
)

pytestmark = pytest.mark.slow

# What DVC caches (git ignores it), so only a remote carries it to another machine.
CACHED = [
    "data/params.ok",
    "data/synthetic",
    "data/augmented",
    "data/prepared",
    "models/model.keras",
    "reports/evaluate.json",
    "reports/data_manifest.csv",
]
QUEUE_TIMEOUT_S = 600
RATES = [0.001, 0.0003]  # two experiments that differ in train.learning_rate only


def assert_same_tree(left: Path, right: Path) -> None:
    """`right` holds the same files as `left`, byte for byte (a file or a folder)."""
    if left.is_file():
        assert filecmp.cmp(left, right, shallow=False), right
        return
    names = sorted(p.relative_to(left) for p in left.rglob("*") if p.is_file())
    assert names, left
    assert sorted(p.relative_to(right) for p in right.rglob("*") if p.is_file()) == names
    for name in names:
        assert filecmp.cmp(left / name, right / name, shallow=False), right / name


def test_a_pushed_run_pulls_complete_into_a_fresh_clone(repo, tmp_path):
    store = tmp_path / "store"
    dvc(repo, "remote", "add", "-d", "store", str(store))
    run(repo, "git", "add", ".dvc/config")
    run(repo, "git", "commit", "-q", "-m", "DVC remote: a shared folder")
    out = dvc(repo, "push")
    assert_quiet(out)
    assert dvc_json(repo, "status", "--cloud") == {}  # all of it is there

    clone = Repo(tmp_path / "clone", repo.env)
    run(repo, "git", "clone", "-q", str(repo.path), str(clone.path))
    for path in CACHED:
        assert not (clone / path).exists(), path  # git alone does not bring the data
    out = dvc(clone, "pull")
    assert_quiet(out)

    assert dvc_json(clone, "status") == {}  # both pipelines, dvc.yaml and cv/dvc.yaml
    assert repro(clone) == []
    assert repro(clone, "cv/dvc.yaml") == []
    out = dvc(clone, "checkout")
    assert_quiet(out)
    for path in [
        *CACHED,
        "models/classes.json",
        "metrics/evaluate.json",
        "dvc.lock",
        "cv/dvc.lock",
        "cv/metrics.json",
        "cv/splits.json",
    ]:
        assert_same_tree(repo / path, clone / path)


def queue_status(repo: Repo) -> tuple[dict[str, str], str]:
    """`dvc queue status`: each task's status by task id, and the line about the workers."""
    lines = dvc(repo, "queue", "status").splitlines()
    tasks = {
        line.split()[0]: line.split()[-1]
        for line in lines
        if line.strip() and not line.startswith(("Task ", "Worker status", "No experiment"))
    }
    workers = next((line for line in lines if line.startswith("Worker status")), "")
    return tasks, workers


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(3)  # each `dvc queue status` costs a few seconds of CPU too


def test_two_queued_experiments_run_in_parallel_and_both_finish(repo):
    for rate in RATES:
        dvc(repo, "exp", "run", "--queue", "-S", f"train.learning_rate={rate}")
    queued, _ = queue_status(repo)
    assert list(queued.values()) == ["Queued", "Queued"]
    assert status(repo) == {}  # the workspace is left as it was

    def finished() -> bool:
        # A task a worker has taken but not yet started is briefly in no list: wait for each
        # queued task by id, not for "nothing queued or running".
        tasks, _ = queue_status(repo)
        return all(tasks.get(task) in ("Success", "Failed") for task in queued)

    dvc(repo, "queue", "start", "-j", "2")
    try:
        wait_for(finished, QUEUE_TIMEOUT_S, "the queued experiments")
        # Idle workers exit by themselves (within about 10 s); stop them now instead.
        dvc(repo, "queue", "stop")
        wait_for(lambda: "0 active, 0 idle" in queue_status(repo)[1], 60, "the workers to exit")
    finally:
        if "0 active, 0 idle" not in queue_status(repo)[1]:
            dvc(repo, "queue", "stop", "--kill")

    tasks, _ = queue_status(repo)
    logs = {task: dvc(repo, "queue", "logs", task) for task in queued}
    assert [tasks[task] for task in queued] == ["Success", "Success"], logs
    for task, log in logs.items():
        # The data stages come from the shared cache: a queued run trains, evaluates, explains.
        assert ran_stages(log) == ["validate", "train", "evaluate", "explain"], task

    shown = dvc_json(repo, "exp", "show")
    exps = [exp for commit in shown for exp in commit["experiments"] or []]
    assert [exp["executor"]["state"] for exp in exps] == ["success", "success"]
    seen = set()
    for exp in exps:
        (rev,) = exp["revs"]
        seen.add(rev["data"]["params"]["params.yaml"]["data"]["train"]["learning_rate"])
        metrics = {path: m["data"] for path, m in rev["data"]["metrics"].items() if "data" in m}
        assert 0 <= metrics["metrics/evaluate.json"]["accuracy"] <= 1
        assert 1 <= metrics["metrics/train.json"]["best_epoch"] <= 2
    assert seen == set(RATES)
