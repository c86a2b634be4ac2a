"""Benchmark: the whole DVC pipeline's end-to-end time, overhead, memory, 10x scaling, inference.

    python bench/pipeline.py [--quick] [--keep DIR]

Treats the stages as black boxes: copies the pipeline (dvc.yaml, params.yaml, stages/, src/)
into temporary git + DVC repos, runs `dvc repro` there and reads what each stage appends to
$BLASTCELL_TRACE (its peak resident set size and that of its largest child process).

1. End to end: `dvc repro` of params.yaml from an empty cache (a fresh `dvc init`), wall time;
   per stage, the time from DVC's "Running stage" line to the next one (or to the end): the
   command plus DVC hashing and caching its outputs.
2. Overhead on that repo once run: a no-op `dvc repro` (checked to run no stage) and
   `dvc status`, median of 3 each.
3. Memory of each stage in that run: max(stage process, largest child process) peak RSS, both
   also reported. A child forked from a big process (git run by DVCLive, say) counts the parent's
   pages until it execs, so a child's peak near the stage's own is no separate memory.
4. 10x: a second repo with 10x the synthetic images (n_blast and n_not_blast x 10) and
   train.epochs=1 (peak memory does not grow with epochs); its memory, overhead and images.
5. Inference with the first run's trained model on the synthetic originals: batch throughput
   and single-image latency in this process, and the `blastcell predict` command's wall time.

--quick runs everything on tiny params (24 images of 64 px, 2 epochs) to try the benchmark out
in a minute or two; its numbers mean little. --keep DIR keeps the repos there. It prints a table
and then the results as JSON; it asserts only that the pipeline ran.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from machine import describe, summary

ROOT = Path(__file__).resolve().parents[1]
# The default pipeline's stages, as dvc.yaml lists them (external: one per set, none by default)
STAGES = [s for s in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"] if s != "external"]
SCALE = 10
REPEATS = 3  # no-op repro and status: median of this many
QUICK = yaml.safe_load((ROOT / "tests" / "tiny.yaml").read_text())  # the tests' tiny params
PREDICT_BATCH = 100
TAIL_LINES = 40
RUNNING = re.compile(r"Running stage '([\w@-]+)'")

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class BenchError(RuntimeError):
    """A command of the benchmark failed or did something unexpected; the message shows why."""


@dataclass
class Repo:
    """A temporary git + DVC repo holding a copy of the pipeline, and how to run in it."""

    path: Path
    env: dict[str, str]
    trace: Path


def _tail(text: str) -> str:
    return "\n".join(text.rstrip().splitlines()[-TAIL_LINES:])


def _fail(cmd: tuple[str, ...], why: str, output: str) -> BenchError:
    return BenchError(
        f"`{' '.join(cmd)}` {why}; last {TAIL_LINES} lines of its output:\n{_tail(output)}"
    )


def run(repo: Repo, *cmd: str) -> tuple[float, str, str]:
    """Run a command in the repo: (seconds, stdout, stderr); raise with its tail on failure."""
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=repo.path, env=repo.env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise _fail(cmd, f"failed (exit {result.returncode})", result.stdout + result.stderr)
    return seconds, result.stdout, result.stderr


def repro(repo: Repo) -> tuple[float, dict[str, float]]:
    """`dvc repro`: wall seconds and seconds per stage run, from DVC's "Running stage" lines."""
    cmd = ("dvc", "repro")
    start = time.perf_counter()
    marks: list[tuple[str, float]] = []
    lines: list[str] = []
    with subprocess.Popen(
        cmd,
        cwd=repo.path,
        env=repo.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if match := RUNNING.search(line):
                marks.append((match.group(1), time.perf_counter()))
    end = time.perf_counter()
    output = "".join(lines)
    if proc.returncode != 0:
        raise _fail(cmd, f"failed (exit {proc.returncode}) in {repo.path}", output)
    ran = [stage for stage, _ in marks]
    if sorted(ran) != sorted(STAGES):  # DVC may run the side stages in either order
        raise _fail(cmd, f"ran {ran}, expected {STAGES}", output)
    ends = [t for _, t in marks[1:]] + [end]
    return end - start, {stage: t1 - t0 for (stage, t0), t1 in zip(marks, ends, strict=True)}


def make_repo(path: Path, overrides: dict[str, dict[str, object]]) -> Repo:
    """Copy the pipeline into `path`, apply params overrides, git init, dvc init, commit."""
    path.mkdir(parents=True)
    for name in ["dvc.yaml", "params.yaml", ".gitignore"]:
        shutil.copy(ROOT / name, path / name)
    for name in ["stages", "src"]:
        shutil.copytree(
            ROOT / name, path / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
        )
    if overrides:
        raw = yaml.safe_load((path / "params.yaml").read_text())
        for section, values in overrides.items():
            raw[section].update(values)
        (path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    trace = path.parent / f"{path.name}.trace.jsonl"
    python_path = [str(path / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {
        **os.environ,
        "BLASTCELL_TRACE": str(trace),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONPATH": os.pathsep.join(python_path),  # the stages run the copy's blastcell
        "PYTHONUNBUFFERED": "1",  # "Running stage" lines arrive when DVC writes them
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "blastcell bench",
        "GIT_AUTHOR_EMAIL": "bench@blastcell.invalid",
        "GIT_COMMITTER_NAME": "blastcell bench",
        "GIT_COMMITTER_EMAIL": "bench@blastcell.invalid",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    repo = Repo(path, env, trace)
    run(repo, "git", "init", "-q", "-b", "main")
    run(repo, "dvc", "init", "-q")
    run(repo, "dvc", "config", "core.analytics", "false")
    run(repo, "dvc", "config", "core.check_update", "false")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-q", "-m", "pipeline, not yet run")
    return repo


def read_trace(repo: Repo) -> dict[str, dict[str, float]]:
    """Per stage: peak RSS in MiB of the stage process (`self`) and its largest child."""
    if not repo.trace.is_file():
        raise BenchError(f"no trace at {repo.trace}: did the stages call params.trace?")
    rss: dict[str, dict[str, float]] = {}
    for line in repo.trace.read_text().splitlines():
        entry = json.loads(line)
        rss[entry["stage"]] = {
            "self": entry["peak_rss_mb"],
            "children": entry["children_peak_rss_mb"],
        }
    missing = [s for s in STAGES if s not in rss]
    if missing:
        raise BenchError(f"{repo.trace} has no entry for stages {missing}")
    return rss


def overhead(repo: Repo) -> tuple[float, float]:
    """Median seconds of a no-op `dvc repro` (checked: no stage ran) and of `dvc status`."""
    trace_size = repo.trace.stat().st_size
    noop, status = [], []
    for _ in range(REPEATS):
        seconds, out, err = run(repo, "dvc", "repro")
        if RUNNING.search(out + err) or repo.trace.stat().st_size != trace_size:
            raise _fail(("dvc", "repro"), "ran a stage on an up-to-date pipeline", out + err)
        noop.append(seconds)
        seconds, out, err = run(repo, "dvc", "status", "--json")
        if json.loads(out) != {}:
            raise _fail(("dvc", "status", "--json"), "reports changes after repro", out + err)
        status.append(seconds)
    return statistics.median(noop), statistics.median(status)


def pipeline(path: Path, overrides: dict[str, dict[str, object]]) -> dict:
    """Make a repo, `dvc repro` it from an empty cache, measure overhead; times and memory."""
    repo = make_repo(path, overrides)
    e2e, stage_s = repro(repo)
    rss = read_trace(repo)
    noop, status = overhead(repo)
    return {
        "repo": repo,
        "e2e": e2e,
        "stage_s": stage_s,
        "rss": rss,
        "noop": noop,
        "status": status,
    }


def inference(repo: Repo, quick: bool) -> dict[str, float]:
    """Throughput and latency of the trained model in this process; the CLI's wall time."""
    import numpy as np

    from blastcell import images, ingest, predict

    model, _, _ = predict.load(repo.path / "models/model.keras", repo.path / "models/classes.json")
    size = int(model.input_shape[1])
    folder = repo.path / "data/synthetic"
    files = ingest.find_images(folder)
    if not files:
        raise BenchError(f"no images in {folder}")
    originals = np.stack([images.resize(ingest.decode(f)[0], size) for f in files])
    n = 200 if quick else 1000  # the originals, repeated as needed
    x = originals[np.arange(n) % len(originals)].astype(np.float32)

    model.predict_on_batch(x[:PREDICT_BATCH])  # warm-up: tracing and first-call allocations
    start = time.perf_counter()
    for i in range(0, n, PREDICT_BATCH):
        model.predict_on_batch(x[i : i + PREDICT_BATCH])
    images_per_s = n / (time.perf_counter() - start)

    one = x[:1]
    for _ in range(5):
        model.predict_on_batch(one)
    latencies = []
    for _ in range(30 if quick else 100):
        start = time.perf_counter()
        model.predict_on_batch(one)
        latencies.append(time.perf_counter() - start)

    output = repo.path.parent / f"{repo.path.name}.predictions.csv"
    cli_s, _, _ = run(
        repo, "python", "-m", "blastcell", "predict", str(folder), "--output", str(output)
    )
    rows = len(output.read_text().splitlines()) - 1
    if rows != len(files):
        raise BenchError(f"blastcell predict wrote {rows} rows for {len(files)} images")
    return {
        "predict_images_per_s": images_per_s,
        "predict_latency_ms": 1000.0 * statistics.median(latencies),
        "predict_cli_s": cli_s,
        "predict_cli_images": len(files),
        "predict_cli_images_per_s": len(files) / cli_s,
        "predict_image_size": size,
    }


def _params(overrides: dict[str, dict[str, object]]) -> dict:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in overrides.items():
        raw[section].update(values)
    return raw


def measure(quick: bool = False, keep: Path | None = None) -> dict:
    """Run the benchmark (tiny params if `quick`); keep the temporary repos in `keep` if given."""
    base = {s: dict(v) for s, v in QUICK.items()} if quick else {}
    params = _params(base)
    n_blast, n_not_blast = (params["synthesize"][k] for k in ("n_blast", "n_not_blast"))
    scaled = {s: dict(v) for s, v in base.items()}
    scaled.setdefault("synthesize", {}).update(
        n_blast=SCALE * n_blast, n_not_blast=SCALE * n_not_blast
    )
    # peak memory does not grow with epochs (one epoch: no warm-up)
    scaled.setdefault("train", {}).update(epochs=1, warmup_epochs=0)

    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        if any(keep.iterdir()):
            raise BenchError(f"--keep folder {keep} is not empty")
        parent = keep
    else:
        parent = Path(tempfile.mkdtemp(prefix="blastcell-bench-"))
    try:
        one = pipeline(parent / "default", base)
        ten = pipeline(parent / "scaled_10x", scaled)
        predict = inference(one["repo"], quick)  # last: TensorFlow stays loaded in this process
        augmented = ten["repo"].path / "data/augmented/index.csv"
        augmented_images = len(augmented.read_text().splitlines()) - 1
    finally:
        if keep is None:
            shutil.rmtree(parent, ignore_errors=True)

    peak = {s: max(r["self"], r["children"]) for s, r in one["rss"].items()}
    peak_10x = {s: max(r["self"], r["children"]) for s, r in ten["rss"].items()}
    results: dict = {
        "quick": quick,
        "images": n_blast + n_not_blast,
        "augment_copies": params["augment"]["copies"],
        "e2e_repro_s": one["e2e"],
        "stage_s": one["stage_s"],
        "noop_repro_s": one["noop"],
        "status_s": one["status"],
    }
    results |= {f"{s}_peak_rss_mb": peak[s] for s in STAGES}
    results["peak_rss_detail_mb"] = one["rss"]
    results |= {
        "images_10x": SCALE * (n_blast + n_not_blast),
        "augmented_images_10x": augmented_images,
        "e2e_repro_s_10x": ten["e2e"],
        "stage_s_10x": ten["stage_s"],
        "noop_repro_s_10x": ten["noop"],
        "status_s_10x": ten["status"],
    }
    results |= {f"{s}_peak_rss_mb_10x": peak_10x[s] for s in STAGES}
    results["peak_rss_detail_mb_10x"] = ten["rss"]
    results["train_rss_growth_10x"] = peak_10x["train"] / peak["train"]
    results |= predict
    results["machine"] = describe()
    return results


def table(r: dict) -> str:
    """The results as readable lines."""
    lines = [
        f"machine: {summary(r['machine'])}",
        f"params: {'--quick (tiny)' if r['quick'] else 'params.yaml'}; "
        f"{r['images']} originals x {r['augment_copies']} augmented copies; "
        f"10x: {r['images_10x']} originals -> {r['augmented_images_10x']} augmented, "
        "train.epochs=1 (peak memory does not grow with epochs)",
        "",
        f"end-to-end dvc repro, empty cache: {r['e2e_repro_s']:8.1f} s   "
        f"(10x, 1 epoch: {r['e2e_repro_s_10x']:.1f} s)",
        "peak RSS = max(stage process, largest child process), MiB",
        f"  {'stage':<11} {'wall s':>8} {'peak RSS':>9} {'self':>8} {'child':>8}"
        f" {'10x wall s':>11} {'10x RSS':>9} {'10x self':>9} {'10x child':>10}",
    ]
    for s in STAGES:
        d, d10 = r["peak_rss_detail_mb"][s], r["peak_rss_detail_mb_10x"][s]
        lines.append(
            f"  {s:<11} {r['stage_s'][s]:8.1f} {r[f'{s}_peak_rss_mb']:9.0f} {d['self']:8.0f}"
            f" {d['children']:8.0f} {r['stage_s_10x'][s]:11.1f} {r[f'{s}_peak_rss_mb_10x']:9.0f}"
            f" {d10['self']:9.0f} {d10['children']:10.0f}"
        )
    lines += [
        "  (stage wall s: from DVC's 'Running stage' line to the next: the command plus hashing"
        " and caching its outputs)",
        f"train peak RSS growth at 10x: {r['train_rss_growth_10x']:.2f} (1.00 = flat)",
        "",
        f"no-op dvc repro (median of {REPEATS}): {r['noop_repro_s']:6.2f} s   "
        f"10x: {r['noop_repro_s_10x']:6.2f} s",
        f"dvc status      (median of {REPEATS}): {r['status_s']:6.2f} s   "
        f"10x: {r['status_s_10x']:6.2f} s",
        "",
        f"inference, {r['predict_image_size']} px input:",
        f"  predict_on_batch, batch {PREDICT_BATCH}: {r['predict_images_per_s']:8.1f} images/s",
        f"  single image, median latency:    {r['predict_latency_ms']:8.2f} ms",
        f"  blastcell predict CLI, {r['predict_cli_images']} files: "
        f"{r['predict_cli_images_per_s']:8.1f} images/s ({r['predict_cli_s']:.1f} s, incl. "
        "start-up, model loading and decoding)",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny params, to try it out")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="keep the temporary repos here")
    args = parser.parse_args()
    try:
        results = measure(args.quick, args.keep)
    except BenchError as err:
        sys.exit(f"bench/pipeline.py: {err}")
    print(table(results))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
