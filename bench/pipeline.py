"""Benchmark: the whole DVC pipeline's end-to-end time, overhead, memory, 10x scaling, inference.

    python bench/pipeline.py [--quick] [--keep DIR]

Treats the stages as black boxes: copies the pipeline into temporary git + DVC repos
(bench/pipeline_repo.py, the tests' builder too), runs `dvc repro` there and reads what each
stage appends to $BLASTCELL_TRACE (its peak resident set size and that of its largest child
process).

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

--quick runs everything on tiny params (24 images of 64 px, 2 epochs; the scaled repo at 2x, the
overhead once) to try the benchmark out in a minute or two; its numbers mean little. --keep DIR
keeps the repos there. It prints a table and then the results as JSON; it asserts only that the
pipeline ran.
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
from pathlib import Path

from machine import describe, summary
from pipeline_repo import ROOT, STAGES, TAIL_LINES, TINY, Repo, make, run, tail

from blastcell import params

SCALE = 10  # --quick: 2 (that the scaled run works; its figures mean nothing either way)
REPEATS = 3  # no-op repro and status: median of this many (--quick: 1)
PREDICT_BATCH = 100
RUNNING = re.compile(r"Running stage '([\w@-]+)'")

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class BenchError(RuntimeError):
    """A command of the benchmark failed or did something unexpected; the message shows why."""


def _fail(cmd: tuple[str, ...], why: str, output: str) -> BenchError:
    return BenchError(
        f"`{' '.join(cmd)}` {why}; last {TAIL_LINES} lines of its output:\n{tail(output)}"
    )


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


def overhead(repo: Repo, repeats: int) -> tuple[float, float]:
    """Median seconds of a no-op `dvc repro` (checked: no stage ran) and of `dvc status`."""
    trace_size = repo.trace.stat().st_size
    noop, status = [], []
    for _ in range(repeats):
        done = run(repo, "dvc", "repro")
        output = done.stdout + done.stderr
        if RUNNING.search(output) or repo.trace.stat().st_size != trace_size:
            raise _fail(("dvc", "repro"), "ran a stage on an up-to-date pipeline", output)
        noop.append(done.seconds)
        done = run(repo, "dvc", "status", "--json")
        if json.loads(done.stdout) != {}:
            raise _fail(("dvc", "status", "--json"), "reports changes after repro", done.stdout)
        status.append(done.seconds)
    return statistics.median(noop), statistics.median(status)


def pipeline(path: Path, overrides: list[str], repeats: int) -> dict:
    """Make a repo, `dvc repro` it from an empty cache, measure overhead; times and memory."""
    repo = make(path, overrides)
    e2e, stage_s = repro(repo)
    rss = read_trace(repo)
    noop, status = overhead(repo, repeats)
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
    cli_s = run(
        repo, "python", "-m", "blastcell", "predict", str(folder), "--output", str(output)
    ).seconds
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


def measure(quick: bool = False, keep: Path | None = None) -> dict:
    """Run the benchmark (tiny params if `quick`); keep the temporary repos in `keep` if given."""
    base = list(TINY) if quick else []
    scale, repeats = (2, 1) if quick else (SCALE, REPEATS)
    settings = params.load(ROOT / "params.yaml", base)
    n_blast, n_not_blast = settings.synthesize.n_blast, settings.synthesize.n_not_blast
    scaled = [
        *base,
        f"synthesize.n_blast={scale * n_blast}",
        f"synthesize.n_not_blast={scale * n_not_blast}",
        # peak memory does not grow with epochs (one epoch: no warm-up)
        "train.epochs=1",
        "train.warmup_epochs=0",
    ]

    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        if any(keep.iterdir()):
            raise BenchError(f"--keep folder {keep} is not empty")
        parent = keep
    else:
        parent = Path(tempfile.mkdtemp(prefix="blastcell-bench-"))
    try:
        one = pipeline(parent / "default", base, repeats)
        ten = pipeline(parent / "scaled_10x", scaled, repeats)
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
        "augment_copies": settings.augment.copies,
        "e2e_repro_s": one["e2e"],
        "stage_s": one["stage_s"],
        "noop_repro_s": one["noop"],
        "status_s": one["status"],
        "repeats": repeats,
    }
    results |= {f"{s}_peak_rss_mb": peak[s] for s in STAGES}
    results["peak_rss_detail_mb"] = one["rss"]
    results |= {
        "images_10x": scale * (n_blast + n_not_blast),
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
        f"no-op dvc repro (median of {r.get('repeats', REPEATS)}): {r['noop_repro_s']:6.2f} s   "
        f"10x: {r['noop_repro_s_10x']:6.2f} s",
        f"dvc status      (median of {r.get('repeats', REPEATS)}): {r['status_s']:6.2f} s   "
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
