"""Files the stages write and read: atomic outputs (a failed or killed run leaves the previous
result in place and no half-written file), JSON and CSV.

Images are read and written by `blastcell.images` (the pipeline's own) and `blastcell.ingest`
(the data sets users bring).
"""

from __future__ import annotations

import contextlib
import csv
import glob
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


class DataError(ValueError):
    """The input data is missing, malformed or unreadable; the message names the path."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# tempfile's random part: 8 characters of [a-z0-9_].
_TEMP_PART = "[a-z0-9_]" * 8


def _remove_stale(parent: Path, prefix: str, suffix: str = "") -> None:
    """Remove what a killed run left: `parent/<prefix><8 random characters><suffix>`.

    DVC never runs two stages in one workspace at once, so such a leftover is never live.
    """
    for stale in parent.glob(f"{glob.escape(prefix)}{_TEMP_PART}{glob.escape(suffix)}"):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale)
        else:
            stale.unlink(missing_ok=True)


@contextlib.contextmanager
def scratch_dir(parent: Path, name: str) -> Iterator[Path]:
    """Yield a new folder `parent/.<name>.XXXXXXXX`, removed afterwards, whatever happens.

    Leftovers of a run that was killed are removed first.
    """
    parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(parent, f".{name}.")
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temporary folder that replaces `target` only if the block succeeds.

    Temporary folders that a killed run left beside `target` are removed first.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(target.parent, f".{target.name}.")
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private; outputs get the usual mode
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


@contextlib.contextmanager
def atomic_file(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target` that replaces it only if the block succeeds.

    Temporary files that a killed run left beside `target` are removed first.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(target.parent, f".{target.stem}.", target.suffix)
    fd, name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    tmp.chmod(0o666 & ~_umask())
    try:
        yield tmp
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, obj: object) -> None:
    """Write JSON atomically, keys in insertion order."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")


def read_json(path: Path) -> object:
    """Read a JSON file."""
    return json.loads(path.read_text())


def csv_text(header: list[str], rows: list[list[object]]) -> str:
    """A CSV table as text (unix line endings), as `write_csv` writes it."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    """Write a CSV table (unix line endings)."""
    path.write_text(csv_text(header, rows), newline="")


def read_csv(path: Path) -> list[dict[str, str]]:
    """Read a CSV table as a list of row dicts."""
    with path.open(newline="") as f:
        return list(csv.DictReader(f))
