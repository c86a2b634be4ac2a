"""Classify image files with a trained model: the library behind `blastcell predict`.

Inputs are files and folders; folders are searched by ingest's rules (`ingest.find_images`:
recursive, sorted, hidden and system files left out), and files of other suffixes inside them
are ignored. Each image is decoded to 8-bit RGB by `ingest.decode` as the augment stage decodes
it (first page only; refused from its header if over `max_pixels` pixels or with a side under
`min_side`; made square as `square` says), resized as the prepare stage does (`images.resize`)
and fed to the model as raw uint8-range pixels: the model sees the pixels the pipeline would
give it, to the byte, whatever the image's size. One file is decoded at a time, in a few times
its 8-bit RGB size (docs/performance.md). A file that cannot be used (unreadable, not a regular
file, not an image) gives a row with status `error` and the reason; the others are still
predicted.

Test-time augmentation (`tta=True`) averages the softmax over the 8 symmetries of the square
(the dihedral group: rotations by 0, 90, 180, 270 degrees, each with and without a horizontal
flip, which also covers the vertical flip and both transposes). Because the set is a group, the
averaged prediction is exactly invariant to flipping or rotating the input image.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from blastcell import images, ingest
from blastcell.files import DataError, atomic_file, printable, write_csv, write_json

if TYPE_CHECKING:
    from blastcell import model
    from blastcell.tf import keras

OK, ERROR = "ok", "error"
FLAGS = ("--max-image-pixels", "--min-image-side")  # named when a size is refused


@dataclass(frozen=True)
class Decoding:
    """How inputs are decoded (`ingest.decode`'s settings); the defaults are params.yaml's."""

    max_pixels: int = ingest.MAX_IMAGE_PIXELS
    min_side: int = ingest.MIN_IMAGE_SIDE
    square: str = ingest.SQUARE


@dataclass(frozen=True)
class Input:
    """A file to predict, or (with `error` set) an input that cannot be used."""

    path: Path
    error: str = ""


@dataclass(frozen=True)
class Prediction:
    """One input's outcome: softmax probabilities, or (None and) the error naming the file."""

    path: Path
    probabilities: np.ndarray | None
    error: str = ""

    @property
    def ok(self) -> bool:
        """Whether the image was predicted."""
        return self.probabilities is not None

    @property
    def message(self) -> str:
        """The output's message column: the error without the path, which its row shows."""
        return self.error.removeprefix(f"{self.path}: ")


def _inputs_of(path: Path) -> list[Input]:
    """What one command-line path gives: itself, or the image files in a folder."""
    if path.is_dir():
        try:
            files = ingest.find_images(path)
        except DataError as err:
            return [Input(path, str(err))]
        return [Input(file) for file in files] or [
            Input(path, f"{path}: folder holds no image files")
        ]
    if not path.exists():
        if path.is_symlink():
            return [Input(path, f"{path}: a link to nothing (broken, or a loop)")]
        return [Input(path, f"{path}: no such file or folder")]
    if path.suffix.lower() not in ingest.IMAGE_SUFFIXES:
        suffixes = list(ingest.IMAGE_SUFFIXES)
        return [Input(path, f"{path}: not an image file; suffixes read: {suffixes}")]
    return [Input(path)]


def find_inputs(paths: Sequence[Path]) -> list[Input]:
    """Expand files and folders into inputs in order, each file once; bad paths as errors."""
    found: list[Input] = []
    seen: set[Path] = set()
    for path in paths:
        for item in _inputs_of(path):
            try:
                key = item.path.resolve()
            except (OSError, RuntimeError):  # a link loop (RuntimeError before Python 3.13)
                key = item.path  # decoding names it
            if item.error or key not in seen:
                seen.add(key)
                found.append(item)
    return found


def read_classes(path: Path) -> list[str]:
    """Class names from a JSON list of unique, non-empty strings (index = model output)."""
    if not path.is_file():
        raise DataError(
            f"class names file {path} does not exist; pass --classes (a JSON list of names; "
            "the train stage writes classes.json beside the model)"
        )
    try:
        classes = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: cannot read class names: {err}") from err
    if not (isinstance(classes, list) and all(isinstance(c, str) and c for c in classes)):
        raise DataError(f"{path}: expected a JSON list of class names")
    if len(set(classes)) != len(classes):
        raise DataError(f"{path}: class names repeat: {classes}")
    return classes


def load(
    model_path: Path, classes_path: Path
) -> tuple[keras.Model, list[str], model.TrainingData | None]:
    """The trained model, its class names (one per model output) and what it learned from, if
    recorded beside it (`training_data.json`); DataError names the file."""
    if not model_path.exists():  # checked before TensorFlow's import, which takes seconds
        raise DataError(f"model file {model_path} does not exist")
    classes = read_classes(classes_path)
    from blastcell import model

    net = model.load(model_path, n_classes=len(classes))
    return net, classes, model.training_data(model_path)


def warning(model_path: Path, learned: model.TrainingData | None) -> str:
    """What a user must know before trusting the model's answers, or '' if nothing."""
    if learned is None:
        return (
            f"{model_path} does not say what it was trained on (no training_data.json beside it)"
        )
    if learned.source.synthetic:
        return (
            f"{model_path} was trained only on the embedded synthetic cells "
            f"({learned.source.data_dir}): it demonstrates the pipeline and is not a classifier "
            "for real blood smears"
        )
    return ""


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


def _pixels_or_error(item: Input, size: int, decoding: Decoding) -> np.ndarray | str:
    """The input's pixels at the model's size, or the error naming the file."""
    if item.error:
        return item.error
    try:
        # At full size, not through the JPEG decoder's reduced-size draft (Pillow's `draft`):
        # that saves about 0.2 s on a 6300 px JPEG but changes the model's input (by 1.5 levels
        # on average, up to 12, on a photograph), so predict would no longer answer as evaluate.
        pixels, _ = ingest.decode(
            item.path,
            max_pixels=decoding.max_pixels,
            min_side=decoding.min_side,
            square=decoding.square,
            names=FLAGS,
        )
        return images.resize(pixels, size)
    except ingest.BadImage as err:
        return str(err).splitlines()[0]  # decoders may append install hints


def _predict_batch(
    model: keras.Model, batch: Sequence[Input], size: int, tta: bool, decoding: Decoding
) -> list[Prediction]:
    """Predictions for `batch` in order: one model call for the files that decode."""
    decoded = [_pixels_or_error(item, size, decoding) for item in batch]
    good = [outcome for outcome in decoded if not isinstance(outcome, str)]
    rows = iter(probabilities(model, np.stack(good), tta) if good else [])
    return [
        Prediction(item.path, None, outcome)
        if isinstance(outcome, str)
        else Prediction(item.path, next(rows))
        for item, outcome in zip(batch, decoded, strict=True)
    ]


def predict(
    model: keras.Model,
    inputs: Sequence[Input],
    *,
    batch_size: int = 32,
    tta: bool = False,
    decoding: Decoding = Decoding(),
    on_error: Callable[[str], None] | None = None,
    progress: Callable[[int], object] | None = None,
) -> list[Prediction]:
    """Predict every input, `batch_size` at a time, decoded as `decoding` says; failures do not
    stop the rest.

    `on_error(message)` is called with each failure's line naming its file; `progress(n)` as each
    `n` more image files are done (inputs that `find_inputs` already refused are not counted).
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    size = int(model.input_shape[1])
    predictions: list[Prediction] = []
    for start in range(0, len(inputs), batch_size):
        batch = inputs[start : start + batch_size]
        done = _predict_batch(model, batch, size, tta, decoding)
        for prediction in done:
            if not prediction.ok and on_error is not None:
                on_error(prediction.error)
        if progress is not None:
            progress(sum(not item.error for item in batch))
        predictions += done
    return predictions


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
    lines.append(f"output: {printable(output)}")
    return "\n".join(lines)
