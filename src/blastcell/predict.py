"""Classify image files with a trained model: the library behind `blastcell predict`.

Inputs are files and folders (walked recursively, sorted; hidden and system files and files of
other suffixes inside folders are left out, by ingest's rules). Each image is decoded to 8-bit
RGB by `ingest.decode`, resized as the prepare stage does (`split.resize`) and fed to the model
as raw uint8-range pixels. A file that cannot be used gives a row with status `error` and the
reason; the others are still predicted.

Test-time augmentation (`tta=True`) averages the softmax over the 8 symmetries of the square
(the dihedral group: rotations by 0, 90, 180, 270 degrees, each with and without a horizontal
flip, which also covers the vertical flip and both transposes). Because the set is a group, the
averaged prediction is exactly invariant to flipping or rotating the input image.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from blastcell import ingest, split
from blastcell.data import atomic_file, write_csv, write_json

if TYPE_CHECKING:
    from blastcell.tf import keras

OK, ERROR = "ok", "error"


class PredictError(ValueError):
    """The model, class names or options cannot be used; the message names the file."""


@dataclass(frozen=True)
class Prediction:
    """One input's outcome: softmax probabilities (None if it failed) or why it failed."""

    path: Path
    probabilities: np.ndarray | None
    message: str = ""

    @property
    def ok(self) -> bool:
        """Whether the image was predicted."""
        return self.probabilities is not None


@dataclass(frozen=True)
class Input:
    """A file to predict, or (with `error` set) an input that cannot be used."""

    path: Path
    error: str = ""


def _walk(folder: Path) -> Iterator[Input]:
    """Image files below `folder`, sorted; hidden entries and other suffixes left out silently."""
    try:
        entries = sorted(folder.iterdir())
    except OSError as err:
        yield Input(folder, f"{folder}: cannot list folder: {err.strerror or err}")
        return
    for entry in entries:
        if ingest.is_hidden(entry):  # the same rules as reading a data set
            continue
        if entry.is_dir() and not entry.is_symlink():
            yield from _walk(entry)
        elif entry.is_file() and entry.suffix.lower() in ingest.IMAGE_SUFFIXES:
            yield Input(entry)


def collect(paths: Sequence[Path]) -> list[Input]:
    """Expand files and folders into inputs in order, each file once; bad paths as errors."""
    found: list[Input] = []
    seen: set[Path] = set()

    def add(item: Input) -> None:
        key = item.path.resolve()
        if item.error or key not in seen:
            seen.add(key)
            found.append(item)

    for path in paths:
        if path.is_dir():
            items = list(_walk(path))
            if not items:
                items = [Input(path, f"{path}: folder holds no image files")]
            for item in items:
                add(item)
        elif not path.exists():
            add(Input(path, f"{path}: no such file or folder"))
        elif path.suffix.lower() not in ingest.IMAGE_SUFFIXES:
            suffixes = list(ingest.IMAGE_SUFFIXES)
            add(Input(path, f"{path}: not an image file; suffixes read: {suffixes}"))
        else:
            add(Input(path))
    return found


def load_model(path: Path) -> keras.Model:
    """Load a saved Keras model safely (no code from the file); checks it takes square RGB."""
    if not path.is_file():
        raise PredictError(f"model file {path} does not exist")
    from blastcell.tf import keras

    try:
        model = keras.models.load_model(path, safe_mode=True)
    except Exception as err:  # loaders raise many types; all mean "not a usable model"
        raise PredictError(f"{path}: cannot load model: {err}") from err
    shape = tuple(model.input_shape)
    if len(shape) != 4 or shape[1] != shape[2] or shape[1] is None or shape[3] != 3:
        raise PredictError(f"{path}: model input shape {shape} is not (None, S, S, 3)")
    return model


def read_classes(path: Path) -> list[str]:
    """Class names from a JSON list of unique, non-empty strings (index = model output)."""
    if not path.is_file():
        raise PredictError(
            f"class names file {path} does not exist; pass --classes (a JSON list of names; "
            "the train stage writes classes.json beside the model)"
        )
    try:
        classes = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise PredictError(f"{path}: cannot read class names: {err}") from err
    if not (isinstance(classes, list) and all(isinstance(c, str) and c for c in classes)):
        raise PredictError(f"{path}: expected a JSON list of class names")
    if len(set(classes)) != len(classes):
        raise PredictError(f"{path}: class names repeat: {classes}")
    return classes


def check_classes(
    classes: Sequence[str], path: Path, model: keras.Model, model_path: Path
) -> None:
    """Refuse class names whose count differs from the model's outputs, naming both files."""
    n_outputs = int(model.output_shape[-1])
    if len(classes) != n_outputs:
        raise PredictError(
            f"{path} names {len(classes)} classes but model {model_path} has {n_outputs} outputs"
        )


def dihedral(x: np.ndarray) -> list[np.ndarray]:
    """The 8 symmetries of a batch of square images (N, S, S, C): rotations, each flipped."""
    flipped = x[:, :, ::-1]
    return [np.rot90(im, k, axes=(1, 2)) for im in (x, flipped) for k in range(4)]


def probabilities(model: keras.Model, x: np.ndarray, tta: bool = False) -> np.ndarray:
    """Softmax (N, K) for raw uint8-range pixels (N, S, S, 3), averaged over `dihedral` if tta."""
    views = dihedral(x) if tta else [x]
    total = None
    for view in views:
        p = np.asarray(model.predict_on_batch(np.ascontiguousarray(view, np.float32)), np.float64)
        total = p if total is None else total + p
    return (total / len(views)).astype(np.float32)


def predict(
    model: keras.Model,
    inputs: Sequence[Input],
    *,
    batch_size: int = 32,
    tta: bool = False,
    on_error: Callable[[str], None] | None = None,
    progress: Callable[[int], object] | None = None,
) -> list[Prediction]:
    """Predict every input in batches; failures (named via `on_error`) do not stop the rest.

    `progress(n)` is called as each `n` more images are done.
    """
    if batch_size < 1:
        raise PredictError(f"batch size must be at least 1, got {batch_size}")
    size = int(model.input_shape[1])
    results: list[Prediction | None] = [None] * len(inputs)
    batch: list[tuple[int, np.ndarray]] = []

    def fail(i: int, message: str) -> None:
        if on_error is not None:
            on_error(message)
        path = inputs[i].path
        results[i] = Prediction(path, None, message.removeprefix(f"{path}: "))

    def flush() -> None:
        if not batch:
            return
        p = probabilities(model, np.stack([pixels for _, pixels in batch]), tta)
        for (i, _), row in zip(batch, p, strict=True):
            results[i] = Prediction(inputs[i].path, row)
        if progress is not None:
            progress(len(batch))
        batch.clear()

    for i, item in enumerate(inputs):
        if item.error:
            fail(i, item.error)
            continue
        try:
            pixels = ingest.decode(item.path)[0]
        except ingest.BadImage as err:
            fail(i, str(err).splitlines()[0])  # decoders may append install hints
            if progress is not None:
                progress(1)
            continue
        batch.append((i, split.resize(pixels, size)))
        if len(batch) >= batch_size:
            flush()
    flush()
    return [r for r in results if r is not None]


def header(classes: Sequence[str]) -> list[str]:
    """CSV columns: path, status, predicted, one probability per class, message."""
    return ["path", "status", "predicted", *(f"probability_{c}" for c in classes), "message"]


def csv_row(pred: Prediction, classes: Sequence[str]) -> list[object]:
    """One CSV row; probabilities to 6 decimals, empty fields for a failed image."""
    if pred.probabilities is None:
        return [str(pred.path), ERROR, "", *([""] * len(classes)), pred.message]
    predicted = classes[int(np.argmax(pred.probabilities))]
    probs = [f"{float(p):.6f}" for p in pred.probabilities]
    return [str(pred.path), OK, predicted, *probs, pred.message]


def json_record(pred: Prediction, classes: Sequence[str]) -> dict[str, object]:
    """One JSON object: path, status, predicted, probabilities by class (6 decimals), message."""
    if pred.probabilities is None:
        return {
            "path": str(pred.path),
            "status": ERROR,
            "predicted": None,
            "probabilities": None,
            "message": pred.message,
        }
    return {
        "path": str(pred.path),
        "status": OK,
        "predicted": classes[int(np.argmax(pred.probabilities))],
        "probabilities": {
            c: round(float(p), 6) for c, p in zip(classes, pred.probabilities, strict=True)
        },
        "message": pred.message,
    }


def write(path: Path, predictions: Sequence[Prediction], classes: Sequence[str]) -> None:
    """Write predictions atomically: JSON if `path` ends in .json, CSV otherwise."""
    if path.suffix.lower() == ".json":
        write_json(path, [json_record(p, classes) for p in predictions])
        return
    with atomic_file(path) as tmp:
        write_csv(tmp, header(classes), [csv_row(p, classes) for p in predictions])


def summary(predictions: Sequence[Prediction], classes: Sequence[str], output: Path) -> str:
    """Counts per predicted class, failures and where the output went, as printable lines."""
    counts = Counter(
        classes[int(np.argmax(p.probabilities))]
        for p in predictions
        if p.probabilities is not None
    )
    n_ok = sum(counts.values())
    lines = [f"predicted {n_ok} image{'s' * (n_ok != 1)}"]
    lines += [f"  {c}: {counts[c]}" for c in classes]
    lines.append(f"failed: {len(predictions) - n_ok}")
    lines.append(f"output: {output}")
    return "\n".join(lines)
