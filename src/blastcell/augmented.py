"""The augmented folder, written by the augment stage and read by prepare: its one owner.

The folder holds every source image (copy 0) and its augmented copies as `{stem}_{k}.png`,
`index.csv` with one row per file (file, source, group, class, copy: exact duplicates share a
source; the images of one patient, slide or sample share a group, see `data.group_by`),
`classes.json`, the class names in label order, and `source.json`, what the images came from
(`Source`), which the prepared folder and the trained model carry on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from blastcell.files import DataError, read_csv, read_json, write_csv, write_json

INDEX, CLASSES, SOURCE = "index.csv", "classes.json", "source.json"
_COLUMNS = ["file", "source", "group", "class", "copy"]


@dataclass(frozen=True)
class Record:
    """One image of the augmented set: file, the original it came from, its group, class, copy
    number."""

    file: str
    source: str
    group: str  # the patient, slide or sample; the source itself when data.group_by is null
    label: int
    copy: int  # 0 = the original itself


@dataclass(frozen=True)
class Source:
    """What a data set is: its folder, whether it is the embedded synthetic set, the checksum
    of its manifest, the images used, and how non-square images were made square."""

    data_dir: str
    synthetic: bool
    manifest_sha256: str
    images: int
    square: str

    def to_json(self) -> dict[str, object]:
        """The fields in order, as `source.json` holds them (and spec.json under `source`, and
        `training_data.json` as its first keys)."""
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Mapping[str, object]) -> Source:
        """The source that `to_json` wrote; TypeError if a field is missing or unknown."""
        return cls(**raw)


def write_index(
    folder: Path, classes: Sequence[str], records: Sequence[Record], source: Source
) -> None:
    """Write `index.csv`, `classes.json` and `source.json` beside the images."""
    rows = [[r.file, r.source, r.group, classes[r.label], r.copy] for r in records]
    write_csv(folder / INDEX, _COLUMNS, rows)
    write_json(folder / CLASSES, list(classes))
    write_json(folder / SOURCE, source.to_json())


def read_index(folder: Path) -> tuple[list[str], list[Record], Source]:
    """The class names, the records (in file order) and the source of an augmented folder."""
    for name in (INDEX, CLASSES, SOURCE):
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
        records.append(
            Record(row["file"], row["source"], row["group"], label[row["class"]], int(row["copy"]))
        )
    return classes, records, Source.from_json(read_json(folder / SOURCE))
