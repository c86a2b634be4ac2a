"""The benchmarks cannot rot: `bench/run.py --quick` runs every one of them, and the table of
figures in docs/performance.md is exactly what `bench/run.py --table` makes of the committed
full run."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import run as bench  # noqa: E402  (bench/run.py)

COMMITTED = json.loads((ROOT / "bench" / "results.json").read_text())


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> tuple[dict, str]:
    """One `bench/run.py --quick` into a temporary results file: (results, its output)."""
    out = tmp_path_factory.mktemp("bench") / "results.json"
    cmd = [sys.executable, "bench/run.py", "--quick", "--output", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    text = done.stdout + done.stderr
    assert done.returncode == 0, text[-4000:]
    return json.loads(out.read_text()), text


@pytest.mark.slow
def test_quick_runs_every_benchmark_and_measures_every_required_figure(quick):
    results, _ = quick
    assert set(results["runs"]) == set(bench.BENCHMARKS)
    assert all(run["quick"] for run in results["runs"].values())
    assert [key for key in bench.REQUIRED if key not in results] == []
    figures = ("_images_per_s", "_ratio", "_mb", "_s")
    rates = [
        key for key, v in results.items() if key.endswith(figures) and not isinstance(v, dict)
    ]
    assert len(rates) > 10
    assert all(results[key] > 0 for key in rates), {key: results[key] for key in rates}
    assert results["augment_outputs_identical"] is True


@pytest.mark.slow
def test_quick_run_is_quiet(quick):
    _, text = quick
    for noise in ("cuInit", "cuda drivers", "oneDNN", "Traceback"):
        assert noise not in text


@pytest.mark.slow
def test_the_table_refuses_quick_or_partial_results(quick):
    results, _ = quick
    with pytest.raises(SystemExit, match="quick"):
        bench.table(results)
    partial = {**COMMITTED, "runs": {k: v for k, v in COMMITTED["runs"].items() if k != "audit"}}
    with pytest.raises(SystemExit, match="not run: \\['audit'\\]"):
        bench.table(partial)


def test_the_performance_page_holds_the_table_of_the_committed_full_run():
    page = (ROOT / "docs" / "performance.md").read_text(encoding="utf-8")
    assert bench.table(COMMITTED) in page
