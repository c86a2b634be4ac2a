"""Measure the copies stage: does it group every copy before the split and nothing else, does the
audit then ignore a burned-in overlay, and how do its time and memory grow?

    python bench/copies.py [--quick] [--seeds N] [--scale N]

(1) Copies, on a real photograph: scikit-image's `data.immunohistochemistry()` (512 px, one stain
    and one light), turned and mirrored, and cut by a grid at a random offset into windows of
    64 px, stored at 224 px as a lab's export, each window in one of two class folders and either
    (a) alone, a distinct crop; (b) with a second capture of its field, a window overlapping it by
    30-90 % of its area, taken with another exposure and sensor noise and saved as JPEG; or
    (c) with a re-encoded (JPEG 60-98), resized (0.6-1.6x), mirrored, turned by a multiple of 90
    degrees or by any angle copy; and (d) with a scale bar, its length and the date burned into
    the same places of every image. `--seeds` such layouts (each a data set of its own), found by
    the stage's own function. Targets: at least 99 % of the planted pairs grouped, at most 0.5 %
    of the images without a planted copy put in any group.
(2) The audit with that overlay: each layout augmented by the augment stage's function with the
    groups found, split by prepare's code (source split, seeds 1-3; the seed's random split, seed
    1), every image resized to `prepare.image_size`, audited by `audit.compare`, the stage's own,
    with the overlay found. Targets: with the source split at most 1 % of test images flagged;
    with the random split at least 99 % of the test images whose group has a copy in training.
(3) Scale: sources of 224 px from the synthesize stage's renderer (smear crops: round cells
    alike from image to image, the hard case for a shortlist), 5 % of them with a planted copy,
    at 1x, 4x and 16x `--scale` sources; each run in a process of its own: sources per second and
    the peak memory of the stage's main process (which holds every image's keypoints and the
    shortlist; its workers hold one image, or one chunk of pairs, at a time). And memory against
    pixels: the 1x set at 224 px and at 896 px (16 times the pixels), in one process.

Params: params.yaml's data, copies, augment, prepare and audit sections. About 10 minutes on 2
cores. `--quick`: one layout, a few dozen sources (about a minute: that it runs; its figures are
rough). Prints the figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import skimage.data
import skimage.transform
import yaml
from PIL import Image, ImageDraw

from blastcell import audit, augment, augmented, copied, copies, images, prepare, synthesize
from blastcell.params import Params, load

ROOT = Path(__file__).resolve().parents[1]
WINDOW, EXPORT = 64, 224  # photograph windows, and the size they are stored at
QUICK = {"seeds": 1, "scale": 2}
FULL = {"seeds": 16, "scale": 200}
SCALES = (1, 4, 16)
PLANTED_SHARE = 0.05  # of the scale runs' sources, with a copy
BIG = 4  # the memory run's side, times 224 px


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=int(quality))
    return np.asarray(Image.open(buffer).convert("RGB"))


def overlay(image: np.ndarray) -> np.ndarray:
    """A microscope export's burn-in, sized for 224 px: a scale bar and its length on a white
    label at the bottom right, the objective and the date at the top left."""
    out = Image.fromarray(image)
    draw = ImageDraw.Draw(out)
    h, w = image.shape[:2]
    f = h / 224
    draw.rectangle([w - 66 * f, h - 28 * f, w - 4 * f, h - 4 * f], fill=(250, 250, 250))
    draw.rectangle([w - 60 * f, h - 12 * f, w - 12 * f, h - 9 * f], fill=(0, 0, 0))
    draw.text((w - 52 * f, h - 27 * f), "20 um", fill=(0, 0, 0), font_size=round(11 * f))
    draw.text((5 * f, 4 * f), "100x 2019-05-12", fill=(20, 20, 20), font_size=round(10 * f))
    return np.asarray(out)


def window(picture: np.ndarray, row: float, col: float) -> np.ndarray:
    """The WINDOW-px window at (row, col), sub-pixel, sampled at EXPORT px."""
    where = skimage.transform.AffineTransform(scale=WINDOW / EXPORT, translation=(col, row))
    out = skimage.transform.warp(
        picture, where, output_shape=(EXPORT, EXPORT), order=3, preserve_range=True
    )
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def capture(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Another capture: another exposure and sensor noise, saved as JPEG."""
    x = image.astype(np.float64) * rng.uniform(0.92, 1.08) + rng.normal(0, 2.5, image.shape)
    return jpeg(np.clip(np.rint(x), 0, 255).astype(np.uint8), 90)


def copy_of(rng: np.random.Generator, image: np.ndarray) -> tuple[str, np.ndarray]:
    how = rng.choice(["jpeg", "resize", "mirror", "turn90", "turn"])
    if how == "jpeg":
        return str(how), jpeg(image, rng.integers(60, 99))
    if how == "resize":
        return str(how), jpeg(images.resize(image, int(EXPORT * rng.uniform(0.6, 1.6))), 90)
    if how == "mirror":
        return str(how), np.ascontiguousarray(image[:, ::-1])
    if how == "turn90":
        return str(how), np.ascontiguousarray(np.rot90(image, rng.integers(1, 4)))
    turned = skimage.transform.rotate(
        image, rng.uniform(5, 355), order=1, mode="reflect", preserve_range=True
    )
    return str(how), np.clip(np.rint(turned), 0, 255).astype(np.uint8)


def photograph_set(folder: Path, seed: int) -> dict[str, dict]:
    """Write one layout into `folder` (two class folders); each file's truth: its planted pair
    (None: alone) and how it was made."""
    rng = np.random.default_rng(seed)
    picture = np.rot90(skimage.data.immunohistochemistry(), rng.integers(4))
    picture = np.ascontiguousarray(picture[:, ::-1] if rng.random() < 0.5 else picture)
    side = picture.shape[0]
    stride = int(WINDOW * 1.75)  # room for a second capture beside each window
    files: dict[str, tuple[np.ndarray, int | None, str]] = {}
    offset = rng.uniform(0, stride - WINDOW * 1.7 + 8, 2)
    pair = windows = 0
    for row in np.arange(offset[0], side - WINDOW, stride):
        for col in np.arange(offset[1], side - WINDOW, stride):
            label = "ab"[windows % 2]
            windows += 1
            name = f"{label}/w{int(row):03d}_{int(col):03d}"
            base = window(picture, row, col)
            kind = rng.choice(["alone", "capture", "copy"])
            if kind == "capture":
                share = rng.uniform(0.3, 0.9)
                along = share ** rng.uniform(0, 1)  # the overlap's share along x, then y
                dx, dy = WINDOW * (1 - along), WINDOW * (1 - share / along)
                if row + dy + WINDOW < side - 1 and col + dx + WINDOW < side - 1:
                    other = window(picture, row + dy, col + dx)
                    files[f"{name}.png"] = (capture(rng, base), pair, "capture")
                    files[f"{name}_b.png"] = (capture(rng, other), pair, f"capture {share:.0%}")
                    pair += 1
                    continue
                kind = "alone"
            if kind == "copy":
                how, other = copy_of(rng, base)
                files[f"{name}.png"] = (base, pair, "original")
                files[f"{name}_b.png"] = (other, pair, how)
                pair += 1
                continue
            files[f"{name}.png"] = (base, None, "alone")
    for name, (image, _, _) in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        images.write(folder / name, overlay(image))
    return {name: {"pair": p, "kind": k} for name, (_, p, k) in files.items()}


def grouping(folder: Path, truth: dict[str, dict], params: Params) -> tuple[dict, copies.Result]:
    """Find the copies of one layout; what was grouped, against the truth."""
    found = copies.find(folder, params.data, params.copies)
    group_of = {found.keys[i]: n for n, g in enumerate(found.groups) for i in g}
    planted: dict[int, list[str]] = {}
    for name, t in truth.items():
        if t["pair"] is not None:
            planted.setdefault(t["pair"], []).append(name)
    grouped = sum(a in group_of and group_of[a] == group_of.get(b) for a, b in planted.values())
    missed = [
        truth[b]["kind"]
        for a, b in planted.values()
        if not (a in group_of and group_of[a] == group_of.get(b))
    ]
    alone = [n for n, t in truth.items() if t["pair"] is None]
    mixed = sum(len({truth[found.keys[i]]["pair"] for i in g}) > 1 for g in found.groups)
    return {
        "images": len(truth),
        "planted_pairs": len(planted),
        "planted_grouped": grouped,
        "missed": missed,
        "alone": len(alone),
        "alone_grouped": sum(n in group_of for n in alone),
        "groups_joining_two_pairs": mixed,
        "overlay_share_of_image": round(float(found.overlay.mean()), 4),
    }, found


def batches(pixels: np.ndarray, rows: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(rows), size):
        yield pixels[rows[start : start + size]]


def audit_layout(
    folder: Path, work: Path, found: copies.Result, params: Params, seeds: dict
) -> dict:
    """Augment one layout with its groups, split it both ways and audit every split."""
    members = copied.Copies(
        {m.file: m for m in found.members()}, found.overlay if found.overlay.any() else None
    )
    out = work / "augmented"
    augment.augment(folder, out, params.data, params.augment, params.base.seed, members)
    classes, records, _ = augmented.read_index(out)
    size = params.prepare.image_size
    pixels = np.stack([images.resize(images.read(out / r.file), size) for r in records])
    row = {r.file: i for i, r in enumerate(records)}
    group = np.array([r.group for r in records])
    result = {}
    for how, split_seeds in seeds.items():
        split = params.prepare.model_copy(update={"split": how})
        tested = with_copy = flagged_with = flagged_without = 0
        for seed in split_seeds:
            parts = prepare.split(records, classes, split, seed)
            test = np.array([row[r.file] for r in parts["test"]])
            train = np.array([row[r.file] for r in parts["train"]])
            hit = audit.compare(
                batches(pixels, test, params.audit.batch_size),
                lambda train=train: batches(pixels, train, params.audit.batch_size),
                params.audit,
                params.augment,
                members.overlay,
            ).flagged
            leaked = np.isin(group[test], group[train])
            tested += len(test)
            with_copy += int(leaked.sum())
            flagged_with += int((hit & leaked).sum())
            flagged_without += int((hit & ~leaked).sum())
        result[how] = {
            "seeds": list(split_seeds),
            "test_images": tested,
            "with_copy_in_train": with_copy,
            "flagged_with_copy": flagged_with,
            "flagged_without_copy": flagged_without,
        }
    return result


def photographs(seeds: int, params: Params) -> dict:
    """Parts (1) and (2), over `seeds` layouts."""
    totals: dict = {"layouts": seeds}
    audits: dict = {}
    missed: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(1, seeds + 1):
            folder = Path(tmp) / f"layout{seed}"
            truth = photograph_set(folder / "data", seed)
            found, result = grouping(folder / "data", truth, params)
            missed += found.pop("missed")
            for key, value in found.items():
                totals[key] = totals.get(key, 0) + value
            splits = {"source": (1, 2, 3), "random": (1,)}
            for how, part in audit_layout(folder / "data", folder, result, params, splits).items():
                mine = audits.setdefault(how, {})
                for key, value in part.items():
                    mine[key] = mine.get(key, 0) + value if key != "seeds" else value
    totals["overlay_share_of_image"] = round(totals["overlay_share_of_image"] / seeds, 4)
    totals["missed_kinds"] = sorted(missed)
    src, rnd = audits["source"], audits["random"]
    return {
        "copies_photograph": totals,
        "copies_photograph_audit": audits,
        "copies_planted_grouped_pct": round(
            100 * totals["planted_grouped"] / max(totals["planted_pairs"], 1), 2
        ),
        "copies_alone_grouped_pct": round(
            100 * totals["alone_grouped"] / max(totals["alone"], 1), 2
        ),
        "copies_audit_source_flagged_pct": round(
            100 * src["flagged_without_copy"] / max(src["test_images"], 1), 2
        ),
        "copies_audit_random_found_pct": round(
            100 * rnd["flagged_with_copy"] / max(rnd["with_copy_in_train"], 1), 2
        ),
    }


def synthetic_sources(folder: Path, n: int, size: int, seed: int = 1) -> int:
    """`n` smear crops of `size` px in two class folders, PLANTED_SHARE of them with a copy (a
    second capture, or a re-encoded, resized, mirrored or turned copy); the planted pairs. Which
    ones and how do not depend on `size`."""
    planted = np.random.default_rng(seed).random(n) < PLANTED_SHARE
    for i in range(n):
        label = i % 2
        cls = folder / ("blast" if label else "other")
        cls.mkdir(parents=True, exist_ok=True)
        cell_rng, copy_rng = (np.random.default_rng([seed, i, k]) for k in (0, 1))
        if planted[i]:
            field = synthesize.draw_cell(label, size * 5 // 4, cell_rng, 0.5)
            base = field[:size, :size]
            if copy_rng.random() < 0.5:
                other = capture(copy_rng, field[size // 4 :, size // 4 :])
            else:
                other = copy_of(copy_rng, base)[1]
            images.write(cls / f"s{i:05d}_b.png", other)
        else:
            base = synthesize.draw_cell(label, size, cell_rng, 0.5)
        images.write(cls / f"s{i:05d}.png", base)
    return int(planted.sum())


_CHILD = """
import json, sys, time
from pathlib import Path
from blastcell import copies
from blastcell.params import load
params = load(sys.argv[2])
start = time.perf_counter()
found = copies.find(Path(sys.argv[1]), params.data, params.copies)
seconds = time.perf_counter() - start
# VmHWM: this process's own peak (ru_maxrss would carry the parent's over the fork and exec)
hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
peak = int(hwm.split()[1]) / 1024
json.dump({"seconds": seconds, "sources": len(found.keys), "peak_mb": peak,
           "shortlisted": found.shortlisted, "groups": len(found.groups)}, sys.stdout)
"""


def timed(folder: Path, params_path: Path, workers: int | None = None) -> dict:
    """Run the stage's function on `folder` in a fresh process (with `workers`, else
    params.yaml's): seconds, peak memory, counts."""
    if workers is not None:
        raw = yaml.safe_load(params_path.read_text())
        raw["copies"]["workers"] = workers
        params_path = folder.parent / f"{folder.name}.yaml"
        params_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(folder), str(params_path)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"bench/copies.py: the stage failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)


def scale(base: int, params_path: Path) -> dict:
    """Part (3)."""
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for times in SCALES:
            folder = Path(tmp) / f"x{times}"
            planted = synthetic_sources(folder, base * times, 224)
            r = timed(folder, params_path)
            runs[f"{times}x"] = {
                "sources": r["sources"],
                "planted_pairs": planted,
                "groups": r["groups"],
                "pairs_verified": r["shortlisted"],
                "seconds": round(r["seconds"], 1),
                "sources_per_s": round(r["sources"] / r["seconds"], 1),
                "peak_mb": round(r["peak_mb"], 1),  # the main process (not its workers)
            }
        # Memory against pixels: everything in one process, so its peak is the whole stage's.
        pixels = {}
        for side in (224, 224 * BIG):
            folder = Path(tmp) / f"px{side}"
            synthetic_sources(folder, base, side)
            r = timed(folder, params_path, workers=1)
            pixels[f"{side}px"] = {
                "sources": r["sources"],
                "seconds": round(r["seconds"], 1),
                "peak_mb": round(r["peak_mb"], 1),
            }
    return {
        "copies_scale": runs,
        "copies_pixels": pixels,
        "copies_sources_per_s": {k: v["sources_per_s"] for k, v in runs.items()},
        "copies_peak_mb_224px": pixels["224px"]["peak_mb"],
        "copies_peak_mb_896px": pixels[f"{224 * BIG}px"]["peak_mb"],
    }


def measure(
    quick: bool = False,
    params_path: Path = ROOT / "params.yaml",
    seeds: int | None = None,
    base: int | None = None,
) -> dict:
    """Every figure of parts (1) to (3); `quick`: one layout and a few dozen sources."""
    how = QUICK if quick else FULL
    params = load(params_path)
    result: dict = {"copies_params": params.copies.model_dump()}
    result |= photographs(seeds or how["seeds"], params)
    result |= scale(base or how["scale"], params_path)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one layout, a few dozen sources")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--seeds", type=int, help=f"layouts (default {FULL['seeds']})")
    parser.add_argument("--scale", type=int, help=f"sources at 1x (default {FULL['scale']})")
    args = parser.parse_args()
    r = measure(args.quick, args.params, args.seeds, args.scale)
    p, a = r["copies_photograph"], r["copies_photograph_audit"]
    print(f"copies params: {r['copies_params']}")
    print(
        f"(1) photograph, {p['layouts']} layouts, {p['images']} images: planted pairs grouped "
        f"{p['planted_grouped']} of {p['planted_pairs']} ({r['copies_planted_grouped_pct']} %), "
        f"missed {p['missed_kinds']}; images alone put in a group {p['alone_grouped']} of "
        f"{p['alone']} ({r['copies_alone_grouped_pct']} %); groups joining two planted pairs "
        f"{p['groups_joining_two_pairs']}; overlay {p['overlay_share_of_image']:.1%} of an image"
    )
    s, x = a["source"], a["random"]
    print(
        f"(2) audit with the overlay: source split {s['flagged_without_copy']} of "
        f"{s['test_images']} test images flagged ({r['copies_audit_source_flagged_pct']} %); "
        f"random split {x['flagged_with_copy']} of {x['with_copy_in_train']} with a copy in "
        f"training flagged ({r['copies_audit_random_found_pct']} %)"
    )
    for name, run in r["copies_scale"].items():
        print(
            f"(3) {name}: {run['sources']} sources in {run['seconds']} s, "
            f"{run['sources_per_s']} sources/s, {run['pairs_verified']} pairs verified, "
            f"{run['groups']} groups of {run['planted_pairs']} planted; peak {run['peak_mb']} MB "
            "(the main process)"
        )
    for name, run in r["copies_pixels"].items():
        print(
            f"    {run['sources']} sources of {name}, one process: {run['seconds']} s, peak "
            f"{run['peak_mb']} MB"
        )


if __name__ == "__main__":
    main()
