"""Stage aggregate (cv/dvc.yaml): summarise the test reports of the repeated splits.

Params: cv.seeds. Input: a folder holding `split_<seed>/evaluate.json` for every seed (the
evaluate stage's report on that split). Output: JSON metrics with the mean, sample standard
deviation (ddof=1), min, max and n over the splits of every numeric value in the reports, under
the same keys (`accuracy.mean`, `blast.recall.std`, ...), and `splits`, the number of splits.
"""

import argparse
from pathlib import Path

from blastcell import aggregate
from blastcell import params as P
from blastcell.data import DataError, read_json, write_json


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)
    params = P.load(args.params)

    reports = []
    for seed in params.cv.seeds:
        path = args.input / f"split_{seed}" / "evaluate.json"
        if not path.is_file():
            raise DataError(f"{path} is missing: split {seed} of cv.seeds has not been evaluated")
        reports.append(read_json(path))
    summary = aggregate.summarize(reports)
    write_json(args.output, {"splits": len(reports), **summary})
    accuracy = summary.get("accuracy")
    if accuracy:
        print(
            f"aggregate: accuracy {accuracy['mean']:.4f} ± {accuracy['std'] or 0:.4f} (sd) over "
            f"{accuracy['n']} splits, range {accuracy['min']:.4f} to {accuracy['max']:.4f}"
        )
    P.trace("aggregate")


if __name__ == "__main__":
    main()
