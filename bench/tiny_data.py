"""Tiny data for the `--quick` benchmarks: the real synthesize, augment and prepare stage scripts,
run in this process as their command lines would, on the tests' tiny params (tests/tiny.yaml
over params.yaml), in a folder of the caller's, so a quick run needs no `dvc repro` first. Its
numbers mean nothing; it shows that the code runs.
"""

import functools
from pathlib import Path

from pipeline_repo import ROOT, TINY

from blastcell import runner
from blastcell.params import write_overridden


def tiny_params(path: Path) -> Path:
    """Write params.yaml with tests/tiny.yaml's overrides to `path`; returns `path`."""
    return write_overridden(ROOT / "params.yaml", TINY, path)


def params_for(quick: bool, path: Path) -> Path:
    """Write params.yaml, with tests/tiny.yaml's overrides if `quick`, to `path`; returns it."""
    return tiny_params(path) if quick else write_overridden(ROOT / "params.yaml", [], path)


def build(folder: Path) -> dict[str, Path]:
    """Write params.yaml and run synthesize, augment and prepare into `folder`; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    params = tiny_params(folder / "params.yaml")
    synthetic = folder / "synthetic"
    run_stage("synthesize", params, "--output", synthetic)
    return {"synthetic": synthetic, **augment_and_prepare(folder, params, synthetic)}


def augment_and_prepare(folder: Path, params: Path, data: Path) -> dict[str, Path]:
    """Run the augment and prepare stage scripts on the data folder `data` into `folder`; the
    paths of params and of the augmented and prepared folders."""
    paths = {name: folder / name for name in ("augmented", "prepared")}
    augmented(params, data, paths["augmented"], folder / "side")
    run_stage("prepare", params, "--input", paths["augmented"], "--output", paths["prepared"])
    return {"params": params, **paths}


def augmented(params: Path, data: Path, out: Path, side: Path) -> Path:
    """Run the copies and augment stage scripts on the data folder `data`, as dvc.yaml chains
    them: the augmented folder `out`; the other outputs go to `side`."""
    side.mkdir(parents=True, exist_ok=True)
    run_stage(
        "copies",
        params,
        *("--input", data, "--output", side / "copies", "--metrics", side / "copies.json"),
        *("--report", side / "copies_report.json", "--gallery", side / "copies.png"),
    )
    run_stage(
        "augment",
        params,
        *("--input", data, "--copies", side / "copies"),
        *("--output", out, "--preview", side / "preview.png"),
        *("--classes", side / "classes.csv", "--manifest", side / "manifest.csv"),
        *("--report", side / "data.json"),
    )
    return out


def run_stage(stage: str, params: Path, *args: object) -> None:
    """Run stages/<stage>.py with `params` and `args` in this process, as its command line would
    (`runner.run_stage`: the stage's `run`, its line unprinted); SystemExit with its one-line
    error if it fails."""
    try:
        runner.run_stage(_stage(stage), ["--params", params, *args], "bench: tiny")
    except runner.StageFailed as err:
        raise SystemExit(str(err)) from err


@functools.cache
def _stage(stage: str) -> runner.Stage:
    return runner.stage_module(ROOT / "stages" / f"{stage}.py").run
