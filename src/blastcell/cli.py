"""The `blastcell` command: tools around the pipeline (`blastcell summary`)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from blastcell import params as P


def summary(args: argparse.Namespace) -> int:
    """Print the Keras summary of the model that params.yaml (with overrides) describes."""
    params = P.load(args.params, args.set)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from blastcell import model as M

    net = M.build(params.model, params.prepare.image_size, args.classes)
    net.summary(print_fn=lambda line, **_: print(line))
    print(f"total params: {net.count_params()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="blastcell", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("summary", help=summary.__doc__, description=summary.__doc__)
    p.add_argument("--params", type=Path, default=Path("params.yaml"))
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a param in DVC's dotted form, e.g. --set model.width=1.0 (repeatable)",
    )
    p.add_argument("--classes", type=int, default=2, help="number of classes (default 2)")
    p.set_defaults(func=summary)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except P.ParamsError as err:
        print(f"blastcell: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
