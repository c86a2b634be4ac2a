"""TensorFlow and Keras, imported without their start-up noise.

Importing TensorFlow prints several lines to the process's standard error before its logging is
set up (oneDNN notes, "could not find cuda drivers", CPU instruction hints), which
TF_CPP_MIN_LOG_LEVEL does not silence, and the first look for GPUs on a machine without one
logs a CUDA `cuInit` error. Every blastcell module takes TensorFlow and Keras from here, so the
stages and the `blastcell` command start quietly: the import and the device discovery run with
the C-level standard error sent to /dev/null (Python errors still raise, after it is restored),
and TensorFlow's own log is limited to warnings and errors unless TF_CPP_MIN_LOG_LEVEL is set.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@contextlib.contextmanager
def _muted_stderr() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the block (what C++ libraries write there)."""
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


with _muted_stderr():
    import tensorflow as tf

    # Finds the devices (and fails cuInit where there is no GPU) without starting the runtime,
    # so a tf.distribute strategy can still be created afterwards.
    tf.config.list_physical_devices()
    import keras


class _RetracingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


def models_in_turn() -> None:
    """Before building and running model after model in this process (the cv stage's splits):
    drop TensorFlow's warning that a function "triggered tf.function retracing". Each model's
    training and prediction functions are new, traced once each, but TensorFlow counts those of
    the same Keras source line as one function traced again and again."""
    tf.get_logger().addFilter(_RetracingFilter())


__all__ = ["keras", "models_in_turn", "tf"]
