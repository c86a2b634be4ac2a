"""Files the stages write and read: atomic outputs (a failed or killed run leaves the previous
result in place and no half-written file), JSON and CSV.

Every temporary file or folder the project makes is named for the output it becomes or the
scratch space it is, `<stem><suffix>`, as `.<stem>.blastcell-tmp-XXXXXXXX<suffix>`: one pattern
(`is_temporary`), which .gitignore ignores and `remove_temporaries` finds, whatever made it and
wherever a kill left it.

Images are read and written by `blastcell.images` (the pipeline's own) and `blastcell.ingest`
(the data sets users bring).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import glob
import io
import json
import os
import re
import shutil
import tempfile
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path


class DataError(ValueError):
    """The input data is missing, malformed or unreadable; the message names the path."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_MARKER = "blastcell-tmp-"  # in every temporary's name, before tempfile's random part
# tempfile's random part: 8 characters of [a-z0-9_].
_TEMP_PART = "[a-z0-9_]" * 8
_TEMPORARY_NAME = re.compile(rf"\..*\.{_MARKER}[a-z0-9_]{{8}}(\..*)?", re.DOTALL)


def is_temporary(name: str) -> bool:
    """Whether a file or folder `name` is a temporary's: `.<stem>.blastcell-tmp-XXXXXXXX<suffix>`,
    for an output or scratch space named `<stem><suffix>`."""
    return _TEMPORARY_NAME.fullmatch(name) is not None


def _affixes(name: str) -> tuple[str, str]:
    """tempfile's prefix and suffix for a temporary for `name`: the suffix stays last, for the
    programs that go by it (Keras, matplotlib)."""
    path = Path(name)
    return f".{path.stem}.{_MARKER}", path.suffix


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _remove_stale(parent: Path, name: str) -> None:
    """Remove what a killed run left of the temporaries for `name` in `parent`.

    DVC never runs two stages in one workspace at once, so such a leftover is never live.
    """
    prefix, suffix = _affixes(name)
    for stale in parent.glob(f"{glob.escape(prefix)}{_TEMP_PART}{glob.escape(suffix)}"):
        _remove(stale)


def _temporary(parent: Path, name: str, *, folder: bool) -> Path:
    """Make an empty temporary folder or file for `name` in `parent`, after removing those a
    killed run left there."""
    parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(parent, name)
    prefix, suffix = _affixes(name)
    if folder:
        return Path(tempfile.mkdtemp(suffix=suffix, prefix=prefix, dir=parent))
    fd, path = tempfile.mkstemp(suffix=suffix, prefix=prefix, dir=parent)
    os.close(fd)
    return Path(path)


@contextlib.contextmanager
def scratch_dir(parent: Path, name: str) -> Iterator[Path]:
    """Yield a new temporary folder for `name` in `parent`, removed afterwards, whatever happens.

    Leftovers of a run that was killed are removed first.
    """
    tmp = _temporary(parent, name, folder=True)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def scratch_file(parent: Path, name: str) -> Iterator[Path]:
    """Yield a new empty temporary file for `name` in `parent`, removed afterwards, whatever
    happens: for a file another program writes and this one reads (Keras's model file, before
    `model.save` takes its time stamps out).

    Leftovers of a run that was killed are removed first.
    """
    tmp = _temporary(parent, name, folder=False)
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def _naming(err: OSError, target: Path, tmp: Path) -> OSError:
    """`err`, raised while writing the output `target` through its temporary `tmp`, naming
    `target` (or the file in it) where it names no file (a library's own short write: '198147
    requested and 44784 written') or the temporary, and saying so where the disk is full."""
    name = str(err.filename) if err.filename is not None else None
    if name is not None and not name.startswith(str(tmp)):
        return err
    where = str(target) + name.removeprefix(str(tmp)) if name else str(target)
    cause, code = err.strerror or str(err), err.errno
    with contextlib.suppress(OSError):
        if os.statvfs(target.parent).f_bavail == 0:
            cause, code = os.strerror(errno.ENOSPC), errno.ENOSPC
    return OSError(code, cause, where)


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temporary folder that replaces `target` only if the block succeeds.

    Temporary folders that a killed run left beside `target` are removed first. An OSError in
    the block names `target` (`_naming`).
    """
    tmp = _temporary(target.parent, target.name, folder=True)
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private; outputs get the usual mode
    try:
        try:
            yield tmp
        except OSError as err:
            raise _naming(err, target, tmp) from err
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


@contextlib.contextmanager
def atomic_file(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target` that replaces it only if the block succeeds.

    Temporary files that a killed run left beside `target` are removed first. An OSError in the
    block names `target` (`_naming`).
    """
    tmp = _temporary(target.parent, target.name, folder=False)
    tmp.chmod(0o666 & ~_umask())
    try:
        try:
            yield tmp
        except OSError as err:
            raise _naming(err, target, tmp) from err
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_json_files() -> Iterator[Callable[[Path, object], None]]:
    """Yield `write(path, obj)`, which writes JSON as `write_json` does but to a temporary beside
    `path`, as often as it is called (e.g. a curve after every epoch): each path written gets its
    last version only if the block succeeds, so an interrupted or failed block leaves the
    previous files, never a partial series."""
    with contextlib.ExitStack() as stack:
        temporaries: dict[Path, Path] = {}

        def write(path: Path, obj: object) -> None:
            if path not in temporaries:
                temporaries[path] = stack.enter_context(atomic_file(path))
            temporaries[path].write_text(_json_text(obj))

        yield write


def remove_temporaries(folders: Iterable[Path]) -> list[Path]:
    """Remove every temporary (`is_temporary`) in `folders` and their subfolders; return them.

    A stage removes the temporaries of its own outputs that a killed run left when it next runs,
    but DVC may restore a stage from its run-cache instead, running nothing: this finds them all.
    Call it only while no stage writes in `folders` (DVC runs one stage at a time), since a live
    temporary looks the same. Symbolic links are not followed, and a missing folder is skipped.
    """
    removed = []
    for folder in folders:
        for parent, dirs, names in os.walk(folder):
            for name in [*dirs, *names]:
                if is_temporary(name):
                    _remove(Path(parent, name))
                    removed.append(Path(parent, name))
            dirs[:] = [d for d in dirs if not is_temporary(d)]  # removed, not to be walked
    return sorted(removed)


def _json_text(obj: object) -> str:
    return json.dumps(obj, indent=2) + "\n"


def write_json(path: Path, obj: object) -> None:
    """Write JSON atomically, keys in insertion order."""
    with atomic_file(path) as tmp:
        tmp.write_text(_json_text(obj))


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


_UNPRINTABLE = {"Cc", "Cf", "Zl", "Zp"}  # controls, format (bidi overrides), line breaks


def printable(text: object) -> str:
    """`text` with every control character escaped (`\\n`, `\\x1b`, `\\u2028`, ...), so that a
    file name printed in a one-line message or log line cannot break the line or forge another.
    """
    return "".join(
        c.encode("unicode_escape").decode("ascii")
        if unicodedata.category(c) in _UNPRINTABLE
        else c
        for c in str(text)
    )


def check_writable(path: Path, *, into: bool = False) -> None:
    """Raise OSError (naming the folder) unless the output `path` can be written now.

    The stages write an output through a temporary beside it (`atomic_file`, `atomic_dir`), or,
    with `into`, write files into the folder `path`: this writes, syncs and removes one byte in
    the folder written in (creating the folders missing on the way, and removing them again), so
    that a read-only or full file system, or a missing permission, shows before a stage's long
    work rather than after it, and the check leaves nothing behind.
    """
    folder = path if into else path.parent
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        prefix, suffix = _affixes(path.name)  # a kill here leaves what the sweep finds
        fd, name = tempfile.mkstemp(suffix=suffix, prefix=prefix, dir=folder)
        try:
            os.write(fd, b"\0")
            os.fsync(fd)
        except OSError as err:
            raise OSError(err.errno, err.strerror, str(folder)) from None
        finally:
            os.close(fd)
            Path(name).unlink()
    finally:
        for created in missing:  # deepest first
            with contextlib.suppress(OSError):
                created.rmdir()


def describe(err: OSError) -> str:
    """One line for a file-system error: the path and the cause, e.g. 'models: Read-only file
    system' or 'models/model.keras: No space left on device' (callers escape it, `printable`)."""
    cause = err.strerror or str(err)
    return f"{err.filename}: {cause}" if err.filename is not None else cause
