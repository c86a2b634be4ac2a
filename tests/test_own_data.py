"""End to end on data a user adds: the real DVC pipeline (tiny params) in a temporary git + DVC
repo, run on a `dvc add`ed four-class JPEG folder and on an ALL-IDB2-style folder with a bad file
(`dvc exp run -S data.dir=...`), and on an external test set that runs only its own stage.
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
from dvc_repo import STAGES, Repo, copy_repo, dvc, in_order, ran_stages, repro, run, set_params
from helpers import declared_params

from blastcell import evaluate

pytestmark = pytest.mark.slow


@pytest.fixture
def repo(built_repo, tmp_path) -> Repo:
    """A copy of the built repo for each test: each one changes `data.dir` or `external`."""
    return copy_repo(built_repo, tmp_path / "repo")


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
    set_params(repo, "data.on_bad_image=skip")
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
    set_params(repo, "external.lab_b=data/lab_b")
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
        for line in repo.trace.read_text().splitlines()
        if json.loads(line)["stage"] == "external"
    ]
    assert {p.replace("${key}", "lab_b") for p in declared_params(declared)} == set(used["params"])
    assert {d for d in declared["deps"] if d.startswith("src/")} == set(used["modules"])

    lab_c = repo / "data" / "lab_c"
    for name in ("blast", "mystery"):
        (lab_c / name).mkdir(parents=True)
        shutil.copy(lab_b / "Im001_1.tif", lab_c / name / "a.tif")
    set_params(repo, "external.lab_c=data/lab_c")
    failed = subprocess.run(
        [sys.executable, "-m", "dvc", "repro"], cwd=repo.path, env=repo.env,
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert failed.returncode != 0
    assert "class 'mystery' is not one the model was trained on" in failed.stdout + failed.stderr


def test_folder_names_that_a_shell_would_run_are_only_paths(repo):
    """data.dir and an external set's folder full of shell syntax, spaces, quotes and a leading
    '-': DVC runs the stages on them as paths, and no command in them runs."""
    awkward = "-cells $(touch PWNED) ; `touch PWNED` 'q' \"d\""
    shutil.copytree(repo / "data" / "synthetic", repo / f"{awkward} b")
    set_params(repo, f"external.lab_b={json.dumps(awkward + ' b')}")
    assert repro(repo) == ["validate", "external@lab_b"]
    assert json.loads((repo / "reports/external/lab_b.json").read_text())["test_images"] == 24
    shutil.copytree(repo / "data" / "synthetic", repo / awkward)
    set_params(repo, f"data.dir={json.dumps(awkward)}")
    assert repro(repo, "augment") == ["validate", "copies", "augment"]
    assert json.loads((repo / "reports/data.json").read_text())["images"] == 24
    assert not list(repo.path.parent.rglob("PWNED*"))
