"""What pool workers import in the tests, kept light (a worker imports the module of the function
it runs, and a test module imports TensorFlow): the library modules whose functions run in pool
workers, read from the library's source, and the tests' writers that run in workers."""

import os
from pathlib import Path

import numpy as np

from blastcell import images

LIBRARY = Path(__file__).resolve().parents[1] / "src" / "blastcell"

WORKER_MODULES = tuple(
    f"blastcell.{p.stem}"
    for p in sorted(LIBRARY.glob("*.py"))
    if "parallel.map_ordered(" in p.read_text(encoding="utf-8")
)


def write_with_pid(path: Path, image: np.ndarray) -> None:
    """Write the image and, beside it, the id of the process that wrote it."""
    images.write(path, image)
    path.with_suffix(".pid").write_text(str(os.getpid()))


def fail_on_fourth(path: Path, image: np.ndarray) -> None:
    """Write the image, but fail on the fourth (a full disk)."""
    if path.name.startswith("Im004_"):
        raise OSError("disk full")
    images.write(path, image)
