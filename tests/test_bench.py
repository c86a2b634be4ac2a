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
CHANCE = 1 / 4  # the 4-class set of bench/backbone_accuracy.py


def prose(page: str) -> str:
    """The page (a path from the repository root) with its line breaks and runs of spaces as
    single spaces, so a sentence reads the same wherever the lines wrap."""
    return " ".join((ROOT / page).read_text(encoding="utf-8").split())


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
    page = prose("docs/performance.md")
    minutes = sum(run["seconds"] for run in COMMITTED["runs"].values()) / 60
    said = re.search(r"writes `bench/results.json` \(about (\d+) minutes here", page)
    assert said, "docs/performance.md no longer says how long the suite takes"
    assert abs(int(said.group(1)) - minutes) <= 0.1 * minutes


def test_the_performance_page_says_what_the_committed_online_augmentation_run_shows():
    """docs/parameters.md's reading of it: equal within a test image or two on both sets."""
    detail = COMMITTED["online_augmentation_detail"]
    page = prose("docs/parameters.md")
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
    page = prose("docs/performance.md")
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


def backbone_reading(detail: dict) -> dict:
    """What docs/performance.md and the README read in the committed bench/backbone_accuracy.py
    run: each backbone against the seed CNN at the same size, from random weights."""
    test_images = detail["test_images"]
    seed = detail["seed_cnn"]
    trained, stuck = [], []
    for name in params.BACKBONES:
        for size, run in detail[name].items():
            (trained if run["test_accuracy"] > CHANCE + 1e-9 else stuck).append((name, size, run))
    above, ratios, seconds = [], [], []
    for _, size, run in trained:
        base = seed[size]
        assert run["test_accuracy"] > base["test_accuracy"]  # "scored above the seed CNN"
        # the intervals overlap
        assert run["test_accuracy_ci95"][0] <= base["test_accuracy_ci95"][1]
        above.append(round((run["test_accuracy"] - base["test_accuracy"]) * test_images))
        ratios.append(run["train_seconds"] / base["train_seconds"])
        seconds.append(run["train_seconds"])
    return {
        "stuck": [(name, size) for name, size, _ in stuck],
        "stuck_runs": [run for *_, run in stuck],
        "most_images_above": max(above),
        "test_images": test_images,
        "ratios": (round(min(ratios)), round(max(ratios))),
        "shortest_s": min(seconds),
        "minutes": (round(min(seconds) / 60), round(max(seconds) / 60)),
        "seed_seconds": {size: round(run["train_seconds"]) for size, run in seed.items()},
    }


def test_the_pages_say_what_the_committed_backbone_accuracy_run_shows():
    detail = COMMITTED["backbone_accuracy_detail"]
    assert [n for n in detail if isinstance(detail[n], dict)] == ["seed_cnn", *params.BACKBONES]
    r = backbone_reading(detail)
    (low, high), (fast, slow) = r["ratios"], r["minutes"]
    page = prose("docs/performance.md")
    said = (
        f"Every backbone that left chance scored above the seed CNN at the same size, by at most "
        f"{r['most_images_above']} of {r['test_images']} test images (within the intervals), in "
        f"{low} to {high} times its training time ({fast} to {slow} minutes here, against the "
        f"seed CNN's {r['seed_seconds']['128']} s at 128 px and {r['seed_seconds']['224']} s at "
        "224 px)."
    )
    assert said in page
    assert "None that left chance trained within the default run's 5 minutes" in page
    assert r["shortest_s"] > 5 * 60
    # the one that did not: MobileNetV3-Small at 128 px, ended by early stopping at chance
    assert r["stuck"] == [("mobilenet_v3_small", "128")]
    (run,) = r["stuck_runs"]
    left = next(i for i, a in enumerate(run["val_accuracy"], 1) if a > CHANCE + 1e-9)
    patience = params.load(ROOT / "params.yaml").train.patience
    assert (run["stop_reason"], run["best_epoch"]) == ("patience", 1)
    reached = detail["mobilenet_v3_small"]["224"]["test_accuracy"]
    said = (
        f"MobileNetV3-Small at 128 px stayed at chance: its validation accuracy left chance only "
        f"at epoch {left}, when early stopping (patience {patience}, on validation loss, still "
        f"best at epoch 1) ended the run; at 224 px it reached {reached:.3f}."
    )
    assert said in page
    parameters = prose("docs/parameters.md")
    said = f"scored above the seed CNN, within the intervals, at {low} to {high} times"
    assert said in parameters
    readme = prose("README.md")
    assert (
        f"scored at most {r['most_images_above']} test images of {r['test_images']} above it, "
        f"within the intervals, in {low} to {high} times its training time, none within the "
        "default run's 5 minutes"
    ) in readme


def test_the_pages_say_what_the_committed_warm_start_run_shows():
    """docs/performance.md's and docs/parameters.md's reading of bench/warm_start.py's run."""
    detail = COMMITTED["warm_start_detail"]
    seed, net = detail["seed_cnn"], detail["efficientnet_v2_b0"]
    n = seed["scratch"]["test_images"]
    for runs in (seed, net):
        assert runs["warm"]["test_accuracy"] > runs["scratch"]["test_accuracy"]
    gained = round((seed["warm"]["test_accuracy"] - seed["scratch"]["test_accuracy"]) * n)
    frozen, faster = net["warm_frozen"], net["warm_frozen_faster"]
    warm = [net["warm"], frozen, faster]
    apart = round(
        (max(r["test_accuracy"] for r in warm) - min(r["test_accuracy"] for r in warm)) * n
    )
    assert net["scratch"]["test_accuracy"] == 0.5  # chance, 2 classes
    assert net["scratch"]["stop_reason"] == "patience"
    page = prose("docs/performance.md")
    said = (
        f"the seed CNN scored {seed['warm']['test_accuracy']:.3f} against "
        f"{seed['scratch']['test_accuracy']:.3f} ({gained} more of {n} test images) and came "
        f"within 1 point of its best validation accuracy in {seed['warm']['epochs_to_accuracy']} "
        f"epochs instead of {seed['scratch']['epochs_to_accuracy']}; EfficientNetV2-B0 scored "
        f"{net['warm']['test_accuracy']:.3f} where from random weights it stayed at chance "
        f"({net['scratch']['test_accuracy']:.3f}) until early stopping ended it."
    )
    assert said in page
    recipe = (
        f"it scored {frozen['test_accuracy']:.3f} at `train.fine_tune_learning_rate`'s default "
        f"and {faster['test_accuracy']:.3f} at 10 times it: within {apart} test images of the "
        "warm start without freezing"
    )
    assert recipe in page
    assert frozen["params"][1:] == ["train.frozen_epochs=5"]
    default = params.load(ROOT / "params.yaml").train.fine_tune_learning_rate
    assert faster["params"][2:] == [f"train.fine_tune_learning_rate={default * 10:g}"]
    parameters = prose("docs/parameters.md")
    said = (
        f"With 5 frozen epochs it scored {frozen['test_accuracy']:.3f} at the default "
        f"`train.fine_tune_learning_rate` and {faster['test_accuracy']:.3f} at 10 times it, "
        f"against {net['warm']['test_accuracy']:.3f} with no frozen epochs and "
        f"{net['scratch']['test_accuracy']:.3f} from random weights"
    )
    assert said in parameters
    assert f"The three warm starts are within {apart} of {n} test images" in parameters
