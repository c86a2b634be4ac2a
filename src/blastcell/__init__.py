"""blastcell: reproducible classification of blood-smear cell images (ALL blasts)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("blastcell")
except PackageNotFoundError:  # run from a source tree that was not installed
    __version__ = "0+unknown"

# ALL-IDB2's labels 0 and 1 (ImNNN_0.tif, ImNNN_1.tif), the classes of the embedded data set;
# `blast` is the positive class wherever a data set has one.
DEFAULT_CLASSES = ("not_blast", "blast")
POSITIVE_CLASS = DEFAULT_CLASSES[1]
# The synthesize stage leaves this hidden file in the data set it writes: a model trained on it
# records that it has never seen a real cell, and `blastcell predict` says so.
SYNTHETIC_MARKER = ".blastcell-synthetic"
