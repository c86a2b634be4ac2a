"""The benchmark suite: every benchmark, each in its own process, merged into bench/results.json.

    python bench/run.py [--quick] [--only pipeline,augment,train] [--output bench/results.json]

pipeline          end-to-end `dvc repro` from an empty cache, no-op repro and `dvc status`, peak
                  memory of every stage at the default size and with 10x the images, inference
augment           the augment stage (all cores) vs a per-image loop
train             the train stage's input pipeline and precision vs the seed's way (float32 arrays
                  in memory), at the default configuration and at the seed's exact one

`train` needs the default pipeline's data (`dvc repro prepare` or `dvc pull`). The full suite
takes about half an hour on a 2-core CPU; `--quick` (tiny sizes, a few minutes) only checks that
it runs. Run it on an otherwise idle machine: the figures are wall-clock times. With `--only`,
the other benchmarks' results already in the output file are kept.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
BENCHMARKS = {"pipeline": "pipeline", "augment": "augment_throughput", "train": "train_throughput"}
REQUIRED = (
    "train_throughput_ratio",
    "train_images_per_s",
    "seed_config_train_images_per_s",
    "augment_throughput_ratio",
    "noop_repro_s",
    "status_s",
    "train_peak_rss_mb",
    "train_peak_rss_mb_10x",
    "predict_images_per_s",
    "e2e_repro_s",
    "machine",
)


def run_one(module: str, quick: bool) -> dict:
    """`measure(quick)` of bench/<module>.py in a fresh Python process."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        code = (
            "import json, sys; sys.path.insert(0, sys.argv[1]); "
            f"import {module} as m; "
            "json.dump(m.measure(quick=sys.argv[2] == '1'), open(sys.argv[3], 'w'))"
        )
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
        cmd = [sys.executable, "-c", code, str(BENCH), "1" if quick else "0", str(out)]
        done = subprocess.run(cmd, env=env)
        if done.returncode != 0:
            raise SystemExit(f"bench/{module}.py failed (exit {done.returncode})")
        return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that it runs")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated subset")
    parser.add_argument("--output", type=Path, default=BENCH / "results.json")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; choose from {sorted(BENCHMARKS)}")

    results = json.loads(args.output.read_text()) if args.output.is_file() else {}
    for name in chosen:
        print(f"== {name} (bench/{BENCHMARKS[name]}.py) ==", flush=True)
        start = time.perf_counter()
        measured = run_one(BENCHMARKS[name], args.quick)
        results |= measured
        results.setdefault("runs", {})[name] = {
            "quick": args.quick,
            "seconds": round(time.perf_counter() - start, 1),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        args.output.write_text(json.dumps(results, indent=2) + "\n")  # after each: keep partials
    missing = [key for key in REQUIRED if key not in results]
    summary = {key: results[key] for key in REQUIRED if key in results and key != "machine"}
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.output}" + (f"; not yet measured: {missing}" if missing else ""))


if __name__ == "__main__":
    main()
