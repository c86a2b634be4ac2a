"""The copies stage on crops of a real photograph: every kind of copy is grouped before the split
and distinct crops are not, a copy under another class stops the run (or is dropped and listed),
a burned-in scale bar makes no copy (here and in the audit), groups are joined with patients and
kept on one side by prepare, and the result does not depend on the number of workers."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import skimage.transform
from helpers import augment_args, copies_args, run_stage, write_params
from PIL import Image, ImageDraw

from blastcell import audit, augmented, copied, copies, images, ingest, prepared, synthesize
from blastcell.files import DataError
from blastcell.keypoints import WORK_SIZE
from blastcell.params import load

ROOT = Path(__file__).resolve().parents[1]
PARAMS = load(ROOT / "params.yaml")
COPIES = PARAMS.copies.model_copy(update={"workers": 1})  # in this process: quicker on tiny sets
PHOTO = skimage.data.immunohistochemistry()  # 512 x 512: one stain, one light
SIDE = 80  # crops of the photograph, 5 x 5 of them 100 px apart: distinct
GRID = [(r, c) for r in range(0, 401, 100) for c in range(0, 401, 100)]


def crop(row: int, col: int, side: int = SIDE) -> np.ndarray:
    return np.ascontiguousarray(PHOTO[row : row + side, col : col + side])


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def with_scale_bar(image: np.ndarray) -> np.ndarray:
    """A microscope export's burn-in, as on a real 4-class smear set: the objective, a scale bar
    and its length on a white label in the bottom right corner."""
    out = Image.fromarray(image)
    draw = ImageDraw.Draw(out)
    h, w = image.shape[:2]
    draw.rectangle([w - 48, h - 30, w - 2, h - 2], fill=(250, 250, 250))
    draw.text((w - 46, h - 30), "100x oil", fill=(0, 0, 0), font_size=8)
    draw.text((w - 46, h - 21), "20 um", fill=(0, 0, 0), font_size=8)
    draw.rectangle([w - 44, h - 9, w - 8, h - 6], fill=(0, 0, 0))
    return np.asarray(out)


def write_set(folder: Path, files: dict[str, np.ndarray]) -> Path:
    for name, image in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        images.write(folder / name, image)
    return folder


def copies_of_every_kind() -> dict[str, np.ndarray]:
    """Twelve distinct crops (a/d*, b/d*), and in class a six sources, each with one copy."""
    files = {f"{'ab'[i % 2]}/d{i:02d}.png": crop(r, c) for i, (r, c) in enumerate(GRID[:12])}
    originals = {k: crop(r, c) for k, (r, c) in zip("pqrstu", GRID[12:18], strict=True)}
    turned = skimage.transform.rotate(originals["s"], 37, mode="reflect", preserve_range=True)
    edited = originals["t"].copy()
    edited[40, 40] = 0  # one pixel changed
    shifted = crop(GRID[13][0] + 15, GRID[13][1] + 12)  # a capture shifted: 69 % overlap
    files |= {f"a/{k}.png": v for k, v in originals.items()}
    files |= {
        "a/p_jpeg.png": jpeg(originals["p"], 75),  # re-encoded
        "a/q_capture.png": jpeg(shifted, 90),  # the same field captured again
        "a/r_resized.png": images.resize(originals["r"], 130),  # resized
        "a/s_turned.png": np.clip(np.rint(turned), 0, 255).astype(np.uint8),  # turned
        "a/t_edited.png": edited,  # a small edit
        "a/u_flipped.png": originals["u"][:, ::-1].copy(),  # mirrored
    }
    files["a/p_closer.png"] = images.resize(crop(*GRID[12], 60), SIDE)  # cropped closer
    return files


@pytest.fixture(scope="module")
def every_kind(tmp_path_factory) -> Path:
    return write_set(tmp_path_factory.mktemp("copies") / "data", copies_of_every_kind())


@pytest.fixture(scope="module")
def found(every_kind) -> copies.Result:
    return copies.find(every_kind, PARAMS.data, COPIES)


def test_every_kind_of_copy_is_grouped_and_distinct_crops_are_not(found):
    groups = [sorted(found.keys[i] for i in g) for g in found.groups]
    assert sorted(groups) == [
        ["a/p.png", "a/p_closer.png", "a/p_jpeg.png"],
        ["a/q.png", "a/q_capture.png"],
        ["a/r.png", "a/r_resized.png"],
        ["a/s.png", "a/s_turned.png"],
        ["a/t.png", "a/t_edited.png"],
        ["a/u.png", "a/u_flipped.png"],
    ]
    assert found.metrics() == {"copy_groups": 6}
    counts = found.counts()
    assert counts["images_in_copy_groups"] == 13
    assert counts["label_conflicts"] == counts["dropped"] == 0
    assert not found.overlay.any()


def test_the_report_says_what_made_each_pair_copies(found):
    report = found.report()
    assert report["sources"] == 25
    pairs = {tuple(sorted(p["files"])): p for g in report["groups"] for p in g["pairs"]}
    flipped = pairs[("a/u.png", "a/u_flipped.png")]
    assert flipped["how"] == "keypoints"
    assert flipped["mirrored"] is True
    assert flipped["inliers"] >= PARAMS.copies.min_inliers
    assert all(
        p["agreeing_share"] >= copies.MIN_AGREEING
        for p in pairs.values()
        if p["how"] == "keypoints"
    )
    # the map takes the first file onto the second: its turn and shift flip sign the other way
    turned = pairs[("a/s.png", "a/s_turned.png")]
    sign = -1 if turned["files"][0] == "a/s.png" else 1
    assert turned["rotation_deg"] == pytest.approx(37 * sign, abs=3)
    capture = pairs[("a/q.png", "a/q_capture.png")]
    assert capture["scale"] == pytest.approx(1, abs=0.05)
    # the shift, at WORK_SIZE: the capture's content sits 12 and 15 px (of 80) up and left
    sign = -1 if capture["files"][0] == "a/q.png" else 1
    assert capture["shift_x"] == pytest.approx(12 * WORK_SIZE / SIDE * sign, abs=2)
    assert capture["shift_y"] == pytest.approx(15 * WORK_SIZE / SIDE * sign, abs=2)
    closer = pairs[("a/p.png", "a/p_closer.png")]
    scale = 80 / 60 if closer["files"][0] == "a/p.png" else 60 / 80
    assert closer["scale"] == pytest.approx(scale, abs=0.05)


def test_many_copies_with_the_same_keypoints_still_chain_into_one_group():
    """Copies whose keypoints are all alike share every hash, as many times as there are
    copies: up to BUCKET_CAP of them, the shortlist must not take that for a pattern seen
    everywhere (with a cap of 4, as first built, it did)."""
    n = copies.BUCKET_CAP
    assert n > 4
    overlay = np.zeros((WORK_SIZE, WORK_SIZE), bool)
    same = copies.views(crop(*GRID[20]), PARAMS.copies.keypoints, overlay)
    others = [copies.views(crop(r, c), PARAMS.copies.keypoints, overlay) for r, c in GRID[:6]]
    pairs = copies.shortlist([same] * n + others, PARAMS.copies.candidates)
    groups = copies.components(n + 6, [(i, j) for i, j, _ in pairs])
    assert list(range(n)) in groups


def test_two_fields_alike_in_one_cell_only_are_not_copies():
    """Two smear crops of the synthesize stage's renderer (found among 3,360 by bench/copies.py)
    whose red cells cut by the edges agree, turned by 180 degrees, in more places than
    `copies.min_inliers`: a few percent of what both show, so not copies."""
    overlay = np.zeros((WORK_SIZE, WORK_SIZE), bool)
    a, b = (
        copies.views(
            synthesize.draw_cell(i % 2, 224, np.random.default_rng([1, i, 0]), 0.5),
            PARAMS.copies.keypoints,
            overlay,
        )
        for i in (2553, 1088)
    )
    inliers, _, how = copies.verify(a, b, mirrored=False)
    assert inliers >= PARAMS.copies.min_inliers
    assert abs(how["rotation_deg"]) > 170
    assert how["agreeing_share"] < copies.MIN_AGREEING
    assert not copies.copies_by(inliers, how, PARAMS.copies.min_inliers)


def test_identical_pixels_are_copies_without_keypoints(tmp_path):
    files = {f"a/d{i}.png": crop(r, c) for i, (r, c) in enumerate(GRID[:3])}
    files |= {f"b/d{i}.png": crop(r, c) for i, (r, c) in enumerate(GRID[3:6])}
    files["a/again.png"] = files["a/d0.png"]
    result = copies.find(write_set(tmp_path, files), PARAMS.data, COPIES)
    assert [[result.keys[i] for i in g] for g in result.groups] == [["a/again.png", "a/d0.png"]]
    assert [p.how for p in result.pairs] == ["identical pixels"]


def conflict_set(tmp_path: Path) -> Path:
    files = {f"{'ab'[i % 2]}/d{i}.png": crop(r, c) for i, (r, c) in enumerate(GRID[:8])}
    files["b/resaved.png"] = jpeg(files["a/d0.png"], 98)  # relabelled and re-saved
    return write_set(tmp_path / "data", files)


def test_a_copy_under_another_class_stops_the_run_naming_both_files(tmp_path):
    data = conflict_set(tmp_path)
    with pytest.raises(DataError) as caught:
        copies.find(data, PARAMS.data, COPIES)
    message = str(caught.value)
    assert f"{data / 'a/d0.png'} and {data / 'b/resaved.png'} show the same cells" in message
    assert "under two classes, 'a' and 'b'" in message
    assert "copies.on_label_conflict: drop" in message
    assert "\n" not in message


def test_identical_pixels_under_two_classes_are_a_label_conflict_too(tmp_path):
    files = {f"{'ab'[i % 2]}/d{i}.png": crop(r, c) for i, (r, c) in enumerate(GRID[:6])}
    files["b/same.png"] = files["a/d0.png"]
    with pytest.raises(DataError, match=r"a/d0.png and .*b/same.png show the same cells \(iden"):
        copies.find(write_set(tmp_path, files), PARAMS.data, COPIES)


def small_params(tmp_path: Path, *overrides: str) -> Path:
    fractions = ["prepare.test_fraction=0.25", "prepare.val_fraction=0.25"]
    return write_params(
        tmp_path / "params.yaml", "augment.copies=1", *fractions, *overrides, tiny=True
    )


def test_with_drop_the_conflicting_group_is_left_out_and_listed_in_the_manifest(tmp_path):
    data = conflict_set(tmp_path)
    params = small_params(tmp_path, "copies.on_label_conflict=drop")
    line = run_stage("copies", ["--params", str(params), *copies_args(data, tmp_path)])
    assert "1 label conflicts, 2 images dropped" in line
    groups = (tmp_path / "copies" / "groups.csv").read_text().splitlines()
    assert groups == [
        "file,class,group,status",
        "a/d0.png,a,a/d0.png,dropped",
        "b/resaved.png,b,a/d0.png,dropped",
    ]
    line = run_stage("augment", ["--params", str(params), *augment_args(data, tmp_path)])
    assert "2 dropped" in line
    manifest = (tmp_path / "manifest.csv").read_text().splitlines()
    dropped = [row for row in manifest if ",dropped," in row]
    assert [row.split(",")[0] for row in dropped] == ["a/d0.png", "b/resaved.png"]
    assert all("label conflict" in row for row in dropped)
    _, records, source = augmented.read_index(tmp_path / "augmented")
    assert {r.source for r in records}.isdisjoint({"a/d0.png", "b/resaved.png"})
    assert source.images == 7
    assert json.loads((tmp_path / "data_report.json").read_text())["dropped"] == 2


def test_copy_groups_are_joined_with_patients_and_kept_on_one_side(tmp_path):
    files = {}
    for patient in range(8):
        for cls in "ab":
            r, c = GRID[2 * patient + (cls == "b")]
            files[f"{cls}/P{patient}_x.png"] = crop(r, c)
    files["a/P9_again.png"] = jpeg(files["a/P0_x.png"], 85)  # patient 9's file: P0's cell
    data = write_set(tmp_path / "data", files)
    params = small_params(tmp_path, r"data.group_by=/(P\d+)_")
    run_stage("copies", ["--params", str(params), *copies_args(data, tmp_path)])
    run_stage("augment", ["--params", str(params), *augment_args(data, tmp_path)])
    _, records, _ = augmented.read_index(tmp_path / "augmented")
    group = {r.source: r.group for r in records}
    assert group["a/P9_again.png"] == group["a/P0_x.png"] == group["b/P0_x.png"] == "P0"
    manifest = (tmp_path / "manifest.csv").read_text()
    assert "a/P9_again.png,a,used" in manifest
    assert manifest.count(",P0,") == 3
    prep = tmp_path / "prepared"
    for seed in range(1, 6):
        run_stage("prepare", ["--params", str(params), "--input", str(tmp_path / "augmented"),
                              "--output", str(prep), "--split-seed", str(seed)])  # fmt: skip
        sides = {s for s in prepared.SPLITS for e in prepared.read(prep).table(s)
                 if e.group == "P0"}  # fmt: skip
        assert len(sides) == 1


def test_the_results_do_not_depend_on_the_number_of_workers(every_kind, found, tmp_path):
    pooled = copies.find(every_kind, PARAMS.data, COPIES.model_copy(update={"workers": 2}))
    assert pooled.report() == found.report()
    assert pooled.metrics() == found.metrics()
    assert pooled.summary() == found.summary()
    written = {}
    for name, result in (("one", found), ("two", pooled)):  # as the stage writes its folder
        (tmp_path / name).mkdir()
        copied.write(tmp_path / name, result.members(), result.overlay)
        written[name] = {p.name: p.read_bytes() for p in (tmp_path / name).iterdir()}
    assert written["one"] == written["two"]
    assert set(written["one"]) == {"groups.csv", "overlay.png"}


def cell(index: int, size: int = 96) -> np.ndarray:
    """A synthetic blood-smear crop (smooth cells on a pale background, where a label stands
    out), distinct for each index."""
    return synthesize.draw_cell(index % 2, size, np.random.default_rng([3, index]), 0.5)


@pytest.fixture(scope="module")
def overlaid(tmp_path_factory) -> tuple[Path, copies.Result]:
    """Sixteen distinct smear crops with a scale bar burned into every one, and two captures of
    one field, 16 and 12 px apart."""
    files = {f"{'ab'[i % 2]}/d{i:02d}.png": with_scale_bar(cell(i)) for i in range(16)}
    field = cell(16, 128)
    files["a/field.png"] = with_scale_bar(field[:96, :96])
    files["a/field_again.png"] = with_scale_bar(field[16:112, 12:108])
    folder = write_set(tmp_path_factory.mktemp("overlay") / "data", files)
    return folder, copies.find(folder, PARAMS.data, COPIES)


def test_a_burned_in_scale_bar_is_found_and_makes_no_copy(overlaid):
    _, result = overlaid
    rows, cols = np.nonzero(result.overlay)
    assert rows.min() > WORK_SIZE * 0.6  # the bottom right corner only
    assert cols.min() > WORK_SIZE * 0.4
    assert 0.01 < result.overlay.mean() < 0.15
    assert [[result.keys[i] for i in g] for g in result.groups] == [
        ["a/field.png", "a/field_again.png"]
    ]


def test_without_the_overlay_mask_the_scale_bar_makes_copies_of_unrelated_images(overlaid):
    folder, result = overlaid
    a, b = (next(copies._decoded([folder / f], PARAMS.data)) for f in ("a/d02.png", "b/d05.png"))
    none = np.zeros_like(result.overlay)
    bare = copies.verify(
        copies.views(a, PARAMS.copies.keypoints, none),
        copies.views(b, PARAMS.copies.keypoints, none),
        False,
    )
    masked = copies.verify(
        copies.views(a, PARAMS.copies.keypoints, result.overlay),
        copies.views(b, PARAMS.copies.keypoints, result.overlay),
        False,
    )
    assert bare[0] > masked[0]  # the label agrees at the identity map, without the mask
    assert masked[0] < PARAMS.copies.min_inliers


def test_the_audit_leaves_the_overlay_out_too(overlaid):
    folder, result = overlaid
    listing = ingest.list_dataset(folder)
    pixels = np.stack([
        images.resize(ingest.decode(item.path)[0], 64) for item in listing.items
    ])  # fmt: skip
    distinct = [i for i, item in enumerate(listing.items) if "field" not in item.path.name]
    test, train = distinct[:6], distinct[6:]
    flags = {}
    for mask in (None, result.overlay):
        found = audit.compare(
            [pixels[test]], lambda: [pixels[train]], PARAMS.audit, PARAMS.augment, mask
        )
        flags[mask is None] = int(found.flagged.sum())
    assert flags[False] == 0  # with the mask: no test image is a copy of a training image
    assert flags[True] > 0  # without it, the scale bar makes some


def test_the_copies_folder_round_trips_and_merge_joins_groups(tmp_path):
    members = [
        copied.Member("x/1.png", "a", "x/1.png", copied.KEPT),
        copied.Member("x/2.png", "a", "x/1.png", copied.KEPT),
        copied.Member("y/3.png", "b", "y/3.png", copied.DROPPED),
        copied.Member("y/4.png", "a", "y/3.png", copied.DROPPED),
    ]
    mask = np.zeros((WORK_SIZE, WORK_SIZE), bool)
    mask[100:, 90:] = True
    copied.write(tmp_path, members, mask)
    back = copied.read(tmp_path)
    assert list(back.members.values()) == members
    np.testing.assert_array_equal(back.overlay, mask)
    assert set(back.dropped) == {"y/3.png", "y/4.png"}
    groups = {"x/1.png": "P2", "x/2.png": "P1", "z/5.png": "P3"}
    assert copied.merge(groups, back) == {"P1": "P1", "P2": "P1", "P3": "P3"}
    empty = tmp_path / "empty"
    empty.mkdir()
    copied.write(empty, [], np.zeros_like(mask))
    assert copied.read(empty).overlay is None
    with pytest.raises(DataError, match="is not a copies folder"):
        copied.read(tmp_path / "missing")


def test_the_parameters_page_names_the_constants_the_code_uses():
    """docs/parameters.md's "Copies before the split" repeats the constants of copies.py and
    keypoints.py: each figure it quotes is the code's."""
    from blastcell import keypoints

    page = (ROOT / "docs" / "parameters.md").read_text(encoding="utf-8")
    section = " ".join(page.split("## Copies before the split", 1)[1].split("\n## ")[0].split())
    quoted = [
        f"On up to {copies.OVERLAY_SAMPLE} images",
        f"the {copies.PATCH}\N{MULTIPLICATION SIGN}{copies.PATCH} pixels around it",
        f"correlated at least {copies.TWIN_CORRELATION:g}, within {copies.TWIN_LEVELS * 100:g} %",
        f"and in {copies.OVERLAY_MIN_IMAGES} of them at least",
        f"a disc of {copies.OVERLAY_RADIUS} pixels (at {WORK_SIZE} px)",
        f"mirrored {keypoints.ORB_MARGIN} pixels out",
        f"hashed by {copies.TABLES} tables of {copies.TABLE_BYTES} random bytes",
        f"the next {copies.NEIGHBOURS - 1} of its hash",
        f"up to {copies.BUCKET_CAP} copies that share every keypoint",
        f"more than {copies.BUCKET_CAP} keypoints is a pattern",
        f"at least {copies.SHORTLIST_VOTES} collisions agreeing",
        f"at most {copies.RATIO:g} times the next nearest",
        f"(within {keypoints.PROPOSAL_TOLERANCE:g} pixels)",
        f"scale by up to {copies.MAX_SCALE:g}",
        f"at most {copies.MAX_ANISOTROPY:g} times the other",
        f"within {keypoints.RESIDUAL:g} pixels of the map",
        f"at least {copies.MIN_AGREEING * 100:g} % of the keypoints",
    ]
    assert [q for q in quoted if q not in section] == []
    assert f"`copies.keypoints` ({PARAMS.copies.keypoints})" in section
    assert f"`copies.min_inliers` ({PARAMS.copies.min_inliers})" in section
