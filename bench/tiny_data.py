"""Tiny data for the `--quick` benchmarks: the real synthesize, augment and prepare stage scripts
on the tests' tiny params (tests/tiny.yaml over params.yaml), in a folder of the caller's, so a
quick run needs no `dvc repro` first. Its numbers mean nothing; it shows that the code runs.
"""

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TINY = yaml.safe_load((ROOT / "tests" / "tiny.yaml").read_text())


def tiny_params() -> dict:
    """params.yaml with every section of tests/tiny.yaml merged over it."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in TINY.items():
        raw[section].update(values)
    return raw


def build(folder: Path) -> dict[str, Path]:
    """Write params.yaml and run synthesize, augment and prepare into `folder`; their paths."""
    paths = {name: folder / name for name in ("synthetic", "augmented", "prepared")}
    paths["params"] = folder / "params.yaml"
    paths["params"].write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    extra = folder / "side"
    extra.mkdir(exist_ok=True)
    commands = {
        "synthesize": ["--output", paths["synthetic"]],
        "augment": [
            *("--input", paths["synthetic"], "--output", paths["augmented"]),
            *("--preview", extra / "preview.png", "--classes", extra / "classes.csv"),
            *("--manifest", extra / "manifest.csv", "--report", extra / "data.json"),
        ],
        "prepare": ["--input", paths["augmented"], "--output", paths["prepared"]],
    }
    for stage, args in commands.items():
        cmd = [sys.executable, str(ROOT / "stages" / f"{stage}.py"), "--params", paths["params"]]
        done = subprocess.run([str(a) for a in cmd + args], capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"bench: tiny {stage} failed:\n{done.stdout}{done.stderr}")
    return paths
