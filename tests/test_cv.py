"""Repeated splits (cv/dvc.yaml): the aggregation of reports, and the CV pipeline end to end on
two tiny splits beside the default pipeline, which it leaves alone."""

import json
import statistics

import pytest
import yaml
from dvc_repo import ROOT, add_cv, dvc, dvc_json, ran_stages, repro, status

from blastcell import aggregate
from blastcell.data import read_csv


def test_summarize_recurses_into_every_numeric_leaf():
    reports = [
        {"accuracy": 0.9, "blast": {"recall": 0.8, "support": 10}, "ci": [0.7, 0.95], "x": "a"},
        {"accuracy": 0.7, "blast": {"recall": 1.0, "support": 10}, "ci": [0.5, 0.85], "auc": 0.9},
        {"accuracy": 0.8, "blast": {"recall": 0.9, "support": 10}, "ci": [0.6, 0.9], "ok": True},
    ]
    summary = aggregate.summarize(reports)
    assert summary["accuracy"] == {"mean": 0.8, "std": 0.1, "min": 0.7, "max": 0.9, "n": 3}
    assert summary["blast"]["recall"]["mean"] == pytest.approx(0.9)
    assert summary["blast"]["recall"]["std"] == pytest.approx(statistics.stdev([0.8, 1.0, 0.9]))
    assert summary["blast"]["support"] == {"mean": 10, "std": 0, "min": 10, "max": 10, "n": 3}
    assert summary["ci"]["1"]["max"] == 0.95
    assert summary["auc"] == {"mean": 0.9, "std": None, "min": 0.9, "max": 0.9, "n": 1}
    assert "x" not in summary  # text
    assert "ok" not in summary  # booleans are not numbers here
    assert list(summary) == ["accuracy", "blast", "ci", "auc"]
    assert list(aggregate.summarize(reports, skip=["ci", "blast"])) == ["accuracy", "auc"]


def test_summarize_skips_non_finite_values_and_rejects_clashing_shapes():
    summary = aggregate.summarize([{"auc": float("nan")}, {"auc": 0.5}, {"auc": None}])
    assert summary["auc"]["n"] == 1
    with pytest.raises(ValueError, match="'auc' is a number in one report and an object"):
        aggregate.summarize([{"auc": 0.5}, {"auc": {"low": 0.4}}])
    with pytest.raises(ValueError, match="one or more reports"):
        aggregate.summarize([])


def test_table_has_a_row_per_split_and_a_column_per_headline_metric_present():
    reports = [
        {"test_images": 10, "accuracy": 0.9, "roc_auc": None, "ece": 0.1, "note": "x"},
        {"test_images": 10, "accuracy": 0.8, "roc_auc": 0.7, "ece": float("nan")},
    ]
    header, rows = aggregate.table(reports, [4, 9])
    assert header == ["seed", "test_images", "accuracy", "roc_auc", "ece"]  # HEADLINE's order
    assert rows == [[4, 10, 0.9, "", 0.1], [9, 10, 0.8, 0.7, ""]]
    with pytest.raises(ValueError, match="2 reports for 1 seeds"):
        aggregate.table(reports, [4])


@pytest.mark.slow
def test_two_repeated_splits_run_and_aggregate_beside_the_default_pipeline(repo, tmp_path):
    assert repro(repo) == []
    trace = tmp_path / "trace.jsonl"
    ran = add_cv(repo, [3, 7], env={**repo.env, "BLASTCELL_TRACE": str(trace)})
    per_split = [
        f"{stage}@{seed}" for stage in ("prepare", "audit", "train", "evaluate") for seed in (3, 7)
    ]
    assert sorted(ran) == sorted(f"cv/dvc.yaml:{s}" for s in [*per_split, "aggregate"])
    assert ran[-1] == "cv/dvc.yaml:aggregate"
    assert repro(repo) == []  # the default pipeline does not read cv.*
    assert status(repo) == {}
    assert ran_stages(dvc(repo, "repro", "cv/dvc.yaml")) == []
    assert dvc_json(repo, "status") == {}  # now every pipeline is up to date

    splits = repo / "cv/metrics/splits"
    tests = [json.loads((splits / f"split_{s}/evaluate.json").read_text()) for s in [3, 7]]
    for s in [3, 7]:
        assert (repo / f"cv/models/split_{s}/model.keras").is_file()
        assert (repo / f"cv/plots/split_{s}/train/plots/metrics/eval/loss.tsv").is_file()
        assert (repo / f"cv/plots/split_{s}/evaluate/roc.json").is_file()
    test_sets = [(repo / f"cv/data/split_{s}/test.csv").read_text() for s in [3, 7]]
    assert test_sets[0] != test_sets[1]  # two different splits of the same cells
    summary = json.loads((repo / "cv/metrics/summary.json").read_text())
    accuracies = [t["accuracy"] for t in tests]
    assert summary["splits"] == 2
    assert summary["accuracy"]["n"] == 2
    assert summary["accuracy"]["mean"] == pytest.approx(statistics.mean(accuracies), abs=1e-6)
    assert summary["accuracy"]["std"] == pytest.approx(statistics.stdev(accuracies), abs=1e-6)
    assert summary["accuracy"]["min"] == min(accuracies)
    assert summary["sensitivity"]["n"] == summary["blast"]["f1"]["n"] == 2
    assert not {"ci95", "bootstrap"} & set(summary)  # per-split intervals are left out
    audits = [json.loads((splits / f"split_{s}/audit.json").read_text()) for s in [3, 7]]
    assert [a["near_duplicates"] for a in audits] == [0, 0]  # every split is by source cell
    assert summary["audit"]["source_in_train"]["max"] == 0
    assert summary["audit"]["test_images"]["n"] == 2
    rows = read_csv(repo / "cv/plots/splits.csv")
    assert [int(r["seed"]) for r in rows] == [3, 7]
    assert [float(r["accuracy"]) for r in rows] == accuracies
    assert [r["near_duplicates"] for r in rows] == ["0", "0"]
    assert "cv/metrics/summary.json" in dvc(repo, "metrics", "show")
    dvc(repo, "plots", "show", "-o", str(repo / "plots_out"))
    page = (repo / "plots_out" / "index.html").read_text()
    assert "Test metrics per split (repeated splits)" in page

    declared = yaml.safe_load((repo / "cv/dvc.yaml").read_text())["stages"]
    root = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    used: dict[str, dict[str, set[str]]] = {}
    for line in trace.read_text().splitlines():
        entry = json.loads(line)
        slot = used.setdefault(entry["stage"], {"params": set(), "modules": set()})
        slot["params"] |= set(entry["params"])
        slot["modules"] |= set(entry["modules"])
    assert set(used) == {"prepare", "audit", "train", "evaluate", "aggregate"}
    for stage, spec in declared.items():
        spec = spec.get("do", spec)
        assert set(spec["params"]) == used[stage]["params"], stage
        assert {d for d in spec["deps"] if d.startswith("src/")} == used[stage]["modules"], stage
        if stage in root:  # the same script as the default pipeline's stage, the same inputs
            assert set(spec["params"]) <= set(root[stage]["params"]), stage
            root_src = {d for d in root[stage]["deps"] if d.startswith("src/")}
            assert root_src == used[stage]["modules"], stage
    assert "base.seed" not in used["prepare"]["params"]  # --split-seed replaces it
