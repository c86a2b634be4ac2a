"""How every stage script runs: its command line, its params, its one summary line, its errors.

A stage script defines one function, `run(params, *, <path arguments>) -> str`, and ends with
`runner.main(run)`. The runner builds the command line from the function's signature (each
keyword argument annotated `Path`, or `Output` for a file or folder the stage writes (through a
temporary beside it) or `OutputFolder` for a folder it writes files into, is a required
`--name`; `Path | None`, `str | None` and `int | None` with a default are optional), loads and
validates the whole of `--params` (default params.yaml), checks that every `Output` can be
written (so a read-only or full disk stops the stage before its long work), calls `run`
(passing that file's path too, as `params_file`, if `run` takes it: a stage that runs other
stages passes it on), prints the line it returns as `<stage>: <line>` and, when
$BLASTCELL_TRACE is set, notes what the stage read (`blastcell.instrument`).

Paths reach a stage as command-line arguments that dvc.yaml writes out literally, or from
params.yaml (`data.dir`, the `external` folders), which the stage reads itself: no param value
is ever part of a shell command.

A params error (`ParamsError`), a data error (`DataError`) or a file-system error (`OSError`:
a full or read-only disk, a missing permission) ends the stage with that one line, naming the
key or file and what is allowed or what failed, and exit status 1, so DVC stops and records
nothing. Control characters in it are escaped (`files.printable`): a file name cannot break the
line. Any other exception is a bug and keeps its traceback. Set BLASTCELL_DEBUG=1 (e.g.
`BLASTCELL_DEBUG=1 dvc repro`) to get the traceback of every error.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import os
import sys
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path

from blastcell import instrument
from blastcell.files import DataError, check_writable, describe, printable
from blastcell.params import ParamsError, load

DEBUG_ENV = "BLASTCELL_DEBUG"
USER_ERRORS = (ParamsError, DataError)

Stage = Callable[..., str]
PARAMS_FILE = "params_file"
OUTPUT = "output"
OUTPUT_FOLDER = "output folder"
Output = typing.Annotated[Path, OUTPUT]  # a file or folder the stage writes whole
OutputFolder = typing.Annotated[Path, OUTPUT_FOLDER]  # a folder the stage writes files into


def debugging() -> bool:
    """Whether $BLASTCELL_DEBUG asks for tracebacks."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def stage_name(stage: Stage) -> str:
    """The stage's name: its script's file name (stages/<name>.py)."""
    return Path(inspect.getfile(stage)).stem


def _count(text: str) -> int:
    """An argparse type: an integer >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {value}")
    return value


def parser(stage: Stage) -> argparse.ArgumentParser:
    """The stage's command line, from the keyword arguments of its `run`."""
    doc = stage.__globals__.get("__doc__")  # the stage script's docstring
    out = argparse.ArgumentParser(
        prog=f"stages/{stage_name(stage)}.py",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    out.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file")
    for name, (hint, default) in arguments(stage).items():
        convert = {Path: Path, Output: Path, OutputFolder: Path, int: _count, str: str}[hint]
        flag = "--" + name.replace("_", "-")
        if default is inspect.Parameter.empty:
            out.add_argument(flag, type=convert, required=True, dest=name)
        else:
            out.add_argument(flag, type=convert, default=default, dest=name)
    return out


def arguments(stage: Stage) -> dict[str, tuple[object, object]]:
    """The stage's command-line arguments: name -> (type without `| None`, default)."""
    hints = typing.get_type_hints(stage, include_extras=True)
    found = {}
    for name, arg in inspect.signature(stage).parameters.items():
        if arg.kind is not inspect.Parameter.KEYWORD_ONLY or name == PARAMS_FILE:
            continue
        hint = hints[name]
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            (hint,) = [a for a in typing.get_args(hint) if a is not type(None)]
        found[name] = (hint, arg.default)
    return found


def check_outputs(stage: Stage, args: dict[str, object]) -> None:
    """Check that every output among the parsed `args` can be written (`files.check_writable`)."""
    for name, (hint, _) in arguments(stage).items():
        if hint in (Output, OutputFolder) and args[name] is not None:
            check_writable(args[name], into=hint == OutputFolder)


def call(stage: Stage, argv: Sequence[str] | None = None) -> str:
    """Run a stage in this process as its command line would; its summary line, unprinted.
    Errors propagate."""
    args = vars(parser(stage).parse_args(argv))
    path = args.pop("params")
    params = load(path)
    check_outputs(stage, args)
    if PARAMS_FILE in inspect.signature(stage).parameters:
        args[PARAMS_FILE] = path
    reads: set[str] = set()
    if instrument.tracing():
        params = instrument.Recorded(params, reads)
    name = stage_name(stage)
    line = printable(f"{name}: {stage(params, **args)}")
    instrument.trace(name, reads)
    return line


def invoke(stage: Stage, argv: Sequence[str] | None = None) -> str:
    """`call`, printing the summary line."""
    line = call(stage, argv)
    print(line, flush=True)
    return line


def main(stage: Stage) -> None:
    """The entry point of a stage script: `invoke`, with data and params errors as one line."""
    name = stage_name(stage)
    try:
        invoke(stage)
    except USER_ERRORS as err:
        if debugging():
            raise
        print(printable(f"{name}: {err}"), file=sys.stderr)
        sys.exit(1)
    except OSError as err:
        if debugging():
            raise
        print(printable(f"{name}: {describe(err)}"), file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        if debugging():
            raise
        print(f"{name}: interrupted", file=sys.stderr)
        sys.exit(130)


class StageFailed(DataError):
    """A stage that `run_stage` ran failed; the message is its own one-line error."""


def stage_module(script: Path) -> types.ModuleType:
    """The stage script `script`, imported from its file as a module (its `main` not run)."""
    spec = importlib.util.spec_from_file_location(f"stage_{script.stem}", script)
    if spec is None or spec.loader is None:
        raise ImportError(f"{script} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_stage(stage: Stage, args: Sequence[object], context: str) -> str:
    """Run a stage (a `stage_module`'s `run`) in this process as the command line `args` would
    (`call`); its summary line, unprinted. Its params, data or file-system error is raised
    again as StageFailed, its one line with `context` (e.g. 'split 3') in front.
    """
    try:
        return call(stage, [str(a) for a in args])
    except USER_ERRORS as err:
        raise StageFailed(f"{context}: {stage_name(stage)}: {err}") from err
    except OSError as err:
        raise StageFailed(f"{context}: {stage_name(stage)}: {describe(err)}") from err
