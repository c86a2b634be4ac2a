"""Helpers of the test modules: the stage scripts run in-process, their arguments on tiny data,
and params files written with the library's own override (`blastcell.params.write_overridden`),
the tiny ones from tests/tiny.yaml (the tiny pipeline repo's and `bench/run.py --quick`'s too).
"""

from pathlib import Path

import numpy as np
from pipeline_repo import ROOT, TINY

from blastcell import augmented, copied, keypoints, params, prepared, runner

# Smaller than the tiny params, for in-process runs of the data stages: 12 cells of 48 px, one
# augmented copy each
SMALL = [
    "synthesize.n_blast=6",
    "synthesize.n_not_blast=6",
    "synthesize.image_size=48",
    "augment.copies=1",
]


def write_params(path: Path, *overrides: str, tiny: bool = False) -> Path:
    """params.yaml with `section.key=value` overrides (over the tiny params of tests/tiny.yaml
    first if `tiny`), written to `path`; returns `path`."""
    items = [*(TINY if tiny else []), *overrides]
    return params.write_overridden(ROOT / "params.yaml", items, path)


def section_keys(section: str) -> list[str]:
    """Every key that src/blastcell/params.py declares in a section of params.yaml."""
    model = params.Params.model_fields[section].annotation
    return [f"{section}.{key}" for key in model.model_fields]


def declared_params(stage: dict) -> set[str]:
    """A stage's `params:` as keys: `all of params.yaml` for a whole-file entry, and a section's
    keys for a section's name (DVC then tracks the whole section)."""
    keys = set()
    for entry in stage.get("params", []):
        if isinstance(entry, str):
            keys |= set(section_keys(entry)) if "." not in entry else {entry}
        else:  # {file: None} tracks every key of the file; {file: [keys]} those keys
            for file, listed in entry.items():
                keys |= {f"all of {file}"} if listed is None else set(listed)
    return keys


def edit_params(path: Path, *overrides: str) -> None:
    """Change a params file in place: `section.key=value` items, as `dvc exp run -S` takes."""
    params.write_overridden(path, overrides)


def stage(name: str):
    """Import stages/<name>.py as a module."""
    return runner.stage_module(ROOT / "stages" / f"{name}.py")


def run_stage(name: str, argv: list[str]) -> str:
    """Run stages/<name>.py in this process as its command line would; its summary line."""
    return runner.invoke(stage(name).run, argv)


def no_copies(folder: Path) -> Path:
    """A copies folder that says no source image is a copy of another (and no overlay): for
    tests of augment alone; `run_data_stages` runs the copies stage itself."""
    found = folder / "copies"
    if not found.exists():
        found.mkdir(parents=True)
        copied.write(found, [], np.zeros((keypoints.WORK_SIZE,) * 2, bool))
    return found


def copies_args(data: Path, folder: Path) -> list[str]:
    """The copies stage's arguments, reading `data` and writing below `folder`."""
    return [
        "--input",
        str(data),
        "--output",
        str(folder / "copies"),
        "--metrics",
        str(folder / "copies_metrics.json"),
        "--report",
        str(folder / "copies_report.json"),
        "--gallery",
        str(folder / "copies_gallery.png"),
    ]


def augment_args(data: Path, folder: Path) -> list[str]:
    """The augment stage's arguments, reading `data` and `folder`'s copies folder (`no_copies`
    unless the copies stage wrote one) and writing below `folder`."""
    return [
        "--input",
        str(data),
        "--copies",
        str(no_copies(folder)),
        "--output",
        str(folder / "augmented"),
        "--preview",
        str(folder / "p.png"),
        "--manifest",
        str(folder / "manifest.csv"),
        "--report",
        str(folder / "data_report.json"),
        "--classes",
        str(folder / "classes.csv"),
    ]


def run_source_stages(folder: Path, params: Path) -> Path:
    """Run synthesize, copies and augment into `folder`; return augment's output."""
    synth = folder / "synthetic"
    run_stage("synthesize", ["--params", str(params), "--output", str(synth)])
    run_stage("copies", ["--params", str(params), *copies_args(synth, folder)])
    run_stage("augment", ["--params", str(params), *augment_args(synth, folder)])
    return folder / "augmented"


def run_prepare(folder: Path, params: Path, aug: Path) -> Path:
    """Run prepare on augment's output `aug`, into `folder`; return its output."""
    prep = folder / "prepared"
    run_stage("prepare", ["--params", str(params), "--input", str(aug), "--output", str(prep)])
    return prep


def run_data_stages(folder: Path, params: Path) -> tuple[Path, Path]:
    """Run synthesize, copies, augment and prepare into `folder`; return the last two's
    outputs."""
    aug = run_source_stages(folder, params)
    return aug, run_prepare(folder, params, aug)


def sources(table: Path) -> set[str]:
    """The source images named in a prepare stage CSV."""
    return {row.split(",")[1] for row in table.read_text().split()[1:]}


def contents(*folders: Path) -> dict[str, bytes]:
    return {f"{p.parent.name}/{p.name}": p.read_bytes() for f in folders for p in f.iterdir()}


def random_prepared(folder: Path, size: int = 32) -> Path:
    """A prepared folder of random images (24 train, 8 val, 8 test), as prepare writes it."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    counts = {"train": 24, "val": 8, "test": 8}
    for split, n in counts.items():
        pixels = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
        prepared.write_shards(folder, split, zip(pixels, np.arange(n) % 2, strict=True), n, 10)
    source = augmented.Source("data/random", False, "0" * 64, 40, "stretch")
    prepared.write_spec(folder, size, ["not_blast", "blast"], counts, source)
    return folder
