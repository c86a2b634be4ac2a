"""How every stage script runs: its command line, its params, its one summary line, its errors.

A stage script defines one function, `run(params, *, <path arguments>) -> str`, and ends with
`runner.main(run)`. The runner builds the command line from the function's signature (each
keyword argument annotated `Path` is a required `--name`; `Path | None` and `int | None` with a
default are optional), loads and validates the whole of `--params` (default params.yaml), calls
`run` (passing that file's path too, as `params_file`, if `run` takes it: a stage that runs
other stages passes it on), prints the line it returns as `<stage>: <line>` and, when
$BLASTCELL_TRACE is set, notes what the stage read (`blastcell.instrument`).

A params error (`ParamsError`) or a data error (`DataError`) ends the stage with that one line,
naming the key or file and what is allowed, and exit status 1, so DVC stops and records nothing.
Any other exception is a bug and keeps its traceback. Set BLASTCELL_DEBUG=1 (e.g.
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

from blastcell import instrument
from blastcell.files import DataError
from blastcell.params import ParamsError, load

DEBUG_ENV = "BLASTCELL_DEBUG"
USER_ERRORS = (ParamsError, DataError)

Stage = Callable[..., str]
PARAMS_FILE = "params_file"


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
    hints = typing.get_type_hints(stage)
    for name, arg in inspect.signature(stage).parameters.items():
        if arg.kind is not inspect.Parameter.KEYWORD_ONLY or name == PARAMS_FILE:
            continue
        hint = hints[name]
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            (hint,) = [a for a in typing.get_args(hint) if a is not type(None)]
        convert = {Path: Path, int: _count}[hint]
        flag = "--" + name.replace("_", "-")
        if arg.default is inspect.Parameter.empty:
            out.add_argument(flag, type=convert, required=True, dest=name)
        else:
            out.add_argument(flag, type=convert, default=arg.default, dest=name)
    return out


def invoke(stage: Stage, argv: Sequence[str] | None = None) -> str:
    """Run a stage in this process as its command line would; errors propagate."""
    args = vars(parser(stage).parse_args(argv))
    path = args.pop("params")
    params = load(path)
    if PARAMS_FILE in inspect.signature(stage).parameters:
        args[PARAMS_FILE] = path
    reads: set[str] = set()
    if instrument.tracing():
        params = instrument.Recorded(params, reads)
    name = stage_name(stage)
    line = f"{name}: {stage(params, **args)}"
    print(line, flush=True)
    instrument.trace(name, reads)
    return line


def main(stage: Stage) -> None:
    """The entry point of a stage script: `invoke`, with data and params errors as one line."""
    name = stage_name(stage)
    try:
        invoke(stage)
    except USER_ERRORS as err:
        if debugging():
            raise
        print(f"{name}: {err}", file=sys.stderr)
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
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode == 0:
        return
    lines = result.stderr.strip().splitlines()
    if not (lines and lines[-1].startswith(f"{script.stem}: ")) or debugging():
        sys.stderr.write(result.stderr)
    last = lines[-1] if lines else f"{script.stem} exited with status {result.returncode}"
    raise StageFailed(f"{context}: {last}")
