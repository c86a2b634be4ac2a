"""Repeated splits (cv/dvc.yaml): the per-split rows and their summary, and the CV pipeline end
to end on two tiny splits beside the default pipeline, which it leaves alone."""

import json
import statistics

import numpy as np
import pytest
import yaml
from dvc_repo import ROOT, cv_trace, dvc, dvc_json, ran_stages, repro, set_params, status
from helpers import declared_params

from blastcell import cli, cv


def _reports(accuracy, near=0, auc=0.9):
    return {
        "evaluate": {"test_images": 10, "accuracy": accuracy, "roc_auc": auc, "ece": 0.05,
                     "sensitivity": 0.8, "specificity": 1.0, "ci95": {"accuracy": {"low": 0}}},
        "train": {"best_epoch": 7, "val_loss": 0.3},
        "audit": {"near_duplicates": near, "median_distance": 0.16, "min_inliers": 25},
    }  # fmt: skip


def test_a_split_row_keeps_the_headline_numbers_of_its_reports():
    row = cv.split_row(3, _reports(0.9, auc=float("nan")))
    assert list(row) == ["seed", *(name for name, _ in cv.COLUMNS)]
    assert row["seed"] == 3
    assert row["accuracy"] == 0.9
    assert row["best_epoch"] == 7
    assert row["near_duplicates"] == 0
    assert row["roc_auc"] is None  # NaN: undefined on that split
    assert row["balanced_accuracy"] is None  # absent from the report
    assert "ci95" not in row  # a split's own bootstrap interval is not a headline number


def test_summary_has_the_two_numbers_exp_show_compares():
    rows = [cv.split_row(s, _reports(a)) for s, a in [(1, 0.9), (2, 0.7), (3, 0.8)]]
    assert cv.summary(rows) == {
        "accuracy_mean": 0.8,
        "accuracy_sd": pytest.approx(statistics.stdev([0.9, 0.7, 0.8])),
    }
    assert cv.summary(rows[:1]) == {"accuracy_mean": 0.9}  # no sd of one split
    assert cv.stats([0.5]) == {"mean": 0.5, "std": None, "min": 0.5, "max": 0.5, "n": 1}
    assert cv.stats([])["n"] == 0
    with pytest.raises(ValueError, match="one or more splits"):
        cv.summary([])


def test_describe_prints_mean_sd_and_range_of_every_column(tmp_path, capsys):
    rows = [cv.split_row(s, _reports(a)) for s, a in [(1, 0.9), (2, 0.7)]]
    table = tmp_path / "splits.json"
    table.write_text(json.dumps(rows))
    assert cli.main(["cv", str(table)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "2 splits (mean ± sd, min to max)"
    assert "accuracy               0.800 ± 0.141  (0.700 to 0.900, n=2)" in out
    assert not any(line.startswith("balanced_accuracy") for line in out)  # no values


def test_models_in_turn_keep_tensorflows_retracing_warning_out_of_the_log(caplog):
    """The cv stage predicts with a new model per split; TensorFlow would call that retracing."""
    from blastcell.tf import keras, models_in_turn, tf

    x = np.zeros((4, 3), "float32")

    def predict_with_new_models() -> list[str]:
        caplog.clear()
        for _ in range(6):
            keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).predict(x, verbose=0)
        return [r.getMessage() for r in caplog.records if r.name == "tensorflow"]

    filters = list(tf.get_logger().filters)
    try:
        assert any("triggered tf.function retracing" in m for m in predict_with_new_models())
        models_in_turn()
        assert predict_with_new_models() == []
        tf.get_logger().warning("another warning")
        assert [r.getMessage() for r in caplog.records] == ["another warning"]
    finally:
        tf.get_logger().filters[:] = filters


@pytest.mark.slow
def test_two_repeated_splits_run_beside_the_default_pipeline(repo, tmp_path):
    """The session's built repo ran the default pipeline, then cv/dvc.yaml (conftest.py); that
    run ran only the cv stage (`dvc_repo.build_repo` checks it)."""
    trace = cv_trace(repo)
    assert repro(repo) == []  # the default pipeline does not read cv.*
    assert status(repo) == {}
    assert ran_stages(dvc(repo, "repro", "cv/dvc.yaml")) == []
    assert dvc_json(repo, "status") == {}  # now every pipeline is up to date
    assert not list((repo / "cv").glob(".cv-work.*"))  # no per-split scratch left behind
    assert sorted(p.name for p in (repo / "cv").iterdir()) == [
        "dvc.lock", "dvc.yaml", "metrics.json", "splits.json",
    ]  # fmt: skip

    rows = json.loads((repo / "cv/splits.json").read_text())
    assert [r["seed"] for r in rows] == [1, 2]
    assert all(r["test_images"] == 4 for r in rows)
    assert [r["near_duplicates"] for r in rows] == [0, 0]  # every split is by source cell
    assert rows[0]["median_distance"] != rows[1]["median_distance"]  # two different test sets
    summary = json.loads((repo / "cv/metrics.json").read_text())
    accuracies = [r["accuracy"] for r in rows]
    assert summary["accuracy_mean"] == pytest.approx(statistics.mean(accuracies), abs=1e-6)
    assert summary["accuracy_sd"] == pytest.approx(statistics.stdev(accuracies), abs=1e-6)
    assert "cv/metrics.json" in dvc(repo, "metrics", "show")
    dvc(repo, "plots", "show", "-o", str(tmp_path / "plots"))
    assert (
        "Test metrics per split (repeated splits)" in (tmp_path / "plots/index.html").read_text()
    )

    # The stage declares exactly what it and the four stage scripts it runs read and import.
    (declared,) = yaml.safe_load((repo / "cv/dvc.yaml").read_text())["stages"].values()
    used: dict[str, set[str]] = {"params": set(), "modules": set()}
    stages = set()
    for line in trace.read_text().splitlines():
        entry = json.loads(line)
        stages.add(entry["stage"])
        used["params"] |= set(entry["params"])
        used["modules"] |= set(entry["modules"])
    assert stages == {"cv", "prepare", "audit", "train", "evaluate"}
    assert declared_params(declared) == used["params"]
    assert {d for d in declared["deps"] if d.startswith("src/")} == used["modules"]
    root = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name in ("prepare", "audit", "train", "evaluate"):
        assert f"stages/{name}.py" in declared["deps"]
        assert declared_params(root[name]) <= declared_params(declared), name


@pytest.mark.slow
def test_fewer_splits_drop_their_rows_and_going_back_comes_from_the_run_cache(repo):
    before = {p: (repo / p).read_bytes() for p in ("cv/splits.json", "cv/metrics.json")}
    set_params(repo, "cv.splits=3")
    out = dvc(repo, "repro", "cv/dvc.yaml")
    assert ran_stages(out) == ["validate", "cv/dvc.yaml:cv"]
    assert [r["seed"] for r in json.loads((repo / "cv/splits.json").read_text())] == [1, 2, 3]
    set_params(repo, "cv.splits=2")
    out = dvc(repo, "repro", "cv/dvc.yaml")
    assert ran_stages(out) == []
    assert "Stage 'cv/dvc.yaml:cv' is cached - skipping run, checking out outputs" in out
    assert {p: (repo / p).read_bytes() for p in before} == before  # the third split is gone
