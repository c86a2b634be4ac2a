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
import inspect
import os
import subprocess
import sys
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path

from blastcell import instrument, lifetime
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


def invoke(stage: Stage, argv: Sequence[str] | None = None) -> str:
    """Run a stage in this process as its command line would; errors propagate."""
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
    print(line, flush=True)
    instrument.trace(name, reads)
    return line


def main(stage: Stage) -> None:
    """The entry point of a stage script: `invoke`, with data and params errors as one line."""
    name = stage_name(stage)
    lifetime.exit_with_parent()  # a stage that another started (cv's splits) ends with it
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
    """A stage script run by `run_script` failed; the message is its own one-line error."""


def run_script(script: Path, args: Sequence[object], context: str) -> None:
    """Run a stage script in a new process; raise StageFailed with its one-line error.

    Its standard output is not shown; an error that is not one line (a bug's traceback) is
    shown whole. `context` (e.g. 'split 3') starts the message.
    """
    cmd = [sys.executable, str(script), *map(str, args)]
    env = lifetime.child_environment()  # it ends when this process does, even by kill -9
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if result.returncode == 0:
        return
    lines = result.stderr.strip().splitlines()
    if not (lines and lines[-1].startswith(f"{script.stem}: ")) or debugging():
        sys.stderr.write(result.stderr)
    last = lines[-1] if lines else f"{script.stem} exited with status {result.returncode}"
    raise StageFailed(f"{context}: {last}")
