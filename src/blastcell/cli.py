"""The `blastcell` command: tools around the pipeline (`summary`, `predict`, `check`, ...)."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import typing
from collections.abc import Callable
from pathlib import Path

from blastcell import __version__, backbones, ingest, params, progress
from blastcell.files import DataError, check_writable, describe, printable


def _error(message: str, write: Callable[..., object] = print) -> None:
    """Print `message` to standard error as one line, `blastcell: <message>` (with `write`,
    e.g. a progress bar's, which prints above the bar)."""
    write(printable(f"blastcell: {message}"), file=sys.stderr)


def summary_command(args: argparse.Namespace) -> int:
    """Print the Keras summary of the model that params.yaml (with overrides) describes."""
    settings = params.load(args.params, args.set)
    from blastcell import model  # TensorFlow: seconds, so only for the commands that use it

    net = model.build(settings.model, settings.prepare.image_size, args.classes)
    if settings.model.architecture in backbones.BACKBONES:
        print("\n".join(model.backbone_summary(net)))
    else:
        net.summary(print_fn=lambda line, **_: print(line))
    print(f"total params: {net.count_params()}")
    return 0


def weights_command(args: argparse.Namespace) -> int:
    """Print where each backbone's ImageNet weights come from (`model.weights: imagenet`): the
    file Keras publishes, its MD5, and the command that brings it into weights/, DVC-tracked."""
    for name in [args.architecture] if args.architecture else backbones.BACKBONES:
        backbone = backbones.BACKBONES[name]
        print(f"{name}: {backbone.weights_path} (MD5 {backbone.md5})")
        print(f"  {backbone.fetch_command()}")
    return 0


def predict_command(args: argparse.Namespace) -> int:
    """Classify image files and folders with a trained model; write a CSV or JSON table."""
    from blastcell import predict

    check_writable(args.output)  # a read-only or full disk shows now, not after every image
    try:
        classes_path = args.classes or args.model.parent / "classes.json"
        net, classes, learned = predict.load(args.model, classes_path)
    except DataError as err:
        _error(str(err))
        return 2
    caution = predict.warning(args.model, learned)
    if caution:
        _error(f"warning: {caution}")
    square = args.square or (learned.source.square if learned else ingest.SQUARE)
    inputs = predict.find_inputs(args.inputs)
    with progress.bar(sum(not item.error for item in inputs), "predict") as bar:

        def failed(message: str) -> None:
            _error(message, bar.write)  # above the bar, if one is drawn

        decoding = predict.Decoding(args.max_image_pixels, args.min_image_side, square)
        results = predict.predict(
            net,
            inputs,
            batch_size=args.batch_size,
            tta=args.tta,
            decoding=decoding,
            on_error=failed,
            progress=bar.update,
        )
    try:
        predict.write(args.output, results, classes)
    except OSError as err:
        _error(f"cannot write {args.output}: {err}")
        return 1
    print(predict.summary(results, classes, args.output))
    if not any(r.ok for r in results):
        _error("no image was found and predicted")
    return 0 if results and all(r.ok for r in results) else 1


def check_command(args: argparse.Namespace) -> int:
    """Check a data folder before `dvc add`: every file read as the pipeline reads data.dir
    (layout, classes, links, limits, decoding, duplicates), writing nothing; exit 1 on any
    problem. `dvc add` follows links: a link to a file outside the folder puts that file's
    bytes in DVC's cache (and `dvc push` sends them), so run this first."""
    settings = params.load(args.params, args.set).data
    try:
        listing = ingest.list_dataset(args.folder)
    except DataError as err:
        _error(str(err))
        return 1
    report = ingest.Report(listing.classes)
    every = settings.model_copy(update={"on_bad_image": "skip"})  # list every bad file
    problems = 0
    with progress.bar(len(listing.items), "check") as bar:
        try:
            for _ in ingest.load(listing, report, every):
                bar.update(1)
        except DataError as err:  # the same pixels under two classes, a class left empty
            _error(str(err), bar.write)
            problems += 1
    for row in report.manifest():
        if row[2] == "skipped":
            _error(f"{args.folder / str(row[0])}: {row[-1]}")
            problems += 1
    counts = report.metrics()
    print(
        printable(
            f"{args.folder}: {listing.layout} layout, {len(listing.classes)} classes "
            f"{list(listing.classes)}; {counts['images']} images readable, {report.skipped} "
            f"refused, {counts['duplicates']} exact duplicates"
        )
    )
    return 1 if problems else 0


def params_command(args: argparse.Namespace) -> int:
    """List every param of params.yaml: its key, what it allows and what it means."""
    rows = params.reference()
    width = max(len(key) for key, _, _ in rows) + 2
    for key, allowed, meaning in rows:
        text = f"{key:{width}}{allowed}: {meaning}"
        print(textwrap.fill(text, 99, subsequent_indent=" " * (width + 2)))
    return 0


def cv_command(args: argparse.Namespace) -> int:
    """Print the mean, sd and range of every column of the repeated splits' table."""
    from blastcell import cv, files

    if not args.table.is_file():
        _error(f"{args.table} does not exist: run `dvc repro cv/dvc.yaml` (or `dvc pull`) first")
        return 2
    rows = files.read_json(args.table)
    print(f"{len(rows)} splits (mean ± sd, min to max)")
    print("\n".join(cv.describe(rows)))
    return 0


def _positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _params_options(command: argparse.ArgumentParser, example: str, what: str = "") -> None:
    """`--params FILE` and repeatable `--set KEY=VALUE` overrides, as `dvc exp run -S` takes."""
    command.add_argument(
        "--params",
        type=Path,
        default=Path("params.yaml"),
        help="params file (default params.yaml)" + (f"; {what}" if what else ""),
    )
    command.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a param in DVC's dotted form, e.g. --set {example} (repeatable)",
    )


def main(argv: list[str] | None = None) -> int:
    """Run the `blastcell` command on `argv` (default: the process's); returns the exit status."""
    parser = argparse.ArgumentParser(prog="blastcell", description=__doc__)
    parser.add_argument("--version", action="version", version=f"blastcell {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser(
        "summary", help=summary_command.__doc__, description=summary_command.__doc__
    )
    _params_options(command, "model.width=1.0")
    command.add_argument("--classes", type=int, default=2, help="number of classes (default 2)")
    command.set_defaults(func=summary_command)
    command = commands.add_parser(
        "predict", help=predict_command.__doc__, description=predict_command.__doc__
    )
    command.add_argument(
        "inputs",
        nargs="+",
        type=Path,
        metavar="IMAGE_OR_FOLDER",
        help="image files (TIFF, PNG, JPEG, BMP), or folders searched recursively for them",
    )
    command.add_argument(
        "--model",
        type=Path,
        default=Path("models/model.keras"),
        help="trained Keras model (default models/model.keras)",
    )
    command.add_argument(
        "--classes",
        type=Path,
        default=None,
        help="JSON list of class names (default: classes.json beside the model)",
    )
    command.add_argument(
        "--output",
        type=Path,
        default=Path("predictions.csv"),
        help="CSV table, or a JSON list if the name ends in .json (default predictions.csv)",
    )
    command.add_argument(
        "--batch-size", type=_positive_int, default=32, help="images per model call (default 32)"
    )
    command.add_argument(
        "--tta",
        action="store_true",
        help="test-time augmentation: average over the 8 rotations and flips of each image",
    )
    command.add_argument(
        "--max-image-pixels",
        type=_positive_int,
        default=ingest.MAX_IMAGE_PIXELS,
        help="images with more pixels (first page) are refused before decoding, as "
        "data.max_image_pixels (default %(default)s)",
    )
    command.add_argument(
        "--min-image-side",
        type=_positive_int,
        default=ingest.MIN_IMAGE_SIDE,
        help="images with a shorter side are refused, as data.min_image_side "
        "(default %(default)s)",
    )
    command.add_argument(
        "--square",
        choices=typing.get_args(params.DataParams.model_fields["square"].annotation),
        default=None,
        help="how a non-square image becomes square, as data.square: stretch (when resizing), "
        "pad (with its border's colour) or center_crop (default: as the model was trained, "
        f"from training_data.json beside it, else {ingest.SQUARE})",
    )
    command.set_defaults(func=predict_command)
    command = commands.add_parser(
        "weights", help=weights_command.__doc__, description=weights_command.__doc__
    )
    command.add_argument(
        "architecture",
        nargs="?",
        choices=list(backbones.BACKBONES),
        metavar="ARCHITECTURE",
        help=f"the backbone to show (default all: {', '.join(backbones.BACKBONES)})",
    )
    command.set_defaults(func=weights_command)
    command = commands.add_parser(
        "check", help=check_command.__doc__, description=check_command.__doc__
    )
    command.add_argument("folder", type=Path, metavar="FOLDER", help="the data folder to check")
    _params_options(command, "data.square=pad", "its data.* settings are the ones checked")
    command.set_defaults(func=check_command)
    command = commands.add_parser(
        "params", help=params_command.__doc__, description=params_command.__doc__
    )
    command.set_defaults(func=params_command)
    command = commands.add_parser("cv", help=cv_command.__doc__, description=cv_command.__doc__)
    command.add_argument(
        "table",
        type=Path,
        nargs="?",
        default=Path("cv/splits.json"),
        help="the cv stage's table (default cv/splits.json)",
    )
    command.set_defaults(func=cv_command)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except params.ParamsError as err:
        _error(str(err))
        return 2
    except BrokenPipeError:  # the reader went away (`blastcell params | head`): not an error
        sys.stdout = Path(os.devnull).open("w")  # noqa: SIM115 - flushed at exit, silently
        return 0
    except OSError as err:  # a full or read-only disk, a missing permission: one line
        _error(describe(err))
        return 1


if __name__ == "__main__":
    sys.exit(main())
