"""What a stage used, for the tests and benchmarks: the params keys it read, the blastcell
modules it imported, and its peak memory.

When $BLASTCELL_TRACE names a file, the stage runner hands the stage its params through
`recorded`, which notes every key read, and `trace` appends one JSON line per stage run to the
file. The end-to-end tests check each dvc.yaml stage's declared params and deps against these
lines; bench/pipeline.py reads the peak resident set sizes. Unset, none of this runs.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

TRACE_ENV = "BLASTCELL_TRACE"


def tracing() -> bool:
    """Whether $BLASTCELL_TRACE asks for a trace."""
    return bool(os.environ.get(TRACE_ENV))


class Recorded:
    """A read-only view of a params model that adds each field read, as 'section.key', to
    `reads`. Sections inside it are recorded views too; a property (e.g. `cv.seeds`) records
    the fields it reads. Sent to another process (pickled), it becomes the plain model, and
    every field of it counts as read: that process may read any of them."""

    __slots__ = ("_model", "_prefix", "_reads")

    def __init__(self, model: BaseModel, reads: set[str], prefix: str = "") -> None:
        object.__setattr__(self, "_model", model)
        object.__setattr__(self, "_prefix", prefix)
        object.__setattr__(self, "_reads", reads)

    def __getattr__(self, name: str) -> Any:
        cls = type(self._model)
        attr = getattr(cls, name, None)
        if isinstance(attr, property):
            return attr.fget(self)
        value = getattr(self._model, name)
        if name in cls.model_fields:
            if isinstance(value, BaseModel) and not self._prefix:  # a section of the whole
                return Recorded(value, self._reads, f"{name}.")
            if isinstance(value, dict) and not self._prefix:  # `external`: name -> folder
                return RecordedMapping(value, self._reads, name)
            self._reads.add(f"{self._prefix}{name}")
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"params are read-only: cannot set {self._prefix}{name}")

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        self._reads.update(f"{self._prefix}{name}" for name in type(self._model).model_fields)
        return _identity, (self._model,)

    def __repr__(self) -> str:
        return f"Recorded({self._model!r})"


class RecordedMapping(Mapping[str, Any]):
    """A read-only view of a section that is a mapping of names the user chose (`external`):
    looking up one name records 'section.name' (the external stage reads only its own set);
    anything else (listing, counting) records the whole section."""

    def __init__(self, mapping: dict[str, Any], reads: set[str], name: str) -> None:
        self._mapping, self._reads, self._name = mapping, reads, name

    def __getitem__(self, key: str) -> Any:
        self._reads.add(f"{self._name}.{key}")
        return self._mapping[key]

    def __contains__(self, key: object) -> bool:
        self._reads.add(f"{self._name}.{key}")
        return key in self._mapping

    def __iter__(self) -> Iterator[str]:
        self._reads.add(self._name)
        return iter(self._mapping)

    def __len__(self) -> int:
        self._reads.add(self._name)
        return len(self._mapping)


def _identity(model: BaseModel) -> BaseModel:
    return model


def trace(stage: str, reads: set[str]) -> None:
    """Append one JSON line for `stage` to $BLASTCELL_TRACE: the params keys it read, the
    blastcell modules loaded, and the peak resident set size (MiB) of this process and of its
    largest child process (worker pools)."""
    path = os.environ.get(TRACE_ENV)
    if not path:
        return
    modules = sorted(
        "src/" + name.replace(".", "/") + ("/__init__.py" if name == "blastcell" else ".py")
        for name in sys.modules
        if name == "blastcell" or name.startswith("blastcell.")
    )
    line = {
        "stage": stage,
        "params": sorted(reads),
        "modules": modules,
        "peak_rss_mb": _peak_rss_mb(resource.RUSAGE_SELF),
        "children_peak_rss_mb": _peak_rss_mb(resource.RUSAGE_CHILDREN),
    }
    with Path(path).open("a") as f:
        f.write(json.dumps(line) + "\n")


def _peak_rss_mb(who: int) -> float:
    """Peak resident set size in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(who).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)
