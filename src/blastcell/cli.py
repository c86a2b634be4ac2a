"""The `blastcell` command: tools around the pipeline (`summary`, `predict`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from blastcell import __version__, progress
from blastcell import params as P


def summary(args: argparse.Namespace) -> int:
    """Print the Keras summary of the model that params.yaml (with overrides) describes."""
    params = P.load(args.params, args.set)
    from blastcell import model as M

    net = M.build(params.model, params.prepare.image_size, args.classes)
    net.summary(print_fn=lambda line, **_: print(line))
    print(f"total params: {net.count_params()}")
    return 0


def predict(args: argparse.Namespace) -> int:
    """Classify image files and folders with a trained model; write a CSV or JSON table."""
    from blastcell import predict as PR

    def error(message: str) -> None:
        print(f"blastcell: {message}", file=sys.stderr)

    classes_path = args.classes or args.model.parent / "classes.json"
    try:
        if not args.model.is_file():  # before the slow TensorFlow import
            raise PR.PredictError(f"model file {args.model} does not exist")
        classes = PR.read_classes(classes_path)
        model = PR.load_model(args.model)
        PR.check_classes(classes, classes_path, model, args.model)
    except PR.PredictError as err:
        error(str(err))
        return 2
    inputs = PR.collect(args.inputs)
    with progress.bar(sum(not item.error for item in inputs), "predict") as bar:

        def failed(message: str) -> None:
            bar.write(f"blastcell: {message}", file=sys.stderr)  # above the bar, if one is drawn

        results = PR.predict(
            model,
            inputs,
            batch_size=args.batch_size,
            tta=args.tta,
            on_error=failed,
            progress=bar.update,
        )
    try:
        PR.write(args.output, results, classes)
    except OSError as err:
        error(f"cannot write {args.output}: {err}")
        return 1
    print(PR.summary(results, classes, args.output))
    if not any(r.ok for r in results):
        error("no image was found and predicted")
    return 0 if results and all(r.ok for r in results) else 1


def _positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="blastcell", description=__doc__)
    parser.add_argument("--version", action="version", version=f"blastcell {__version__}")
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
    p = commands.add_parser("predict", help=predict.__doc__, description=predict.__doc__)
    p.add_argument(
        "inputs",
        nargs="+",
        type=Path,
        metavar="IMAGE_OR_FOLDER",
        help="image files (TIFF, PNG, JPEG, BMP), or folders searched recursively for them",
    )
    p.add_argument(
        "--model",
        type=Path,
        default=Path("models/model.keras"),
        help="trained Keras model (default models/model.keras)",
    )
    p.add_argument(
        "--classes",
        type=Path,
        default=None,
        help="JSON list of class names (default: classes.json beside the model)",
    )
    p.add_argument(
        "--output",
        type=Path,
        default=Path("predictions.csv"),
        help="CSV table, or a JSON list if the name ends in .json (default predictions.csv)",
    )
    p.add_argument(
        "--batch-size", type=_positive_int, default=32, help="images per model call (default 32)"
    )
    p.add_argument(
        "--tta",
        action="store_true",
        help="test-time augmentation: average over the 8 rotations and flips of each image",
    )
    p.set_defaults(func=predict)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except P.ParamsError as err:
        print(f"blastcell: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
