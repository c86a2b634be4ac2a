"""Stage aggregate (cv/dvc.yaml): summarise the test reports of the repeated splits.

Params: cv.seeds. Input: a folder holding `split_<seed>/evaluate.json` for every seed (the
evaluate stage's report on that split). Outputs:
- `--output`, JSON metrics: `splits` (how many) and, under the report's own keys
  (`accuracy.mean`, `blast.recall.std`, ...), the mean, sample standard deviation (ddof=1), min,
  max and n over the splits of every number in the reports except their per-split bootstrap
  intervals (`ci95`, `bootstrap`);
- `--table`, CSV: one row per split (seed, test images, the headline metrics), a DVC plot.
"""

import argparse
from pathlib import Path

from blastcell import aggregate
from blastcell import params as P
from blastcell.data import DataError, atomic_file, read_json, write_csv, write_json


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--table", type=Path, required=True)
    args = parser.parse_args(argv)
    seeds = P.load(args.params).cv.seeds

    reports = []
    for seed in seeds:
        path = args.input / f"split_{seed}" / "evaluate.json"
        if not path.is_file():
            raise DataError(f"{path} is missing: split {seed} of cv.seeds has not been evaluated")
        report = read_json(path)
        if not isinstance(report, dict):
            raise DataError(f"{path}: expected a JSON object (the evaluate stage's report)")
        reports.append(report)
    summary = aggregate.summarize(reports, skip=aggregate.PER_SPLIT_ONLY)
    header, rows = aggregate.table(reports, seeds)
    with atomic_file(args.table) as tmp:
        write_csv(tmp, header, rows)
    write_json(args.output, {"splits": len(reports), **summary})

    print(f"aggregate: {len(reports)} splits (mean ± sd, min to max)")
    for key in header[2:]:
        s = summary[key]
        sd = "" if s["std"] is None else f" ± {s['std']:.3f}"
        print(f"  {key:22} {s['mean']:.3f}{sd}  ({s['min']:.3f} to {s['max']:.3f}, n={s['n']})")
    P.trace("aggregate")


if __name__ == "__main__":
    main()
