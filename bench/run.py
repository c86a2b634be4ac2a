# ruff: noqa: RUF001  (the table of figures is Markdown for people: multiplication signs, dashes)
"""The benchmark suite: every benchmark, each in its own process, merged into bench/results.json.

    python bench/run.py [--quick] [--only pipeline,train,...] [--output bench/results.json]
    python bench/run.py --table [--output bench/results.json]

pipeline          end-to-end `dvc repro` from an empty cache, no-op repro and `dvc status`, peak
                  memory of every stage at the default size and with 10x the images, inference
train             the train stage's input pipeline and precision vs the seed's way (float32 arrays
                  in memory), at the default configuration and at the seed's exact one
precision         float32 vs mixed bfloat16 (and with XLA) training, same model and feed: images/s
                  and achieved GFLOPS
time              time to accuracy: the seed's training recipe vs the default one, same data and
                  architecture, on the default data and on a 4-class JPEG set
augment           the augment stage (all cores) vs a per-image loop
synthesize        the synthesize stage on one core vs all
audit             the leakage audit's precision: test images flagged with the source split and
                  with the random split, on synthetic cells and on crops of a real photograph
copies            the copies stage: planted copies grouped and distinct images left alone on crops
                  of a real photograph with a burned-in scale bar, the audit with that overlay,
                  sources/s at 1x, 4x and 16x the sources, and peak memory against pixels
decode            peak memory and time of `blastcell predict` and of the augment stage on one
                  image just under `data.max_image_pixels`, a CMYK JPEG and a PNG
backbones         each Keras Applications backbone against the seed CNN: parameters, training
                  and inference images/s, float32 and mixed bfloat16, at 128 and 224 px
online            online augmentation (each batch warped afresh per epoch) vs augmented copies on
                  disk, same originals and ranges: time to accuracy and test accuracy, on the
                  2-class synthetic set and the 4-class JPEG set
from_scratch      each architecture from random weights on the 4-class JPEG set at 128 and
                  224 px: epochs and seconds to accuracy, test accuracy
warm_start        a small 2-class set of other cells trained from random weights and from a
                  4-class model (and with the fine-tuning recipe): the same figures

`train` needs the default pipeline's data (`dvc repro prepare` or `dvc pull`). The full suite takes
hours on a 2-core CPU (docs/performance.md gives the committed run's length); `--quick`
(tiny sizes and tiny data of its own, a few minutes; the tests run it) only checks that every
benchmark runs. Run the full suite on an otherwise idle machine: the figures are wall-clock
times. With `--only`, the other benchmarks' results already in
the output file are kept. `--table` prints the results file as the table of figures of
docs/performance.md (a test checks that the page holds exactly it).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe, summary

BENCH = Path(__file__).resolve().parent
BENCHMARKS = {
    "pipeline": "pipeline",
    "train": "train_throughput",
    "precision": "precision",
    "augment": "augment_throughput",
    "synthesize": "synthesize",
    "audit": "audit_precision",
    "time": "time_to_accuracy",
    "copies": "copies",
    "decode": "decode_memory",
    "backbones": "backbones",
    "online": "online_augmentation",
    "from_scratch": "backbone_accuracy",
    "warm_start": "warm_start",
}
# The figures each benchmark must measure (and every run records the machine).
REQUIRED = {
    "pipeline": (
        "noop_repro_s",
        "status_s",
        "train_peak_rss_mb",
        "train_peak_rss_mb_10x",
        "predict_images_per_s",
        "e2e_repro_s",
    ),
    "train": ("train_throughput_ratio", "train_images_per_s", "seed_config_train_images_per_s"),
    "precision": ("precision_bf16_ratio", "seed_config_bf16_vs_fp32"),
    "augment": ("augment_throughput_ratio",),
    "synthesize": ("synthesize_ratio",),
    "audit": (
        "audit_synthetic_source_flagged_pct",
        "audit_synthetic_random_copies_flagged_pct",
        "audit_photograph_source_flagged_pct",
        "audit_photograph_random_copies_flagged_pct",
    ),
    "time": ("time_to_accuracy_ratio",),
    "copies": (
        "copies_planted_grouped_pct",
        "copies_alone_grouped_pct",
        "copies_audit_source_flagged_pct",
        "copies_audit_random_found_pct",
        "copies_sources_per_s",
        "copies_peak_mb_224px",
        "copies_peak_mb_896px",
    ),
    "decode": ("decode_predict_peak_mb", "decode_augment_peak_mb"),
    "backbones": ("backbones_fastest", "backbones_detail"),
    "online": (
        "online_augmentation_test_gain",
        "online_augmentation_time_ratio",
        "online_augmentation_detail",
    ),
    "from_scratch": ("backbone_accuracy_detail",),
    "warm_start": ("warm_start_detail", "warm_start_test_gain"),
}


def run_one(module: str, quick: bool) -> dict:
    """`measure(quick)` of bench/<module>.py in a fresh Python process."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        code = (
            "import json, sys; sys.path.insert(0, sys.argv[1]); "
            f"import {module} as m; "
            "json.dump(m.measure(quick=sys.argv[2] == '1'), open(sys.argv[3], 'w'))"
        )
        # TensorFlow's C++ log, errors included (Keras's NumPy feed logs a harmless NodeDef one
        # every epoch); Python errors still raise. TF_CPP_MIN_LOG_LEVEL=0 shows everything.
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}
        cmd = [sys.executable, "-c", code, str(BENCH), "1" if quick else "0", str(out)]
        done = subprocess.run(cmd, env=env)
        if done.returncode != 0:
            raise SystemExit(f"bench/{module}.py failed (exit {done.returncode})")
        return json.loads(out.read_text())


def _minutes(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 60} min {whole % 60} s" if whole >= 60 else f"{whole} s"


def _pair(r: dict) -> str:
    return (
        f"{r['bf16_images_per_s']:,.1f} vs {r['float32_images_per_s']:,.1f} images/s "
        f"({r['bf16_gflops']:,.0f} vs {r['float32_gflops']:,.0f} GFLOPS)"
    )


def _test_accuracy(x: dict) -> str:
    """A training run's test accuracy and its interval (bench/time_to_accuracy.run_recipe)."""
    low, high = x["test_accuracy_ci95"]
    return f"test accuracy {x['test_accuracy']:.3f}, 95 % CI {low:.3f}–{high:.3f}"


def _time_row(name: str, r: dict) -> tuple[str, str, str]:
    """A table row: the seed's and the default recipe's time to accuracy on one data set."""

    def recipe(x: dict) -> str:
        return (
            f"{x['epochs_to_accuracy']} epochs, {_minutes(x['seconds_to_accuracy'])} "
            f"({_test_accuracy(x)})"
        )

    return (
        f"time to accuracy (validation within 1 point of its best), {name} "
        f"({r['train_images']:,} training images): default recipe vs the seed's",
        f"{recipe(r['default'])} vs {recipe(r['seed'])}: **{r['ratio']:.2f}×**",
        "≥ 3×, accuracy within the seed's interval",
    )


def _online_row(name: str, r: dict) -> tuple[str, str, str]:
    """A table row: online augmentation against the copies on disk, on one data set."""

    def way(x: dict) -> str:
        return (
            f"{x['images']['train']:,} training images, {x['epochs_to_accuracy']} epochs, "
            f"{_minutes(x['seconds_to_accuracy'])} to accuracy, {x['epochs_run']} epochs in "
            f"{_minutes(x['train_seconds'])} ({_test_accuracy(x)})"
        )

    scale = r["copies"]["images"]["train"] / r["online"]["images"]["train"]
    return (
        f"`train.online_augmentation` vs `augment.copies` on disk, {name}, same originals and "
        f"ranges; online runs {scale:.0f}× the epochs (and warm-up, patience) on {scale:.0f}× "
        "fewer images (`bench/online_augmentation.py`)",
        f"online: {way(r['online'])} vs copies: {way(r['copies'])}",
        "",
    )


def _copies_rows(r: dict) -> list[tuple[str, str, str]]:
    """The copies stage's rows: grouping on the photograph set, the audit, scale and memory."""
    p, a = r["copies_photograph"], r["copies_photograph_audit"]
    scale, px = r["copies_scale"], r["copies_pixels"]
    sizes = list(px)
    return [
        (
            f"copies found before the split, {p['layouts']} layouts of crops of a real "
            f"photograph with a scale bar burned in ({p['images']} images, `bench/copies.py`): "
            "planted copies grouped / images without a copy put in a group",
            f"**{p['planted_grouped']} of {p['planted_pairs']} ({r['copies_planted_grouped_pct']} "
            f"%)** / **{p['alone_grouped']} of {p['alone']} ({r['copies_alone_grouped_pct']} %)**",
            "≥ 99 % / ≤ 0.5 %",
        ),
        (
            "the audit on those sets with the overlay left out: test images flagged with the "
            "source split / test images with a copy in training found with the random split",
            f"**{a['source']['flagged_without_copy']} of {a['source']['test_images']} "
            f"({r['copies_audit_source_flagged_pct']} %)** / **"
            f"{a['random']['flagged_with_copy']} of {a['random']['with_copy_in_train']} "
            f"({r['copies_audit_random_found_pct']} %)**",
            "≤ 1 % / ≥ 99 %",
        ),
        (
            "copies stage, sources of 224 px (smear crops, 5 % with a copy) at 1×, 4×, 16×: "
            "time (sources/s, peak RSS of the main process)",
            " / ".join(
                f"{run['sources']:,} in {_minutes(run['seconds'])} ({run['sources_per_s']:.1f}/s, "
                f"{run['peak_mb']:,.0f} MiB)"
                for run in scale.values()
            ),
            "3,000 in a few minutes",
        ),
        (
            f"peak RSS of the copies stage (one process), {px[sizes[0]]['sources']} sources of "
            f"{sizes[0]} → {sizes[1]} (16× the pixels)",
            f"**{px[sizes[0]]['peak_mb']:,.0f} → {px[sizes[1]]['peak_mb']:,.0f} MiB**",
            "does not grow with pixels",
        ),
    ]


def _decode_rows(r: dict) -> list[tuple[str, str, str]]:
    """The large image's rows: what it adds to predict's and augment's peak RSS, and the time."""
    d, rgb = r["decode_memory_detail"], r["decode_rgb_mb"]

    def runs(name: str, kinds: tuple[str, ...] = ("cmyk_jpeg", "png")) -> str:
        small, by_image = d[name]["small"], d[name]
        large = " / ".join(
            f"+{by_image[kind]['peak_mb'] - small['peak_mb']:,.0f} MiB "
            f"({(by_image[kind]['peak_mb'] - small['peak_mb']) / rgb:.1f}×) in "
            f"{by_image[kind]['seconds']:.1f} s"
            for kind in kinds
        )
        return (
            f"**{large}** (the small image: {small['peak_mb']:,.0f} MiB, {small['seconds']:.1f} s)"
        )

    image = f"one {d['side']}×{d['side']} image ({rgb:.1f} MiB as 8-bit RGB)"
    return [
        (
            f"peak RSS and time of `blastcell predict` on {image}, a CMYK JPEG / a PNG, over its "
            f"run on a {d['small_side']} px PNG (`bench/decode_memory.py`)",
            runs("predict"),
            "≤ 3× the RGB image",
        ),
        (
            "same, the augment stage (one worker, no copies)",
            runs("augment"),
            "≤ 3× the RGB image",
        ),
        (
            f"same, the augment stage with its {d['copies']} augmented copies, the PNG",
            runs("augment_copies", ("png",)),
            "≤ 3.5× the RGB image",
        ),
    ]


def _backbone_rows(r: dict) -> list[tuple[str, str, str]]:
    """A row per architecture of bench/backbones.py: training and inference images/s."""
    detail = r["backbones_detail"]
    rows = []
    for name, sizes in detail.items():
        if not isinstance(sizes, dict):
            continue
        cells = []
        for size, runs in sizes.items():
            f32, bf16 = runs["float32"], runs["mixed_bfloat16"]
            cells.append(
                f"{size} px: train {f32['train_images_per_s']:,.1f} / "
                f"{bf16['train_images_per_s']:,.1f}, inference {f32['infer_images_per_s']:,.1f} / "
                f"{bf16['infer_images_per_s']:,.1f}"
            )
        first = next(iter(sizes.values()))["float32"]
        rows.append(
            (
                f"`model.architecture: {name}` ({first['parameters']:,} parameters, "
                f"{detail['classes']} classes), images/s float32 / mixed bfloat16, batch "
                f"{detail['batch']} (`bench/backbones.py`)",
                "; ".join(cells),
                "",
            )
        )
    return rows


def _accuracy_rows(r: dict) -> list[tuple[str, str, str]]:
    """A row per architecture of bench/backbone_accuracy.py, then of bench/warm_start.py."""
    detail, warm = r["backbone_accuracy_detail"], r["warm_start_detail"]

    def reached(x: dict) -> str:
        return (
            f"{x['epochs_to_accuracy']} epochs, {_minutes(x['seconds_to_accuracy'])} to accuracy; "
            f"{x['epochs_run']} epochs run in {_minutes(x['train_seconds'])} ({_test_accuracy(x)})"
        )

    rows = []
    for name, sizes in detail.items():
        if not isinstance(sizes, dict):
            continue
        policies = sorted({x["policy"] for x in sizes.values()})
        rows.append(
            (
                f"`model.architecture: {name}` from random weights, 4-class JPEG set "
                f"({detail['train_images']:,} training images, {detail['test_images']} test), "
                f"params.yaml's recipe, {' / '.join(policies)} (`bench/backbone_accuracy.py`)",
                "; ".join(f"{size} px: {reached(x)}" for size, x in sizes.items()),
                "",
            )
        )

    def started(x: dict) -> str:  # the params it sets beside model.weights
        changed = [f", `{p}`" for p in x["params"] if not p.startswith("model.weights=")]
        start = "warm start" if x["params"] else "from random weights"
        return f"{start}{''.join(changed)}: {reached(x)}"

    for name, runs in warm.items():
        if not isinstance(runs, dict):
            continue
        pretrained, *tuned = runs.values()
        rows.append(
            (
                f"`{name}` on a small 2-class set of other cells ({tuned[0]['train_images']} "
                f"training images, {tuned[0]['test_images']} test) at {warm['image_size']} px: "
                "from random weights vs a warm start from its 4-class model "
                f"({_test_accuracy(pretrained)} there; `model.weights: weights/<file>.keras`, "
                "output layer rebuilt) (`bench/warm_start.py`)",
                "; ".join(started(x) for x in tuned),
                "",
            )
        )
    return rows


def table(r: dict) -> str:
    """docs/performance.md's table of figures, from the results of a full (not --quick) run."""
    quick = sorted(name for name, run in r.get("runs", {}).items() if run["quick"])
    missing = sorted(set(BENCHMARKS) - set(r.get("runs", {})))
    if quick or missing:
        raise SystemExit(
            f"--table needs a full run of every benchmark; quick: {quick}, not run: {missing}"
        )
    t, p = r["train_detail"]["default"], r["precision_detail"]
    s, synth = r["train_detail"]["seed_config"], r["synthesize_detail"]
    rss = {stage: r[f"{stage}_peak_rss_mb"] for stage in r["peak_rss_detail_mb"]}
    rss10 = {stage: r[f"{stage}_peak_rss_mb_10x"] for stage in r["peak_rss_detail_mb_10x"]}
    wrong = round(abs(t["ours_test_accuracy"] - t["seed_test_accuracy"]) * t["test_images"])
    small = ", ".join(
        f"{stage} {rss[stage]:,.0f} → {rss10[stage]:,.0f}"
        for stage in rss
        if stage not in ("train", "evaluate")
    )
    rows = [
        (
            "training, default configuration: train stage (TFRecord shards streamed by tf.data, "
            f"{t['ours_policy']}) vs the seed's way (float32 NumPy arrays in memory, `model.fit`)",
            f"{t['ours_images_per_s']:,.0f} vs {t['seed_images_per_s']:,.0f} images/s: "
            f"**{t['ratio']:.2f}×** (rounds {min(t['round_ratios']):.2f}–"
            f"{max(t['round_ratios']):.2f}×)",
            "≥ 2×",
        ),
        (
            f"same, the seed's exact configuration (width {s['width']:.1f}, {s['image_size']}×"
            f"{s['image_size']}, batch 100)",
            f"{s['ours_images_per_s']:.1f} vs {s['seed_images_per_s']:.1f} images/s: "
            f"**{s['ratio']:.2f}×**",
            "",
        ),
        (
            f"test accuracy after {t['epochs']} epochs each, default data",
            f"{t['ours_test_accuracy']:.3f} vs {t['seed_test_accuracy']:.3f}: {wrong} of "
            f"{t['test_images']} test images apart (one image is "
            f"{100 / t['test_images']:.1f} points)",
            "within noise",
        ),
        (
            "mixed bfloat16 vs float32 alone, same model and feed (`bench/precision.py`), "
            "default configuration / the seed's",
            f"{_pair(p['default'])}: **{p['default']['ratio']:.2f}×** / "
            f"{_pair(p['seed_config'])}: **{p['seed_config']['ratio']:.2f}×**",
            "≥ 4× on an AMX CPU (seed's)",
        ),
        (
            "same, mixed bfloat16 compiled by XLA (`jit_compile`) vs float32, default / seed's",
            f"{p['default']['bf16_xla_images_per_s']:,.1f} / "
            f"{p['seed_config']['bf16_xla_images_per_s']:,.1f} images/s: "
            f"{p['default']['xla_ratio']:.2f}× / {p['seed_config']['xla_ratio']:.2f}×",
            "",
        ),
        _time_row("default data", r["time_to_accuracy_detail"]["default_data"]),
        _time_row("4-class JPEG set", r["time_to_accuracy_detail"]["four_class"]),
        _online_row("2-class set", r["online_augmentation_detail"]["two_class"]),
        _online_row("4-class JPEG set", r["online_augmentation_detail"]["four_class"]),
        (
            "input pipeline alone (no model)",
            f"{r['input_pipeline_images_per_s']:,.0f} images/s, "
            f"{r['input_pipeline_images_per_s'] / t['ours_images_per_s']:.0f}× what training "
            "consumes",
            "",
        ),
        (
            f"augmentation: stage (`augment.workers` = {r['augment_workers']} processes) vs a "
            f"one-process loop, {r['augment_source_images']} × {r['augment_image_size']} px "
            "sources",
            f"{r['augment_images_per_s']:.0f} vs {r['augment_baseline_images_per_s']:.0f} "
            f"images/s: **{r['augment_throughput_ratio']:.2f}×**, "
            + ("identical bytes" if r["augment_outputs_identical"] else "**different bytes**"),
            "scales with cores",
        ),
        (
            f"synthesize: {synth['cores']} processes vs one, {synth['images']} images of "
            f"{synth['size']} px",
            f"{r['synthesize_images_per_s_all_cores']:.0f} vs "
            f"{r['synthesize_images_per_s_1_core']:.0f} images/s: "
            f"**{r['synthesize_ratio']:.2f}×** (render alone {r['synthesize_render_ms']:.1f} ms "
            "per image)",
            "scales with cores",
        ),
        (
            "augment's share of the default `dvc repro`",
            f"{r['stage_s']['augment']:.1f} s of {r['e2e_repro_s']:.0f} s: "
            f"**{100 * r['stage_s']['augment'] / r['e2e_repro_s']:.0f} %**",
            "< 10 %",
        ),
        (
            f"`dvc repro` with nothing to do / `dvc status`, default ({r['images']} originals, "
            f"{r['augment_copies']} copies each)",
            f"**{r['noop_repro_s']:.1f} s / {r['status_s']:.1f} s**",
            "a few seconds",
        ),
        (
            f"same with 10× the images ({r['augmented_images_10x']:,} augmented)",
            f"{r['noop_repro_s_10x']:.1f} s / {r['status_s_10x']:.1f} s",
            "",
        ),
        (
            "peak RSS of train, default → 10× the images (1 epoch; memory does not grow with "
            "epochs)",
            f"**{rss['train']:,.0f} → {rss10['train']:,.0f} MiB** "
            f"(×{r['train_rss_growth_10x']:.2f})",
            "does not grow",
        ),
        (
            "peak RSS of evaluate, default → 10× the test images",
            f"{rss['evaluate']:,.0f} → {rss10['evaluate']:,.0f} MiB",
            "does not grow",
        ),
        ("peak RSS of the other stages, default → 10×", f"{small} MiB", ""),
        (
            f"inference, saved model, {r['predict_image_size']} px, batch 100",
            f"**{r['predict_images_per_s']:,.0f} images/s**; one image "
            f"{r['predict_latency_ms']:.1f} ms (median)",
            "",
        ),
        (
            f"`blastcell predict` on the {r['predict_cli_images']} original files",
            f"{r['predict_cli_images_per_s']:.0f} images/s ({r['predict_cli_s']:.0f} s, with "
            "start-up, model loading and decoding)",
            "",
        ),
        *_copies_rows(r),
        *_decode_rows(r),
        *_backbone_rows(r),
        *_accuracy_rows(r),
        (
            "end-to-end `dvc repro` of the default params.yaml, empty cache",
            f"**{_minutes(r['e2e_repro_s'])}** (train {_minutes(r['stage_s']['train'])})",
            "about 5 min",
        ),
    ]
    dates = sorted({run["finished"][:10] for run in r["runs"].values()})
    on: dict[str, list[str]] = {}  # each machine, and the benchmarks run on it
    for name, run in r["runs"].items():
        on.setdefault(summary(run.get("machine", r["machine"])), []).append(name)
    where = (
        next(iter(on))
        if len(on) == 1
        else "; ".join(f"{machine} ({', '.join(names)})" for machine, names in on.items())
    )
    lines = [
        f"Measured by `python bench/run.py` ({' to '.join(dates[:: max(len(dates) - 1, 1)])}) on: "
        f"{where}; the precision benchmark's CPU has native bfloat16 (AVX512-BF16 or AMX): "
        f"{'yes' if r['precision_cpu_bf16'] else 'no'}.",
        "",
        "| benchmark | measured | target |",
        "|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that it runs")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated subset")
    parser.add_argument("--output", type=Path, default=BENCH / "results.json")
    parser.add_argument("--table", action="store_true", help="print docs/performance.md's table")
    args = parser.parse_args()
    if args.table:
        print(table(json.loads(args.output.read_text())))
        return
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; choose from {sorted(BENCHMARKS)}")

    results = json.loads(args.output.read_text()) if args.output.is_file() else {}
    for run in results.get("runs", {}).values():  # runs recorded before runs named their machine
        run.setdefault("machine", results["machine"])
    # The figures' machine, flags included, recorded with every run; --quick checks that the
    # benchmarks run and skips the GPU check, which imports TensorFlow (seconds per run).
    machine = describe(gpu=not args.quick)
    for name in chosen:
        print(f"== {name} (bench/{BENCHMARKS[name]}.py) ==", flush=True)
        start = time.perf_counter()
        measured = run_one(BENCHMARKS[name], args.quick)
        results |= measured
        results["machine"] = machine
        results.setdefault("runs", {})[name] = {
            "quick": args.quick,
            "seconds": round(time.perf_counter() - start, 1),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": machine,
        }
        partial = args.output.with_name(f".{args.output.name}.tmp")
        partial.write_text(json.dumps(results, indent=2) + "\n")
        partial.replace(args.output)  # after each benchmark, whole: keep what has run
    required = [key for name in BENCHMARKS for key in REQUIRED[name]]
    missing = [key for key in [*required, "machine"] if key not in results]
    summary = {key: results[key] for key in required if key in results}
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.output}" + (f"; not yet measured: {missing}" if missing else ""))


if __name__ == "__main__":
    main()
