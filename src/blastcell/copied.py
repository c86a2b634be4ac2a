"""The copies folder, written by the copies stage and read by augment and audit: its one owner.

The folder holds `groups.csv`, a row for every source image that shows the same cells as
another source image (file: its path in the data folder, class, group: the first file of its
group in path order, status: `kept`, or `dropped` with `copies.on_label_conflict: drop` when its
group spans two classes), and `overlay.png`, a WORK_SIZE-square mask, white where the data set
has content burned in at the same place in many of its images (a scale bar, text, a logo),
which no keypoint is taken from. The evidence (which pairs verified, and how) is the copies
stage's report, not part of this folder, so that only a change of the groups re-runs augment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from blastcell.files import DataError, read_csv, write_csv

GROUPS, OVERLAY = "groups.csv", "overlay.png"
_COLUMNS = ["file", "class", "group", "status"]
KEPT, DROPPED = "kept", "dropped"


@dataclass(frozen=True)
class Member:
    """A source image in a copy group."""

    file: str  # its path in the data folder, as the manifest names it
    label: str  # its class
    group: str  # the first file of its group, in path order
    status: str  # KEPT or DROPPED (its group spans two classes)


@dataclass(frozen=True)
class Copies:
    """What the copies stage found: the members of copy groups by file, and the overlay mask."""

    members: dict[str, Member] = field(default_factory=dict)
    overlay: np.ndarray | None = None  # (WORK_SIZE, WORK_SIZE) bool; None: none found

    @property
    def dropped(self) -> dict[str, str]:
        """The files left out, by file, with the reason the manifest gives."""
        return {
            m.file: f"dropped: a copy of another class in copy group {m.group} (label conflict)"
            for m in self.members.values()
            if m.status == DROPPED
        }


def write(folder: Path, members: Iterable[Member], overlay: np.ndarray) -> None:
    """Write `groups.csv` (by file) and `overlay.png` into `folder`."""
    from blastcell import images  # imageio: only where a mask is written or read

    rows = [[m.file, m.label, m.group, m.status] for m in sorted(members, key=lambda m: m.file)]
    write_csv(folder / GROUPS, _COLUMNS, rows)
    images.write(folder / OVERLAY, np.repeat(overlay[..., np.newaxis] * np.uint8(255), 3, 2))


def read(folder: Path) -> Copies:
    """The copy groups and the overlay mask of a copies folder."""
    from blastcell import images

    for name in (GROUPS, OVERLAY):
        if not (folder / name).is_file():
            raise DataError(f"{folder / name} is missing: {folder} is not a copies folder")
    members = {}
    for n, row in enumerate(read_csv(folder / GROUPS), start=2):
        if row.get("status") not in (KEPT, DROPPED):
            raise DataError(f"{folder / GROUPS} line {n}: status must be kept or dropped")
        members[row["file"]] = Member(row["file"], row["class"], row["group"], row["status"])
    mask = images.read(folder / OVERLAY)[..., 0] > 127
    return Copies(members, mask if mask.any() else None)


def merge(groups: Mapping[str, str], copies: Copies) -> dict[str, str]:
    """Each group of `groups` (a file's group by its file: its patient with `data.group_by`,
    else its source) joined with every other group that holds a copy of one of its files;
    returns the group each old group becomes, named by the first of the names joined."""
    parent = {g: g for g in groups.values()}

    def root(g: str) -> str:
        while parent[g] != g:
            parent[g] = parent[parent[g]]
            g = parent[g]
        return g

    first_of: dict[str, str] = {}  # copy group -> the first old group seen in it
    for file in sorted(copies.members):
        member = copies.members[file]
        if member.status != KEPT or file not in groups:
            continue
        old = groups[file]
        other = first_of.setdefault(member.group, old)
        a, b = root(old), root(other)
        if a != b:
            parent[max(a, b)] = min(a, b)
    return {g: root(g) for g in parent}
