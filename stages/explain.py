"""Stage explain: show what the model gets wrong on the test set and where it looks.

Params: explain.*. Inputs: the prepare stage's folder (test split, streamed, and test.csv for the
file names), the trained model. Output folder of PNGs: `misclassified.png` (every misclassified
test image up to `explain.max_misclassified`, in test order, titled with its file, true class,
predicted class and probability) and `gradcam.png` (a row per class: its first
`explain.per_class` test images and their Grad-CAM heat maps for the predicted class).
"""

import argparse
from pathlib import Path

import numpy as np

from blastcell import explain, figures, runner, shards
from blastcell import params as P
from blastcell.data import atomic_dir
from blastcell.tf import keras


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--plots", type=Path, required=True)
    args = parser.parse_args(argv)
    params = P.load(args.params)
    cfg = params.explain

    spec = shards.read_spec(args.data)
    classes = spec.classes
    model = keras.models.load_model(args.model, safe_mode=True)
    explain.check_model(model, spec, args.model)
    layer = explain.resolve_layer(model, cfg.layer)
    found = explain.collect(model, args.data, cfg.batch_size, cfg.max_misclassified, cfg.per_class)
    sampled = [e for row in found.samples for e in row]
    heat, _ = explain.gradcam(
        model,
        np.stack([e.image for e in sampled]) if sampled else np.zeros((0, 1, 1, 3), np.uint8),
        layer,
        classes=[e.pred for e in sampled],
        batch_size=cfg.batch_size,
    )
    maps = iter(heat)
    rows = [
        [(e.image, next(maps), e.file, explain.caption(e, classes)) for e in row]
        for row in found.samples
    ]

    shown = len(found.misclassified)
    wrong = figures.titled_images(
        [e.image for e in found.misclassified],
        [f"{e.file}\n{explain.caption(e, classes)}" for e in found.misclassified],
        title=f"Misclassified test images: {found.n_wrong} of {found.n_test}"
        + (f" (first {shown} shown)" if shown < found.n_wrong else ""),
        empty=f"no misclassified test images ({found.n_test} tested)",
    )
    cams = figures.heatmap_overlays(
        rows,
        [f"true {name}" for name in classes],
        title=f"Grad-CAM for the predicted class (layer {layer}); "
        f"first {cfg.per_class} test images of each class",
    )
    with atomic_dir(args.plots) as tmp:
        figures.save(wrong, tmp / "misclassified.png")
        figures.save(cams, tmp / "gradcam.png")
    print(
        f"explain: {found.n_wrong} of {found.n_test} test images misclassified ({shown} shown); "
        f"Grad-CAM from layer '{layer}' for {len(sampled)} images"
    )
    P.trace("explain")


if __name__ == "__main__":
    runner.run(main)
