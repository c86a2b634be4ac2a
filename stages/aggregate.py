"""Stage aggregate (cv/dvc.yaml): summarise the test reports of the repeated splits.

Params: cv.seeds. Input: a folder holding, for every seed, `split_<seed>/evaluate.json` (the
evaluate stage's report on that split) and `split_<seed>/audit.json` (the audit stage's).
Outputs:
- `--output`, JSON metrics: `splits` (how many) and, under the report's own keys
  (`accuracy.mean`, `blast.recall.std`, ...), the mean, sample standard deviation (ddof=1), min,
  max and n over the splits of every number in the reports except their per-split bootstrap
  intervals (`ci95`, `bootstrap`); under `audit`, the same for the audits' numbers;
- `--table`, CSV: one row per split (seed, test images, the headline metrics, near-duplicates),
  a DVC plot.
"""

import argparse
from pathlib import Path

from blastcell import aggregate
from blastcell import params as P
from blastcell.data import DataError, atomic_file, read_json, write_csv, write_json


def read_report(folder: Path, seed: int, stage: str) -> dict:
    """`folder/split_<seed>/<stage>.json`, the report of that stage on that split."""
    path = folder / f"split_{seed}" / f"{stage}.json"
    if not path.is_file():
        raise DataError(f"{path} is missing: {stage} has not run on split {seed} of cv.seeds")
    report = read_json(path)
    if not isinstance(report, dict):
        raise DataError(f"{path}: expected a JSON object (the {stage} stage's report)")
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--table", type=Path, required=True)
    args = parser.parse_args(argv)
    seeds = P.load(args.params).cv.seeds

    reports = [read_report(args.input, seed, "evaluate") for seed in seeds]
    audits = [read_report(args.input, seed, "audit") for seed in seeds]
    summary = aggregate.summarize(reports, skip=aggregate.PER_SPLIT_ONLY)
    audit_summary = aggregate.summarize(audits, skip=["threshold"])
    merged = [
        {**r, "near_duplicates": a.get("near_duplicates")}
        for r, a in zip(reports, audits, strict=True)
    ]
    header, rows = aggregate.table(merged, seeds, [*aggregate.HEADLINE, "near_duplicates"])
    with atomic_file(args.table) as tmp:
        write_csv(tmp, header, rows)
    write_json(args.output, {"splits": len(reports), **summary, "audit": audit_summary})

    print(f"aggregate: {len(reports)} splits (mean ± sd, min to max)")
    for key in header[2:]:
        s = audit_summary[key] if key == "near_duplicates" else summary[key]
        sd = "" if s["std"] is None else f" ± {s['std']:.3f}"
        print(f"  {key:22} {s['mean']:.3f}{sd}  ({s['min']:.3f} to {s['max']:.3f}, n={s['n']})")
    P.trace("aggregate")


if __name__ == "__main__":
    main()
