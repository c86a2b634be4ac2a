"""The augmented folder, written by the augment stage and read by prepare: its one owner.

The folder holds every source image (copy 0) and its augmented copies as `{stem}_{k}.png`,
`index.csv` with one row per file (file, source, class, copy; exact duplicates share a source)
and `classes.json`, the class names in label order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from blastcell.files import DataError, read_csv, read_json, write_csv, write_json

INDEX, CLASSES = "index.csv", "classes.json"
_COLUMNS = ["file", "source", "class", "copy"]


@dataclass(frozen=True)
class Record:
    """One image of the augmented set: file, the original it came from, class, copy number."""

    file: str
    source: str
    label: int
    copy: int  # 0 = the original itself


def write_index(folder: Path, classes: Sequence[str], records: Sequence[Record]) -> None:
    """Write `index.csv` and `classes.json` beside the images."""
    rows = [[r.file, r.source, classes[r.label], r.copy] for r in records]
    write_csv(folder / INDEX, _COLUMNS, rows)
    write_json(folder / CLASSES, list(classes))


def read_index(folder: Path) -> tuple[list[str], list[Record]]:
    """The class names and the records of an augmented folder, in file order."""
    for name in (INDEX, CLASSES):
        if not (folder / name).is_file():
            raise DataError(f"{folder / name} is missing: {folder} is not an augmented folder")
    classes = read_json(folder / CLASSES)
    label = {name: i for i, name in enumerate(classes)}
    records = []
    for n, row in enumerate(read_csv(folder / INDEX), start=2):
        if row.get("class") not in label:
            raise DataError(
                f"{folder / INDEX} line {n}: class {row.get('class')!r} is not in "
                f"{folder / CLASSES}; rerun the augment stage"
            )
        records.append(Record(row["file"], row["source"], label[row["class"]], int(row["copy"])))
    return classes, records
