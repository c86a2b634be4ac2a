"""Benchmark: peak memory and time of reading one image just under `data.max_image_pixels`.

    python bench/decode_memory.py [--quick]

Writes one 6300 x 6300 image (39.7 M pixels, under params.yaml's 40 M; 113.6 MiB as 8-bit RGB) of
smooth gradients and discs as a CMYK JPEG and as a PNG (1600 px with --quick), and two 257 px
PNGs. Then runs, each in a process of its own: `blastcell predict` on each image with a tiny
untrained model at the default image size, and the augment stage on a data folder holding the
image and a small one of the other class (one worker, no copies: the copies' memory is
`blastcell.transform`'s, not decoding's). Prints each run's seconds and peak RSS (the process's
`ru_maxrss`, from `os.wait4`) and what the large image adds over the same run on a small image,
in decoded RGB images (Linux: `ru_maxrss` in KiB). It asserts nothing; tests/test_memory.py
pins the bounds.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from blastcell import copied, keypoints, params

ROOT = Path(__file__).resolve().parents[1]
SIDE = 6300  # 39.69 M pixels: just under params.yaml's data.max_image_pixels (40 M)
SMALL = 257  # the synthetic cells' size: the runs that the large ones are compared with
IMAGES = {"cmyk_jpeg": "Im001_1.jpg", "png": "Im001_1.png", "small": "Im001_1_small.png"}


def smooth_image(side: int, seed: int = 0) -> np.ndarray:
    """An RGB image (side, side, 3) of gradients and a few flat discs: cheap to make and to
    compress (PNG in a second at 6300 px), unlike noise."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, side).astype(np.uint8)
    image = np.empty((side, side, 3), np.uint8)
    image[..., 0] = ramp  # left to right
    image[..., 1] = ramp[:, np.newaxis]  # top to bottom
    image[..., 2] = 255 - ramp
    for _ in range(6):
        cy, cx = rng.integers(0, side, 2)
        r = int(rng.integers(side // 20, side // 6))
        top, left = max(cy - r, 0), max(cx - r, 0)
        yy, xx = np.ogrid[top : min(cy + r, side), left : min(cx + r, side)]
        box = image[top : top + yy.shape[0], left : left + xx.shape[1]]
        box[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(0, 256, 3, dtype=np.uint8)
    return image


def write_images(folder: Path, side: int = SIDE) -> dict[str, Path]:
    """The large image as a CMYK JPEG and as a PNG, and a small PNG, in `folder` (IMAGES'
    names, ALL-IDB2's blast names), plus a small not-blast PNG (`Im002_0.png`) for augment's
    second class; their paths by IMAGES' keys and "other"."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {name: folder / file for name, file in IMAGES.items()}
    large = Image.fromarray(smooth_image(side))
    large.convert("CMYK").save(paths["cmyk_jpeg"], quality=90)
    large.save(paths["png"], compress_level=1)
    Image.fromarray(smooth_image(SMALL, seed=1)).save(paths["small"])
    paths["other"] = folder / "Im002_0.png"
    Image.fromarray(smooth_image(SMALL, seed=2)[::-1]).save(paths["other"])
    return paths


def rgb_mib(side: int = SIDE) -> float:
    """The decoded size of a side x side image as 8-bit RGB, in MiB."""
    return side * side * 3 / 2**20


# Linux starts a child's peak RSS at its parent's (the parent's memory counts at the child's
# exec), so a large process cannot measure its children directly: this small one runs the
# command (argv[2:]) and writes the command's exit status and peak RSS (KiB) to argv[1].
_LAUNCH = (
    "import json, os, subprocess, sys; p = subprocess.Popen(sys.argv[2:]); "
    "_, status, usage = os.wait4(p.pid, 0); "
    "json.dump([os.waitstatus_to_exitcode(status), usage.ru_maxrss], open(sys.argv[1], 'w'))"
)


def run_measured(command: list[str], log: Path) -> tuple[float, float]:
    """Run `command` in the repository root, its output to `log`; its wall seconds and peak
    RSS in MiB (its `ru_maxrss`, through `_LAUNCH`). RuntimeError shows the output's end if it
    fails."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    measured = log.with_suffix(".rusage.json")
    start = time.perf_counter()
    with log.open("w") as out:
        launch = [sys.executable, "-c", _LAUNCH, str(measured), *command]
        subprocess.run(launch, cwd=ROOT, env=env, stdout=out, stderr=out, check=True)
    seconds = time.perf_counter() - start
    status, peak_kib = json.loads(measured.read_text())
    if status != 0:
        raise RuntimeError(f"{command[:3]} failed ({status}): {log.read_text()[-2000:]}")
    return seconds, peak_kib / 1024  # KiB on Linux


def tiny_model(folder: Path, size: int) -> Path:
    """A tiny untrained seed CNN (width 0.125, 8 dense units, 2 classes) at `size` pixels,
    saved in `folder` with its classes.json; the model file."""
    from blastcell import model
    from blastcell.tf import keras

    keras.utils.set_random_seed(0)
    settings = params.load(ROOT / "params.yaml", ["model.width=0.125", "model.dense_units=8"])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.keras"
    model.build(settings.model, size, 2).save(path)
    (folder / "classes.json").write_text(json.dumps(["not_blast", "blast"]))
    return path


def predict_run(image: Path, model_file: Path, folder: Path) -> tuple[float, float]:
    """`blastcell predict image` in a process of its own: seconds and peak MiB."""
    out = folder / f"{image.stem}.csv"
    command = [sys.executable, "-m", "blastcell", "predict", str(image), "--model"]
    seconds, peak = run_measured(
        [*command, str(model_file), "--output", str(out)], out.with_suffix(".log")
    )
    if ",ok," not in out.read_text():
        raise RuntimeError(f"{image}: not predicted: {out.read_text()}")
    return seconds, peak


def augment_run(
    image: Path, other: Path, folder: Path, copies: bool = False
) -> tuple[float, float]:
    """The augment stage script (one worker; no augmented copies, or with `copies` params.yaml's
    augment.copies) on a data folder holding `image` and `other` (of the other class), in a
    process of its own: seconds and peak MiB."""
    folder.mkdir(parents=True)
    data = folder / "data"
    data.mkdir()
    shutil.copyfile(image, data / f"Im001_1{image.suffix}")  # a link would leave the folder
    shutil.copyfile(other, data / other.name)
    overrides = ["augment.workers=1", *([] if copies else ["augment.copies=0"])]
    settings = params.write_overridden(ROOT / "params.yaml", overrides, folder / "params.yaml")
    found = folder / "copies"
    found.mkdir()
    copied.write(found, [], np.zeros((keypoints.WORK_SIZE,) * 2, bool))
    outputs = ("output", "preview", "manifest", "report", "classes")
    names = ("augmented", "preview.png", "manifest.csv", "report.json", "classes.csv")
    command = [sys.executable, "stages/augment.py", "--params", str(settings)]
    command += ["--input", str(data), "--copies", str(found)]
    for option, name in zip(outputs, names, strict=True):
        command += [f"--{option}", str(folder / name)]
    return run_measured(command, folder / "log.txt")


def measure(quick: bool = False) -> dict:
    """Seconds and peak MiB of predict and augment on the large image (as a CMYK JPEG and as a
    PNG) and on a small one."""
    side = 1600 if quick else SIDE
    size = params.load(ROOT / "params.yaml").prepare.image_size
    predict, augment, warped = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = write_images(folder / "images", side)
        model_file = tiny_model(folder / "model", size)
        for name in IMAGES:
            seconds, peak = predict_run(paths[name], model_file, folder)
            predict[name] = {"seconds": round(seconds, 2), "peak_mb": round(peak, 1)}
            seconds, peak = augment_run(paths[name], paths["other"], folder / f"augment_{name}")
            augment[name] = {"seconds": round(seconds, 2), "peak_mb": round(peak, 1)}
            if name != "cmyk_jpeg":  # the copies' cost does not depend on the decoder
                folder_copies = folder / f"augment_copies_{name}"
                seconds, peak = augment_run(paths[name], paths["other"], folder_copies, True)
                warped[name] = {"seconds": round(seconds, 2), "peak_mb": round(peak, 1)}
    return {
        "decode_memory_detail": {
            "side": side,
            "small_side": SMALL,
            "model_image_size": size,
            "predict": predict,
            "augment": augment,
            "augment_copies": warped,
            "copies": params.load(ROOT / "params.yaml").augment.copies,
        },
        "decode_rgb_mb": round(rgb_mib(side), 1),
        "decode_predict_peak_mb": max(predict[name]["peak_mb"] for name in ("cmyk_jpeg", "png")),
        "decode_augment_peak_mb": max(augment[name]["peak_mb"] for name in ("cmyk_jpeg", "png")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 1600 px image instead of 6300")
    args = parser.parse_args()
    result = measure(quick=args.quick)
    detail = result["decode_memory_detail"]
    rgb = result["decode_rgb_mb"]
    print(f"one {detail['side']} px image: {rgb:.1f} MiB as 8-bit RGB")
    for run in ("predict", "augment", "augment_copies"):
        small = detail[run]["small"]
        for name, r in detail[run].items():
            extra = (r["peak_mb"] - small["peak_mb"]) / rgb
            print(
                f"{run:>8} {name:>10}: {r['seconds']:6.2f} s, peak {r['peak_mb']:7.1f} MiB "
                f"({extra:+.2f} RGB images over the {SMALL} px run)"
            )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
