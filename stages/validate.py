"""Stage validate: check the whole params.yaml before any other stage runs.

Input: params.yaml (a dependency as a file, so any edit re-runs this stage, even a misspelt key
that no stage declares). Output: a small marker file whose content never changes while the file
is valid, so a valid edit re-runs only the stages whose declared params changed. Every stage
depends on the marker: an unknown key or section, a wrong type or an out-of-range value stops
`dvc repro` here, with one line naming the key, before DVC removes any stage's outputs.
"""

import argparse
from pathlib import Path

from blastcell import params as P
from blastcell import runner
from blastcell.data import write_json


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)
    P.load(args.params)
    write_json(args.output, {"params": "valid"})
    print(f"validate: {args.params} is valid")
    P.trace("validate")


if __name__ == "__main__":
    runner.run(main)
