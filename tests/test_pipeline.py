"""End to end: the real DVC pipeline on tiny params in a temporary git + DVC repo.

Proves what re-runs after each kind of change, that data stages are byte-reproducible, that
training is deterministic, that every stage declares exactly the params and modules it uses,
that metrics and plots compare across git branches, that DVC's run-cache restores stages, and
that a params typo stops the pipeline before it touches any output.
"""

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from dvc_repo import (
    STAGES,
    Repo,
    dvc,
    dvc_json,
    in_order,
    ran_stages,
    repro,
    run,
    set_params,
    status,
)

from blastcell import evaluate

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
        (
            {"augment__rotation_range": 30},
            ["augment", "prepare", "audit", "train", "evaluate", "explain"],
        ),
        ({"prepare__image_size": 40}, ["prepare", "audit", "train", "evaluate", "explain"]),
        ({"audit__min_inliers": 30}, ["audit"]),
        ({"copies__min_inliers": 30}, ["copies"]),  # the same groups: augment is up to date
        ({"model__dropout": 0.25}, ["train", "evaluate", "explain"]),
        ({"train__learning_rate": 0.001}, ["train", "evaluate", "explain"]),
        ({"train__warmup_epochs": 0}, ["train", "evaluate", "explain"]),
        ({"evaluate__batch_size": 8}, ["evaluate"]),
        ({"explain__per_class": 1}, ["explain"]),
        ({"cv__splits": 3}, []),  # read by cv/dvc.yaml only
    ],
)
def test_a_param_change_reruns_only_what_depends_on_it(repo, change, expected):
    assert repro(repo) == []
    set_params(repo, **change)
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
    for line in (repo.path.parent / "trace.jsonl").read_text().splitlines():
        entry = json.loads(line)
        slot = used.setdefault(entry["stage"], {"params": set(), "modules": set()})
        slot["params"] |= set(entry["params"])
        slot["modules"] |= set(entry["modules"])
    assert set(used) == set(STAGES)
    assert declared["validate"]["params"] == [{"params.yaml": None}]  # all of it, as a whole
    for stage in STAGES:
        spec = declared[stage]
        if stage != "validate":
            assert set(spec["params"]) == used[stage]["params"], stage
        src_deps = {d for d in spec["deps"] if d.startswith("src/")}
        assert src_deps == used[stage]["modules"], stage
        assert f"stages/{stage}.py" in spec["deps"]


def test_metrics_and_plots_compare_across_branches(repo):
    assert repro(repo) == []
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-q", "--allow-empty", "-m", "baseline")  # whatever ran before
    run(repo, "git", "checkout", "-q", "-b", "wider")
    set_params(repo, model__width=0.25)
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


def _write_subtype_set(folder: Path, per_class: int) -> None:
    """Four class folders of distinct 224x224 JPEGs whose colour depends on the class."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, name in enumerate(["Benign", "Early", "Pre", "Pro"]):
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            base = np.array([60 * k, 200 - 40 * k, 120], np.float32)
            noise = rng.normal(0, 25, (224, 224, 3))
            pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / name / f"{name.lower()}_{i:02d}.jpg")


def _exp_run_on(repo: Repo, folder: str) -> list[str]:
    dvc(repo, "add", "-q", folder)
    run(repo, "git", "add", f"{folder}.dvc", "data/.gitignore")
    run(repo, "git", "commit", "-q", "-m", f"add {folder}")
    return ran_stages(dvc(repo, "exp", "run", "-S", f"data.dir={folder}"))


def test_a_dvc_added_four_class_jpeg_folder_runs_end_to_end(repo):
    _write_subtype_set(repo / "data" / "subtypes", per_class=8)
    ran = _exp_run_on(repo, "data/subtypes")
    assert in_order(ran, [s for s in STAGES if s != "synthesize"])
    data = json.loads((repo / "reports/data.json").read_text())
    assert data["per_class"] == {"Benign": 8, "Early": 8, "Pre": 8, "Pro": 8}
    report = json.loads((repo / "reports/evaluate.json").read_text())
    assert {"Benign", "Early", "Pre", "Pro"} <= set(report)
    assert report["test_images"] == 8  # 2 originals of each class
    actual = {
        r["actual"] for r in json.loads((repo / "plots/evaluate/confusion.json").read_text())
    }
    assert actual == {"Benign", "Early", "Pre", "Pro"}
    manifest = (repo / "reports/data_manifest.csv").read_text().splitlines()
    assert manifest[0].startswith("path,class,status,width,height,file_sha256")
    assert manifest[1].startswith("Benign/benign_00.jpg,Benign,used,224,224,")


def test_a_dvc_added_all_idb2_folder_with_a_bad_file_skipped(repo):
    folder = repo / "data" / "ALL_IDB2"
    shutil.copytree(repo / "data" / "synthetic", folder)
    (folder / ".DS_Store").write_bytes(b"\0")
    (folder / "Im999_1.tif").write_bytes(b"")
    set_params(repo, data__on_bad_image="skip")
    ran = _exp_run_on(repo, "data/ALL_IDB2")
    # The same 24 images as data/synthetic: DVC's run cache may restore later stages instead.
    assert ran[:3] == ["validate", "copies", "augment"]
    assert "synthesize" not in ran
    data = json.loads((repo / "reports/data.json").read_text())
    assert data["skipped"] == 1
    assert data["images"] == 24
    assert "skipped" in dvc(repo, "metrics", "show", "reports/data.json")
    classes = (repo / "plots/augment/classes.csv").read_text().splitlines()
    assert classes == ["class,images,skipped", "not_blast,12,0", "blast,12,1"]


def test_an_external_test_set_runs_only_its_own_stage(repo):
    """Last in this module: it leaves an external set in params.yaml."""
    learned = json.loads((repo / "models/training_data.json").read_text())
    assert learned["synthetic"] is True  # the embedded cells, or a copy of them
    assert learned["classes"] == ["not_blast", "blast"]
    assert (
        learned["manifest_sha256"]
        == hashlib.sha256((repo / "reports/data_manifest.csv").read_bytes()).hexdigest()
    )
    assert repro(repo) == []
    lab_b = repo / "data" / "lab_b"
    lab_b.mkdir()
    for name in ["Im001_1", "Im002_1", "Im003_1", "Im013_0", "Im014_0", "Im015_0"]:
        shutil.copy(repo / "data" / "synthetic" / f"{name}.tif", lab_b / f"{name}.tif")
    set_params(repo, external__lab_b="data/lab_b")
    assert repro(repo) == ["validate", "external@lab_b"]
    headline = json.loads((repo / "metrics/external/lab_b.json").read_text())
    assert list(headline) == [k for k in evaluate.HEADLINE if k in headline]
    assert {"accuracy", "sensitivity", "specificity"} <= set(headline)
    report = json.loads((repo / "reports/external/lab_b.json").read_text())
    assert report["test_images"] == 6
    assert "metrics/external/lab_b.json" in dvc(repo, "metrics", "show")
    assert repro(repo) == []
    declared = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]["external"]["do"]
    (used,) = [
        json.loads(line)
        for line in (repo.path.parent / "trace.jsonl").read_text().splitlines()
        if json.loads(line)["stage"] == "external"
    ]
    assert set(declared["params"]) == set(used["params"])
    assert {d for d in declared["deps"] if d.startswith("src/")} == set(used["modules"])

    lab_c = repo / "data" / "lab_c"
    for name in ("blast", "mystery"):
        (lab_c / name).mkdir(parents=True)
        shutil.copy(lab_b / "Im001_1.tif", lab_c / name / "a.tif")
    set_params(repo, external__lab_c="data/lab_c")
    failed = subprocess.run(
        [sys.executable, "-m", "dvc", "repro"], cwd=repo.path, env=repo.env,
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert failed.returncode != 0
    assert "class 'mystery' is not one the model was trained on" in failed.stdout + failed.stderr
