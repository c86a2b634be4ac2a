"""The everyday DVC workflow on the real pipeline (tiny params), as docs/experiments.md teaches it.

A params typo stops `dvc repro` and `dvc exp run` with one line before any output is touched;
reverting a param restores every affected stage from DVC's run-cache; `dvc exp run -S` changes
one line of params.yaml; `dvc exp show`, `dvc metrics show`, `dvc metrics diff` and `dvc dag`
are readable in a 200-column terminal; `dvc exp apply` and `dvc checkout` work; the model is a
DVC artifact.
"""

import hashlib
import json
import subprocess
import sys

import pytest
import yaml
from dvc_repo import (
    Repo,
    assert_quiet,
    dvc,
    dvc_json,
    in_order,
    in_terminal,
    ran_stages,
    repro,
    run,
    set_params,
    status,
)

from blastcell import evaluate

pytestmark = pytest.mark.slow

# What a failed run must leave as it was.
RESULTS = [
    "models/model.keras",
    "metrics/train.json",
    "metrics/evaluate.json",
    "reports/evaluate.json",
    "plots/train/loss.json",
    "plots/evaluate/roc.json",
    "data/prepared/spec.json",
]
# The first metric columns of `dvc exp show`, in order: train's, then evaluate's headline.
HEADLINE = ["best_epoch", *evaluate.HEADLINE]


def snapshot(repo: Repo) -> dict[str, bytes]:
    return {path: (repo / path).read_bytes() for path in RESULTS}


def failing(repo: Repo, *args: str) -> str:
    """A DVC command that must fail; its output."""
    result = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=repo.path, env=repo.env, capture_output=True,
        text=True, check=False,
    )  # fmt: skip
    assert result.returncode != 0, result.stdout + result.stderr
    return result.stdout + result.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("train.epoch=5", "unknown key 'train.epoch' (did you mean"),
        ("trian={epochs: 5}", "unknown section 'trian' (did you mean"),
        ("train.epochs=many", "'train.epochs' must be an integer"),
        ("model.dropout=1.5", "'model.dropout' must be a number in [0, 1)"),
    ],
)
@pytest.mark.parametrize("command", [("repro",), ("exp", "run")])
def test_a_params_error_stops_dvc_before_any_output_is_touched(repo, change, message, command):
    assert repro(repo) == []
    before = snapshot(repo)
    set_params(repo, change)
    out = failing(repo, *command)
    ours = [line for line in out.splitlines() if line.startswith("validate: ")]
    assert len(ours) == 1, out
    assert ours[0].startswith("validate: params: "), out
    assert message in ours[0], out
    assert "Traceback" not in out
    assert "Running stage 'validate'" in out
    assert [s for s in ran_stages(out) if s != "validate"] == []
    assert snapshot(repo) == before  # the last good model, metrics and plots are all there

    run(repo, "git", "checkout", "-q", "params.yaml")
    out = dvc(repo, "repro")
    assert ran_stages(out) == []
    assert "Stage 'validate' is cached - skipping run, checking out outputs" in out
    assert status(repo) == {}


@pytest.mark.parametrize(
    ("key", "value", "rerun"),
    [
        ("model.dropout", "0.4", ["train", "evaluate", "explain"]),
        (
            "augment.rotation_range",
            "30",
            ["augment", "prepare", "audit", "train", "evaluate", "explain"],
        ),
    ],
)
def test_a_param_change_reruns_what_depends_on_it_and_reverting_it_restores_it(
    repo, key, value, rerun
):
    """The change re-runs exactly the stages that read the param and those downstream whose
    inputs change (tests/test_pipeline.py has the other params); going back restores every one
    of them from the run-cache."""
    assert repro(repo) == []
    before = snapshot(repo)
    section, name = key.split(".")
    old = yaml.safe_load((repo / "params.yaml").read_text())[section][name]
    set_params(repo, f"{key}={value}")
    # validate checks every edit of params.yaml; its output does not change, so it re-runs
    # nothing by itself.
    assert in_order(repro(repo), ["validate", *rerun])
    assert repro(repo) == []
    set_params(repo, f"{key}={old}")
    out = dvc(repo, "repro")
    assert ran_stages(out) == []  # nothing runs again
    for stage in ["validate", *rerun]:
        assert f"Stage '{stage}' is cached - skipping run, checking out outputs" in out, stage
    assert snapshot(repo) == before
    run(repo, "git", "checkout", "-q", "params.yaml")
    assert status(repo) == {}


def test_an_experiment_changes_one_line_and_compares_in_a_readable_table(repo):
    """The experiment trades the seed CNN for a backbone (from random weights), the change a
    user tries first: evaluate and explain (Grad-CAM) run on it, and the table reads the same."""
    assert repro(repo) == []
    trained = json.loads((repo / "reports/train.json").read_text())
    out = dvc(repo, "exp", "run", "-S", "model.architecture=mobilenet_v3_small")
    assert ran_stages(out) == ["validate", "train", "evaluate", "explain"]
    backbone = json.loads((repo / "reports/train.json").read_text())
    # MobileNetV3-Small's 0.96 M parameters against the tiny seed CNN's 15 k
    assert backbone["parameter_count"] > 10 * trained["parameter_count"]
    diff = run(repo, "git", "diff", "--unified=0", "params.yaml").splitlines()
    changed = [line for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert [(line[0], line[1:].split("#")[0].strip()) for line in changed] == [
        ("-", "architecture: seed_cnn"),
        ("+", "architecture: mobilenet_v3_small"),
    ]

    # Plain `dvc exp show`: the headline metrics first, at most 20 metric columns in all.
    shown = dvc_json(repo, "exp", "show")
    metrics = {
        f"{path}:{key}"
        for commit in shown
        for rev in [commit, *(e["revs"][0] for e in commit["experiments"] or [])]
        for path, data in rev["data"]["metrics"].items()
        for key in data.get("data", {})
    }
    assert len(metrics) <= 20, sorted(metrics)
    header = run(repo, sys.executable, "-m", "dvc", "exp", "show", "--csv", stdout_only=True)
    columns = header.splitlines()[0].split(",")
    table = [c for c in columns if c not in ("rev", "typ", "parent")]  # not in the table view
    assert table[:2] == ["Experiment", "Created"]
    assert table[2 : 2 + len(HEADLINE)] == HEADLINE  # within the first dozen columns

    # --only-changed: the experiment, what changed, all of it in 200 columns.
    only = run(repo, sys.executable, "-m", "dvc", "exp", "show", "--csv", "--only-changed",
               stdout_only=True).splitlines()[0].split(",")  # fmt: skip
    assert len([c for c in only if c not in ("rev", "typ", "parent")]) <= 30, only
    assert "model.architecture" in only
    for drop in [(), ("--drop", ".*/")]:  # the docs' form leaves out the hash columns too
        screen = in_terminal(repo, sys.executable, "-m", "dvc", "exp", "show", "--no-pager",
                             "--only-changed", *drop)  # fmt: skip
        lines = [line.rstrip() for line in screen.splitlines() if line.strip()]
        assert max(len(line) for line in lines) <= 200, screen
        assert "…" not in screen, screen  # no column squeezed out
        for name in ["Experiment", "Created", "model.architecture", "mobilenet_v3_small", "ece"]:
            assert name in screen
        assert ("models/model.keras" in screen) == (not drop), screen

    for args in [("metrics", "show"), ("metrics", "diff", "HEAD"), ("dag",)]:
        screen = in_terminal(repo, sys.executable, "-m", "dvc", *args)
        widest = max(len(line.rstrip()) for line in screen.splitlines())
        assert widest <= 200, (args, screen)
        for noise in ["…", "WARNING", "ERROR", "failed"]:
            assert noise not in screen, (args, screen)

    (exp,) = [e for c in shown for e in c["experiments"] or []]
    name = exp["name"]
    out = dvc(repo, "exp", "apply", name)
    assert_quiet(out)
    assert json.loads((repo / "metrics/train.json").read_text())["best_epoch"] >= 1
    assert status(repo) == {}
    assert_quiet(dvc(repo, "checkout"))
    run(repo, "git", "checkout", "-q", "--", ".")  # back to the committed run
    assert_quiet(dvc(repo, "checkout"))
    assert status(repo) == {}


# The registry tools' view, through DVC's Python API in a process of its own (in a test worker's
# process, DVC's API leaves pytest's captured output closed for the tests after it).
REGISTRY = """
import hashlib, json, dvc.api
found = dvc.api.artifacts_show("blast-classifier", repo=".")
with dvc.api.open(found["path"], repo=".", rev=found["rev"], mode="rb") as f:
    found["sha256"] = hashlib.sha256(f.read()).hexdigest()
print(json.dumps(found))
"""


def test_the_model_is_a_dvc_artifact_the_registry_tools_find(repo):
    declared = yaml.safe_load((repo / "dvc.yaml").read_text())["artifacts"]["blast-classifier"]
    assert declared["type"] == "model"
    # Registering a version is a git tag in GTO's format (what `gto register` or DVC Studio do).
    run(repo, "git", "tag", "-a", "blast-classifier@v0.1.0", "-m", "register the model")
    found = json.loads(run(repo, sys.executable, "-c", REGISTRY, stdout_only=True))
    assert found == {
        "rev": run(repo, "git", "rev-parse", "HEAD").strip(),
        "path": "models/model.keras",
        "sha256": hashlib.sha256((repo / "models/model.keras").read_bytes()).hexdigest(),
    }
