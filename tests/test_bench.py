"""The benchmarks cannot rot: `bench/run.py --quick` runs every one of them (one test each), and
the table of figures in docs/performance.md is exactly what `bench/run.py --table` makes of the
committed full run."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from blastcell import backbones, params

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import run as bench  # noqa: E402  (bench/run.py)
from online_augmentation import online_overrides  # noqa: E402

COMMITTED = json.loads((ROOT / "bench" / "results.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("name", list(bench.BENCHMARKS))
def test_the_quick_run_of_each_benchmark_measures_its_figures_quietly(name, tmp_path):
    """`bench/run.py --quick --only NAME`: one test per benchmark, so the workers share them."""
    out = tmp_path / "results.json"
    cmd = [sys.executable, "bench/run.py", "--quick", "--only", name, "--output", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    text = done.stdout + done.stderr
    assert done.returncode == 0, text[-4000:]
    results = json.loads(out.read_text())
    assert set(results["runs"]) == {name}
    assert results["runs"][name]["quick"]
    assert [key for key in (*bench.REQUIRED[name], "machine") if key not in results] == []
    figures = ("_images_per_s", "_ratio", "_mb", "_s")
    rates = [
        key for key, v in results.items() if key.endswith(figures) and not isinstance(v, dict)
    ]
    assert all(results[key] > 0 for key in rates), {key: results[key] for key in rates}
    if name == "augment":
        assert results["augment_outputs_identical"] is True
    for noise in ("cuInit", "cuda drivers", "oneDNN", "Traceback"):
        assert noise not in text


def test_every_benchmark_has_its_required_figures():
    assert set(bench.REQUIRED) == set(bench.BENCHMARKS)
    assert all(bench.REQUIRED.values())
    required = [key for keys in bench.REQUIRED.values() for key in keys]
    assert [key for key in [*required, "machine"] if key not in COMMITTED] == []


def test_the_table_refuses_quick_or_partial_results():
    runs = COMMITTED["runs"]
    quick = {**COMMITTED, "runs": {**runs, "audit": {**runs["audit"], "quick": True}}}
    with pytest.raises(SystemExit, match="quick"):
        bench.table(quick)
    partial = {**COMMITTED, "runs": {k: v for k, v in runs.items() if k != "audit"}}
    with pytest.raises(SystemExit, match="not run: \\['audit'\\]"):
        bench.table(partial)


def test_the_performance_page_holds_the_table_of_the_committed_full_run():
    page = (ROOT / "docs" / "performance.md").read_text(encoding="utf-8")
    assert bench.table(COMMITTED) in page


def test_the_performance_page_gives_the_committed_runs_length():
    page = " ".join((ROOT / "docs" / "performance.md").read_text(encoding="utf-8").split())
    minutes = sum(run["seconds"] for run in COMMITTED["runs"].values()) / 60
    said = re.search(r"writes `bench/results.json` \(about (\d+) minutes here", page)
    assert said, "docs/performance.md no longer says how long the suite takes"
    assert abs(int(said.group(1)) - minutes) <= 0.1 * minutes


def test_the_performance_page_says_what_the_committed_online_augmentation_run_shows():
    """docs/parameters.md's reading of it: equal within a test image or two on both sets."""
    detail = COMMITTED["online_augmentation_detail"]
    page = " ".join((ROOT / "docs" / "parameters.md").read_text(encoding="utf-8").split())
    assert "within one test image of each other on both sets" in page
    # the page's command is the benchmark's online way on params.yaml
    command = " -S ".join(["dvc exp run", *online_overrides(ROOT / "params.yaml")])
    assert command in page
    for name in ("two_class", "four_class"):
        r = detail[name]
        test_images = r["copies"]["test_images"]
        assert r["online"]["test_images"] == test_images  # the same test originals
        assert abs(r["test_accuracy_gain"]) * test_images <= 1 + 1e-9, name


def test_the_performance_page_says_what_the_committed_backbone_run_shows():
    """docs/performance.md's reading of the backbone rows, checked against the committed run."""
    detail = COMMITTED["backbones_detail"]
    measured = [name for name in detail if isinstance(detail[name], dict) and name != "seed_cnn"]
    page = " ".join((ROOT / "docs" / "performance.md").read_text(encoding="utf-8").split())
    assert "the seed CNN trains the most images per second at both sizes" in page
    for size in ("128", "224"):
        best = {
            n: max(r["train_images_per_s"] for r in detail[n][size].values())
            for n in detail
            if isinstance(detail[n], dict)
        }
        assert max(best, key=best.get) == "seed_cnn"
    assert "Of the backbones MobileNetV3-Small is the fastest" in page
    assert COMMITTED["backbones_fastest"] == "mobilenet_v3_small"
    assert "slows its training down" in page
    assert "speeds up the seed CNN's and ResNet50V2's" in page
    assert "`train.precision: auto` picks mixed bfloat16 for the seed CNN, AlexNet" in page
    for name in detail:
        if not isinstance(detail[name], dict):
            continue
        faster = {  # whether mixed bfloat16 trains faster than float32, at each size
            runs["mixed_bfloat16"]["train_images_per_s"] > runs["float32"]["train_images_per_s"]
            for runs in detail[name].values()
        }
        assert len(faster) == 1, f"{name}: bfloat16 faster at one size, slower at the other"
        # auto's choice on such a CPU is the measured one (the seed CNN's: bench/precision.py)
        chosen = backbones.BACKBONES[name].cpu_bfloat16 if name != "seed_cnn" else True
        assert faster == {chosen}, name
    assert measured == list(params.BACKBONES)  # the committed run measured every one
