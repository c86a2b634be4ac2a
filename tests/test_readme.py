"""The README's figures come from the committed results: its results table from `metrics/` and
`cv/`; the `dvc exp show` examples of docs/experiments.md from the metrics files' keys, in the
order DVC shows them."""

import json
import re
from pathlib import Path

import pytest
import yaml

from blastcell import cv, model, params

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
EXPERIMENTS = (ROOT / "docs" / "experiments.md").read_text(encoding="utf-8")
PARAMETERS = (ROOT / "docs" / "parameters.md").read_text(encoding="utf-8")
DASH = "\u2013"  # the en dash of the README's ranges
AUDIT = "leakage audit: scored images with a verified copy in training"
COPIES = "copies found before the split (`metrics/copies.json`)"
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
METRICS = [  # in the order `dvc exp show` shows them: dvc.yaml's stages, then cv/dvc.yaml's
    "metrics/train.json",
    "metrics/evaluate.json",
    "metrics/audit.json",
    "metrics/copies.json",
    "cv/metrics.json",
]
OWN_DATA = (ROOT / "docs" / "your-own-data.md").read_text(encoding="utf-8")
BENCH = json.loads((ROOT / "bench" / "results.json").read_text())


def load(path: str):
    return json.loads((ROOT / path).read_text())


def results_table() -> dict[str, list[str]]:
    """The rows of the table under "Results of the committed run", by their first cell."""
    section = README.split("## Results of the committed run", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    return {row[0]: row[1:] for row in cells[1:]}


def code_blocks_after(marker: str, page: str = EXPERIMENTS) -> list[str]:
    """The plain (unlabelled) code blocks of the section of `page` that holds `marker`."""
    start = page.index(marker)
    section = page[start:].split("\n## ", 1)[0]
    return re.findall(r"^```\n(.*?)^```", section, flags=re.S | re.M)


def header(block: str) -> list[str]:
    return next(line for line in block.splitlines() if "Experiment" in line).split()


def test_the_results_table_holds_the_committed_default_run():
    train, test, audit = (load(p) for p in METRICS[:3])
    table = results_table()
    default = {name: cells[0] for name, cells in table.items()}
    assert default["accuracy"].startswith(f"**{test['accuracy']:.3f}**")
    assert f"CI {test['accuracy_low']:.3f}{DASH}{test['accuracy_high']:.3f}" in default["accuracy"]
    assert default["sensitivity (blast recall)"].startswith(f"{test['sensitivity']:.3f}, CI")
    assert default["specificity"].startswith(f"{test['specificity']:.3f}, CI")
    assert default["ROC AUC"].startswith(f"{test['roc_auc']:.3f}, CI")
    assert default["expected calibration error (10 bins)"] == f"{test['ece']:.3f}"
    assert PARAMS["evaluate"]["calibration_bins"] == 10
    losses = load("plots/train/loss.json")  # a row per epoch and split, in git
    best = f"{train['best_epoch']} of {max(row['epoch'] for row in losses)} run"
    assert default["best epoch (validation loss)"].startswith(best)
    assert f"of {PARAMS['train']['epochs']} planned" in default["best epoch (validation loss)"]
    audited = default[AUDIT]
    assert audited.startswith(f"**{audit['near_duplicates']} of 52**")
    copies = load("metrics/copies.json")  # in git; reports/ is DVC's (not in a clean checkout)
    assert PARAMS["data"]["dir"] == "data/synthetic"
    n = PARAMS["synthesize"]["n_blast"] + PARAMS["synthesize"]["n_not_blast"]
    assert default[COPIES] == f"**{copies['copy_groups']} groups** among the {n} source images"
    settings = params.load(ROOT / "params.yaml")
    net = model.build(settings.model, settings.prepare.image_size, 2)
    assert f"({net.count_params():,} parameters)" in README
    m, size = settings.model, settings.prepare.image_size
    assert (m.architecture, m.weights) == ("seed_cnn", "none")
    assert default["model"] == (
        f"the seed CNN (`model.architecture: seed_cnn`) at width {m.width}, {size}\u00d7{size} "
        f"input, from random weights ({net.count_params():,} parameters)"
    )
    assert table["model"][1:] == ["the same", "the same"]


def test_the_results_table_names_the_committed_training_recipe():
    model, train = PARAMS["model"], PARAMS["train"]
    recipe = results_table()["training recipe"][0]
    assert f"(`input_scaling: {model['input_scaling']}`)" in recipe
    assert f"Adam at {train['learning_rate']:g} on a {train['schedule']} schedule" in recipe
    assert f"after {train['warmup_epochs']} warm-up epoch" in recipe
    stopping = f"early stopping (patience {train['patience']})"
    assert f"{train['epochs']} epochs at most, {stopping}" in recipe
    assert not model["batch_norm"]
    assert train["label_smoothing"] == 0


@pytest.mark.parametrize(
    ("row", "name"),
    [
        ("accuracy", "accuracy"),
        ("sensitivity (blast recall)", "sensitivity"),
        ("specificity", "specificity"),
        ("ROC AUC", "roc_auc"),
        ("average precision", "average_precision"),
        ("expected calibration error (10 bins)", "ece"),
    ],
)
def test_the_results_table_holds_the_committed_repeated_splits(row, name):
    splits = load("cv/splits.json")
    assert len(splits) == PARAMS["cv"]["splits"] == 10  # "10 repeated leak-free splits"
    s = cv.stats(cv.column(splits, name))
    expected = f"{s['mean']:.3f} ± {s['std']:.3f} ({s['min']:.3f}{DASH}{s['max']:.3f})"
    assert results_table()[row][2] == expected
    if name == "accuracy":  # what `dvc metrics show` prints for the same run
        summary = load("cv/metrics.json")
        assert (summary["accuracy_mean"], summary["accuracy_sd"]) == (s["mean"], s["std"])


def test_the_results_table_holds_the_repeated_splits_epochs_and_audit():
    splits = load("cv/splits.json")
    table = results_table()
    s = cv.stats(cv.column(splits, "best_epoch"))
    best = f"{s['mean']:.0f} ± {s['std']:.0f} ({s['min']:.0f}{DASH}{s['max']:.0f})"
    assert table["best epoch (validation loss)"][2] == best
    assert all(row["near_duplicates"] == 0 for row in splits)
    assert table[AUDIT][2] == "**0 of 52** in every split"


def test_the_metrics_files_are_those_the_pipelines_declare_in_their_order():
    declared = []
    for pipeline in ("dvc.yaml", "cv/dvc.yaml"):
        stages = yaml.safe_load((ROOT / pipeline).read_text())["stages"]
        for stage in stages.values():
            if "foreach" in stage or "matrix" in stage:  # external: one per set, none by default
                continue
            for entry in stage.get("metrics", []):
                path = next(iter(entry)) if isinstance(entry, dict) else entry
                declared.append(path)  # relative to the repo root (cv/dvc.yaml: wdir ..)
    assert declared == METRICS


def test_the_exp_show_examples_show_the_metrics_in_dvcs_order():
    headline = [key for path in METRICS for key in load(path)]
    assert len(headline) <= 20
    assert f"worth comparing, {len(headline)} in all" in " ".join(EXPERIMENTS.split())
    plain, changed = code_blocks_after("plain `dvc exp show` in a 200-column terminal")[:2]
    shown = header(plain)
    assert shown[:2] == ["Experiment", "Created"]
    visible = [c for c in shown[2:] if c in headline]
    assert visible == headline[: len(visible)], shown
    assert len(visible) >= 10, shown
    assert all(len(line) <= 201 for line in plain.splitlines())  # 200 columns, and less's ">"

    only = header(changed)
    assert only[:2] == ["Experiment", "Created"]
    metrics = [c for c in only[2:] if c in headline]
    assert metrics == [k for k in headline if k in metrics]  # DVC's order, unchanged ones left out
    assert not [c for c in only if "/" in c]  # --drop '.*/' takes the hash columns away
    assert only[-1] == "prepare.split"
    assert max(len(line) for line in changed.splitlines()) <= 200


def test_the_audit_figures_come_from_the_committed_benchmark():
    results = json.loads((ROOT / "bench" / "results.json").read_text())
    source = (
        f"flagged {results['audit_synthetic_source_flagged_pct']:g} % of test images on the "
        "synthetic\ncells and "
        f"{results['audit_photograph_source_flagged_pct']:g} % on crops of a real photograph"
    )
    leaked = (
        f"{results['audit_synthetic_random_copies_flagged_pct']:g} % and "
        f"{results['audit_photograph_random_copies_flagged_pct']:g} % of the test images"
    )
    assert source in README
    assert leaked in README


def test_the_time_to_accuracy_figures_come_from_the_committed_benchmark():
    results = json.loads((ROOT / "bench" / "results.json").read_text())
    detail = results["time_to_accuracy_detail"]
    assert not detail["quick"]
    flat, page = " ".join(README.split()), " ".join(PARAMETERS.split())
    default, four = detail["default_data"], detail["four_class"]
    times = "\N{MULTIPLICATION SIGN}"
    assert f"its best **{results['time_to_accuracy_ratio']:.2f}{times}** sooner" in flat
    assert f"and {four['ratio']:.2f}{times} sooner on a harder 4-class set" in flat
    for r in (default, four):
        ours, seeds = r["default"], r["seed"]
        assert ours["test_accuracy"] > seeds["test_accuracy"]  # "to a higher test accuracy"
        epochs = f"after {ours['epochs_to_accuracy']} epochs against the seed's "
        assert f"{epochs}{seeds['epochs_to_accuracy']} ({r['ratio']:.2f}{times} sooner" in page
        scores = f"{ours['test_accuracy']:.3f} against {seeds['test_accuracy']:.3f}"
        assert scores in page


def test_the_parameters_page_holds_the_committed_repeated_splits():
    s = cv.stats(cv.column(load("cv/splits.json"), "accuracy"))
    expected = f"{s['mean']:.3f} ± {s['std']:.3f} ({s['min']:.3f} to {s['max']:.3f})"
    page = " ".join(PARAMETERS.split())
    assert f"over {PARAMS['train']['epochs']} epochs gives {expected}" in page


def minutes(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 60} min {whole % 60} s" if whole >= 60 else f"{whole} s"


def test_the_copies_figures_come_from_the_committed_benchmark():
    p, a = BENCH["copies_photograph"], BENCH["copies_photograph_audit"]
    assert not BENCH["runs"]["copies"]["quick"]
    grouped = (
        f"grouped {p['planted_grouped']} of {p['planted_pairs']} planted copy pairs "
        f"({BENCH['copies_planted_grouped_pct']:g} %) and put {p['alone_grouped']} of "
        f"{p['alone']} images without a copy into any group "
        f"({BENCH['copies_alone_grouped_pct']:g} %)"
    )
    big = BENCH["copies_scale"]["16x"]
    scaled = f"{big['sources']:,} sources of 224 px took {minutes(big['seconds'])} on 2 cores"
    readme, own = " ".join(README.split()), " ".join(OWN_DATA.split())
    assert grouped in readme
    assert grouped in own
    assert scaled in readme
    per_source = [run["pairs_verified"] / run["sources"] for run in BENCH["copies_scale"].values()]
    times = "\N{MULTIPLICATION SIGN}"
    verified = f"({per_source[0]:.1f} at 1{times}, {per_source[-1]:.1f} at 16{times})"
    assert verified in own
    assert f"{p['layouts']} layouts of {p['images']} images in all" in own
    assert f"covered {100 * p['overlay_share_of_image']:.1f} % of the image" in own
    audited = (
        f"flagged {a['source']['flagged_without_copy']} of {a['source']['test_images']} test "
        f"images ({BENCH['copies_audit_source_flagged_pct']:g} %) with the source split, and "
        f"found {a['random']['flagged_with_copy']} of {a['random']['with_copy_in_train']} test "
        f"images with a copy in training ({BENCH['copies_audit_random_found_pct']:g} %) with the "
        "random split"
    )
    assert audited in own
    assert audited in " ".join(PARAMETERS.split())
    rates = [
        f"{run['sources']:,} in {minutes(run['seconds'])} ({run['sources_per_s']:.1f} per second, "
        f"{run['peak_mb']:,.0f} MiB)"
        for run in BENCH["copies_scale"].values()
    ]
    assert ", ".join(rates) in own
    px = BENCH["copies_pixels"]
    small, large = px.values()
    memory = (
        f"{small['sources']} sources at 224 px peaked at {small['peak_mb']:,.0f} MiB, "
        f"at 896 px at {large['peak_mb']:,.0f} MiB"
    )
    assert list(px) == ["224px", "896px"]
    assert memory in own
