"""How every stage script runs: bad data or params end it with one line, not a traceback.

A stage that meets a params error (`ParamsError`) or a data error (`DataError`) prints one line,
`<stage>: <message>`, the message naming the key or file and what is allowed, and exits with
status 1, so DVC stops and records nothing. Any other exception is a bug and keeps its traceback.
Set BLASTCELL_DEBUG=1 (e.g. `BLASTCELL_DEBUG=1 dvc repro`) to get the traceback of every error.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from blastcell.data import DataError
from blastcell.params import ParamsError

DEBUG_ENV = "BLASTCELL_DEBUG"
USER_ERRORS = (ParamsError, DataError)


def debugging() -> bool:
    """Whether $BLASTCELL_DEBUG asks for tracebacks."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def run(main: Callable[[], object], name: str | None = None) -> None:
    """Call a stage's `main`, turning its data and params errors into one line and exit 1."""
    name = name or Path(sys.argv[0]).stem
    try:
        main()
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
