"""End to end: the real DVC pipeline on tiny params in a temporary git + DVC repo.

Proves what re-runs after each kind of change, that data stages are byte-reproducible, that
training is deterministic, that every stage declares exactly the params and modules it uses,
and that metrics and plots compare across git branches. Data a user adds: test_own_data.py.
"""

import json

import pytest
import yaml
from dvc_repo import (
    STAGES,
    Repo,
    dvc,
    dvc_json,
    in_order,
    repro,
    run,
    set_params,
    status,
)
from helpers import declared_params

DATA_STAGES = ["validate", "synthesize", "copies", "augment", "prepare"]

pytestmark = pytest.mark.slow


def out_hashes(repo: Repo, stages: list[str]) -> dict[str, list[str]]:
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    return {s: [o["md5"] for o in lock[s]["outs"]] for s in stages}


def test_first_run_is_complete_and_a_rerun_does_nothing(repo):
    assert status(repo) == {}
    assert repro(repo) == []
    for path in [
        "data/params.ok",
        "metrics/train.json",
        "metrics/evaluate.json",
        "metrics/audit.json",
        "reports/data_manifest.csv",
        "reports/data.json",
        "reports/train.json",
        "reports/evaluate.json",
        "reports/audit.json",
        "plots/audit/nearest.csv",
        "plots/synthesize/preview.png",
        "models/model.keras",
        "models/classes.json",
        "plots/evaluate/confusion.json",
        "plots/evaluate/confusion_matrix.png",
        "plots/evaluate/confusion_matrix_normalised.png",
        "plots/evaluate/roc.json",
        "plots/evaluate/precision_recall.json",
        "plots/evaluate/reliability.json",
        "plots/evaluate/reliability.png",
        "plots/augment/preview.png",
        "plots/augment/classes.csv",
        "plots/train/loss.json",
        "plots/train/accuracy.json",
        "plots/explain/misclassified.png",
        "plots/explain/gradcam.png",
    ]:
        assert (repo / path).is_file(), path
    report = json.loads((repo / "reports/evaluate.json").read_text())
    assert report["test_images"] == 4  # 2 originals per class: 20 % of 12 sources, rounded
    assert set(report) >= {"accuracy", "blast", "not_blast", "macro_avg", "weighted_avg"}
    assert set(report) >= {"positive_class", "sensitivity", "specificity", "roc_auc", "ci95"}
    headline = json.loads((repo / "metrics/evaluate.json").read_text())
    assert headline["accuracy"] == report["accuracy"]
    assert headline["accuracy_low"] == report["ci95"]["accuracy"]["low"]
    audit = json.loads((repo / "reports/audit.json").read_text())
    assert audit["test_images"] == 4
    assert audit["source_in_train"] == audit["near_duplicates"] == 0  # the source split is clean
    assert json.loads((repo / "metrics/audit.json").read_text()) == {"near_duplicates": 0}
    loss = json.loads((repo / "plots/train/loss.json").read_text())
    assert [(r["epoch"], r["split"]) for r in loss] == [
        (1, "train"), (1, "validation"), (2, "train"), (2, "validation"),
    ]  # fmt: skip
    train = json.loads((repo / "metrics/train.json").read_text())
    assert 1 <= train["best_epoch"] <= 2  # 1-based, like the epochs of the curves
    best = min((r for r in loss if r["split"] == "validation"), key=lambda r: r["loss"])
    assert train["best_epoch"] == best["epoch"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        # augment.rotation_range and model.dropout: tests/test_workflow.py, which changes them
        # back too (one repro each, not two)
        (["prepare.image_size=40"], ["prepare", "audit", "train", "evaluate", "explain"]),
        (["audit.min_inliers=30"], ["audit"]),
        (["copies.min_inliers=30"], ["copies"]),  # the same groups: augment is up to date
        (["train.learning_rate=0.001"], ["train", "evaluate", "explain"]),
        (["train.warmup_epochs=0"], ["train", "evaluate", "explain"]),
        (["evaluate.batch_size=8"], ["evaluate"]),
        (["explain.per_class=1"], ["explain"]),
        (["cv.splits=3"], []),  # read by cv/dvc.yaml only
    ],
)
def test_a_param_change_reruns_only_what_depends_on_it(repo, change, expected):
    assert repro(repo) == []
    set_params(repo, *change)
    # validate checks every edit of params.yaml; its output does not change, so it re-runs
    # nothing by itself.
    assert in_order(repro(repo), ["validate", *expected])
    assert repro(repo) == []


def test_forced_data_stages_reproduce_identical_hashes(repo):
    before = out_hashes(repo, DATA_STAGES)
    assert repro(repo, "-f", "prepare") == DATA_STAGES
    assert out_hashes(repo, DATA_STAGES) == before
    assert repro(repo) == []  # identical data: training is not invalidated


def test_training_twice_gives_the_same_metrics_and_model_bytes(repo):
    paths = ["metrics/train.json", "reports/evaluate.json", "models/model.keras"]
    before = {p: (repo / p).read_bytes() for p in paths}
    lock = (repo / "dvc.lock").read_text()
    assert repro(repo, "-f", "-s", "train") == ["train"]
    assert repro(repo) == []  # the same model bytes: evaluate and explain are up to date
    assert repro(repo, "-f", "-s", "evaluate") == ["evaluate"]
    assert {p: (repo / p).read_bytes() for p in paths} == before
    assert (repo / "dvc.lock").read_text() == lock


def test_stages_declare_exactly_the_params_and_modules_they_use(repo):
    declared = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    used: dict[str, dict[str, set[str]]] = {}
    for line in repo.trace.read_text().splitlines():
        entry = json.loads(line)
        slot = used.setdefault(entry["stage"], {"params": set(), "modules": set()})
        slot["params"] |= set(entry["params"])
        slot["modules"] |= set(entry["modules"])
    assert set(used) == set(STAGES)
    assert declared["validate"]["params"] == [{"params.yaml": None}]  # all of it, as a whole
    for stage in STAGES:
        spec = declared[stage]
        if stage != "validate":
            assert declared_params(spec) == used[stage]["params"], stage
        src_deps = {d for d in spec["deps"] if d.startswith("src/")}
        assert src_deps == used[stage]["modules"], stage
        assert f"stages/{stage}.py" in spec["deps"]


def test_metrics_and_plots_compare_across_branches(repo):
    assert repro(repo) == []
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-q", "--allow-empty", "-m", "baseline")  # whatever ran before
    run(repo, "git", "checkout", "-q", "-b", "wider")
    set_params(repo, "model.width=0.25")
    assert in_order(repro(repo), ["validate", "train", "evaluate", "explain"])
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-q", "-m", "wider model")

    diff = dvc_json(repo, "metrics", "diff", "--all", "main", "wider")
    for path, key in [("metrics/train.json", "best_epoch"), ("metrics/evaluate.json", "ece")]:
        assert {"old", "new"} <= set(diff[path][key])  # both revisions' values, side by side

    html = repo.path.parent / "plots_html"
    dvc(repo, "plots", "diff", "main", "wider", "-o", str(html))
    page = (html / "index.html").read_text()
    assert "<script src=" not in page  # the committed offline template: no CDN
    for title in [
        "Loss per epoch",
        "Accuracy per epoch",
        "Confusion matrix (test)",
        "ROC curve (test)",
        "Precision-recall curve (test)",
        "Reliability diagram (test)",
        "Images per class (used)",
        "Leakage audit, each test image's best match in training",
        "confusion_matrix.png",
        "confusion_matrix_normalised.png",
        "preview.png",
        "misclassified.png",
        "gradcam.png",
    ]:
        assert title in page, title
    run(repo, "git", "checkout", "-q", "main")
    dvc(repo, "checkout", "-q")
    assert status(repo) == {}
