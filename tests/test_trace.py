"""Each stage declares in dvc.yaml exactly the params keys it reads and the library modules it
imports, so a change re-runs what depends on it and nothing else (the fast tier's check).

Params: every stage's command of dvc.yaml runs in this process, in the order its deps and outs
give, on the tiny params in a temporary folder, with $BLASTCELL_TRACE set: each stage records
the keys it read. Modules: the blastcell modules a stage script imports, and those modules
import, at any depth (inside functions too), read from the source. The slow tier checks the same
on the trace of a real `dvc repro` (tests/test_pipeline.py), where each stage is its own process.
"""

import ast
import json
import re
import shlex
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, SMALL, declared_params, run_stage, write_params

from blastcell import instrument

PIPELINE = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
CV = yaml.safe_load((ROOT / "cv" / "dvc.yaml").read_text())["stages"]["cv"]
SRC = ROOT / "src"


def module_file(name: str) -> Path | None:
    """The source file of the blastcell module `name`, if it is one."""
    path = SRC / Path(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported(path: Path, package: str) -> set[str]:
    """The blastcell modules that the file `path` (of `package`) imports anywhere, and their
    parent packages."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            names.add(base)
            names |= {f"{base}.{a.name}" for a in node.names if module_file(f"{base}.{a.name}")}
    ours = {n for n in names if n.split(".")[0] == "blastcell"}
    return {".".join(n.split(".")[:i]) for n in ours for i in range(1, n.count(".") + 2)}


def modules_of(*scripts: Path) -> set[str]:
    """The library modules the scripts can import, at any depth, as dvc.yaml names them."""
    seen: set[str] = set()
    todo = [name for script in scripts for name in imported(script, "")]
    while todo:
        name = todo.pop()
        if name in seen or (path := module_file(name)) is None:
            continue
        seen.add(name)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        todo += imported(path, package)
    return {module_file(name).relative_to(ROOT).as_posix() for name in seen}


def source_deps(stage: dict) -> set[str]:
    return {d for d in stage["deps"] if d.startswith("src/")}


@pytest.mark.parametrize("name", list(PIPELINE))
def test_each_stage_declares_exactly_the_modules_it_imports(name):
    stage = PIPELINE[name].get("do", PIPELINE[name])  # external: a foreach template
    assert f"stages/{name}.py" in stage["deps"]
    assert source_deps(stage) == modules_of(ROOT / "stages" / f"{name}.py"), name


def test_the_repeated_splits_declare_the_modules_of_the_stages_they_run():
    scripts = [d for d in CV["deps"] if d.startswith("stages/")]
    assert sorted(scripts) == [
        f"stages/{n}.py" for n in ("audit", "cv", "evaluate", "prepare", "train")
    ]
    assert source_deps(CV) == modules_of(*(ROOT / s for s in scripts))


def test_the_repeated_splits_declare_the_params_of_the_stages_they_run():
    """The cv stage runs prepare, audit, train and evaluate on each split: it depends on every
    param they read (and on cv.splits, which it reads itself)."""
    runs = set().union(
        *(declared_params(PIPELINE[n]) for n in ("prepare", "audit", "train", "evaluate"))
    )
    assert declared_params(CV) == runs | {"cv.splits"}


def in_run_order(stages: dict) -> list[str]:
    """The stages in an order their deps and outs allow (each after the stages it reads)."""

    def paths(stage: dict, kinds: tuple[str, ...]) -> set[str]:
        return {
            next(iter(p)) if isinstance(p, dict) else p for k in kinds for p in stage.get(k, [])
        }

    outs = {name: paths(s, ("outs", "metrics", "plots")) for name, s in stages.items()}
    order: list[str] = []
    while len(order) < len(stages):
        ready = [
            name
            for name, stage in stages.items()
            if name not in order
            and all(
                dep not in outs[other] or other in order
                for dep in stage["deps"]
                for other in stages
                if other != name
            )
        ]
        assert ready, f"no stage can run after {order}"
        order.append(ready[0])
    return order


@pytest.fixture(scope="module")
def reads(tmp_path_factory) -> dict[str, set[str]]:
    """The params keys each stage of dvc.yaml read, running its command in this process."""
    import keras

    folder = tmp_path_factory.mktemp("traced")
    quicker = [*SMALL, "copies.workers=1", "train.precision=float32"]
    write_params(folder / "params.yaml", *quicker, tiny=True)
    settings = yaml.safe_load((folder / "params.yaml").read_text())
    trace = folder / "trace.jsonl"
    stages = {n: s for n, s in PIPELINE.items() if "foreach" not in s}  # external: none set
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv(instrument.TRACE_ENV, str(trace))
        try:
            for name in in_run_order(stages):
                cmd = re.sub(
                    r"\$\{(\w+)\.(\w+)\}", lambda m: str(settings[m[1]][m[2]]), stages[name]["cmd"]
                )
                python, script, *argv = shlex.split(cmd)
                assert (python, script) == ("python", f"stages/{name}.py")
                run_stage(name, argv)
        finally:
            keras.mixed_precision.set_global_policy("float32")
    found: dict[str, set[str]] = {}
    for line in trace.read_text().splitlines():
        entry = json.loads(line)
        found.setdefault(entry["stage"], set()).update(entry["params"])
    return found


@pytest.mark.parametrize("name", [n for n in PIPELINE if "foreach" not in PIPELINE[n]])
def test_each_stage_declares_exactly_the_params_it_reads(reads, name):
    if name == "validate":  # it reads all of params.yaml, and DVC tracks the file as a whole
        assert PIPELINE[name]["params"] == [{"params.yaml": None}]
        assert name in reads
    else:
        assert declared_params(PIPELINE[name]) == reads[name], name
