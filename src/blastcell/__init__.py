"""blastcell: reproducible classification of blood-smear cell images (ALL blasts)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("blastcell")
except PackageNotFoundError:  # run from a source tree that was not installed
    __version__ = "0+unknown"
