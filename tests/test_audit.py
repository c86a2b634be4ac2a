"""The leakage audit: the colour shortlist, the keypoint verification (an augmented copy verifies
against its original, flipped or not, another crop of the same photograph does not), and the
audit stage on tiny data split both ways (the seed's leaky random split is caught, the source
split is clean)."""

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage
import scipy.sparse
import skimage.data
from helpers import run_prepare, run_source_stages, run_stage, write_params

from blastcell import audit, images, keypoints
from blastcell.params import load
from blastcell.transform import Transform, apply_transform, random_transform

ROOT = Path(__file__).resolve().parents[1]
PARAMS = load(ROOT / "params.yaml")
AUGMENT, AUDIT = PARAMS.augment, PARAMS.audit
PHOTO = skimage.data.immunohistochemistry()  # 512 x 512: one stain, one light


def crop(row: int, col: int, side: int = 64) -> np.ndarray:
    return PHOTO[row : row + side, col : col + side].copy()


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.random(size=(n, dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_an_exact_duplicate_is_at_distance_zero():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    refs = audit.descriptors(images, 8)
    assert refs.shape == (6, 8**3)
    np.testing.assert_allclose(np.linalg.norm(refs.toarray(), axis=1), 1)
    index, distance = audit.shortlist(audit.descriptors(images[[4, 1]], 8), [refs], 1)
    assert index.tolist() == [[4], [1]]
    assert distance[:, 0] == pytest.approx([0, 0], abs=1e-12)


@pytest.mark.parametrize("k", [1, 3, 101])
def test_batching_the_references_gives_the_same_shortlist(k):
    rng = np.random.default_rng(1)
    queries, refs = unit_rows(rng, 20, 48), unit_rows(rng, 101, 48)
    one_shot = audit.shortlist(queries, [refs], k)
    expected = 1 - queries @ refs.T
    order = np.argsort(expected, axis=1, kind="stable")[:, :k]
    assert one_shot[0].tolist() == order.tolist()
    np.testing.assert_allclose(one_shot[1], np.take_along_axis(expected, order, 1), atol=1e-12)
    for size in (1, 7, 50):
        batches = (refs[i : i + size] for i in range(0, 101, size))
        index, distance = audit.shortlist(queries, batches, k)
        assert index.tolist() == one_shot[0].tolist()
        np.testing.assert_allclose(distance, one_shot[1], atol=1e-12)
    sparse = audit.shortlist(scipy.sparse.csr_array(queries), [scipy.sparse.csr_array(refs)], k)
    assert sparse[0].tolist() == one_shot[0].tolist()


def test_equal_distances_go_to_the_first_reference_however_batched():
    refs = np.eye(4)[[0, 1, 1, 2]]  # references 1 and 2 are the same
    query = np.eye(4)[[1]]
    for size in (1, 2, 4):
        index, _ = audit.shortlist(query, [refs[i : i + size] for i in range(0, 4, size)], 2)
        assert index.tolist() == [[1, 2]]


def test_missing_references_leave_the_shortlist_short():
    index, distance = audit.shortlist(np.eye(3)[:2], [np.eye(3)[[2]]], 2)
    assert index.tolist() == [[0, -1], [0, -1]]
    assert distance[:, 0] == pytest.approx([1, 1])
    assert np.isinf(distance[:, 1]).all()


def picture(rng: np.random.Generator, n_colours: int = 12) -> np.ndarray:
    """A (1, 32, 32, 3) image of pixels drawn from its own palette of dark colours."""
    palette = rng.integers(0, 100, (n_colours, 3), dtype=np.uint8)
    return palette[rng.integers(0, n_colours, (1, 32, 32))]


def test_a_flipped_turned_and_padded_copy_is_near_only_without_its_fill():
    rng = np.random.default_rng(2)
    image, other = picture(rng), picture(rng)
    copy = np.rot90(image[:, :, ::-1], 1, axes=(1, 2)).copy()  # flipped and turned
    copy[:, :6] = 125  # a strip of fill, as a shift leaves
    assert audit.fill_mask(copy, (125, 125, 125))[0].sum() == 7 * 32  # and its seam
    distance = {}
    for fill in [(125, 125, 125), None]:
        refs = audit.descriptors(np.concatenate([other, copy]), 8, fill)
        index, distance[fill] = audit.shortlist(audit.descriptors(image, 8, fill), [refs], 1)
        assert index.tolist() == [[1]]
    assert distance[(125, 125, 125)][0, 0] < 0.001 < 0.05 < distance[None][0, 0]
    other = audit.shortlist(audit.descriptors(image, 8), [audit.descriptors(other, 8)], 1)
    assert other[1][0, 0] > 0.5


def copies(image: np.ndarray, n: int = 3) -> list[np.ndarray]:
    """`n` augmented copies of `image` drawn with the default augment params, each as drawn and
    flipped left to right: 2n copies."""
    rng = np.random.default_rng(3)
    drawn = [random_transform(rng, image.shape[:2], AUGMENT) for _ in range(n)]
    return [
        apply_transform(
            image,
            dataclasses.replace(t, flip_horizontal=flip),
            fill_mode=AUGMENT.fill_mode,
            cval=AUGMENT.cval,
        )
        for t in drawn
        for flip in (False, True)
    ]


def verifies(inliers: int, pairs: int) -> bool:
    return inliers >= AUDIT.min_inliers and inliers >= AUDIT.min_inlier_ratio * pairs


FILL = audit.fill_colour(AUGMENT)
STRETCH = audit.max_stretch(AUGMENT)


def test_an_augmented_copy_verifies_against_its_original_and_not_another_crop():
    original, others = crop(320, 256), [crop(320, 320), crop(64, 320), crop(128, 0)]
    theirs = audit.keypoints(original, AUDIT.keypoints, FILL)
    assert len(theirs.xy) > 100
    for n, copy in enumerate(copies(original)):
        views = [audit.keypoints(v, AUDIT.keypoints, FILL) for v in audit.views(copy, AUGMENT)]
        assert len(views) == 2  # the copy, and mirrored: the augmentation flips
        own = audit.agreement(views, theirs, STRETCH)
        assert verifies(*own), (n, own)
        for other in others:  # another cell of the same photograph, same stain, same light
            found = audit.agreement(views, audit.keypoints(other, AUDIT.keypoints, FILL), STRETCH)
            assert found[0] < AUDIT.min_inliers / 2, (n, found)
        if n % 2:  # flipped: ORB descriptors are not mirror-invariant, the mirror is what finds it
            alone = audit.agreement(views[:1], theirs, STRETCH)
            assert not verifies(*alone), (n, alone)


def test_compare_flags_the_copy_and_names_its_original():
    a, b, c, d = crop(320, 256), crop(0, 192), crop(192, 384), crop(384, 64)
    copy = copies(a, 1)[1]  # flipped
    found = audit.compare(
        [np.stack([copy, c])], lambda: [np.stack([b, d]), np.stack([a])], AUDIT, AUGMENT
    )
    assert found.index.shape == (2, AUDIT.candidates)
    assert found.flagged.tolist() == [True, False]
    best = found.best()
    assert found.index[0, best[0]] == 2  # a, third in training
    assert found.inliers[1].max() < AUDIT.min_inliers
    assert (found.keypoint_counts > AUDIT.min_inliers).all()
    assert (found.index[:, 3:] == -1).all()  # three training images: the rest is empty


def test_a_flat_image_has_no_keypoints_and_verifies_nothing():
    flat = np.full((64, 64, 3), 200, np.uint8)
    none = audit.keypoints(flat, AUDIT.keypoints, FILL)
    assert none.xy.shape == (0, 2)
    assert audit.agreement([none], audit.keypoints(crop(0, 0), 200), STRETCH) == (0, 0)


def test_keypoints_keep_off_the_fill():
    turned = Transform(theta=30, tx=12, ty=-12, zx=0.8, zy=0.8)  # a corner of fill in view
    copy = apply_transform(crop(320, 256), turned, fill_mode="constant", cval=AUGMENT.cval)
    fill = audit.fill_mask(images.resize(copy, keypoints.WORK_SIZE)[np.newaxis], FILL)[0]
    away = scipy.ndimage.distance_transform_edt(~fill)  # from the fill and its seam, pixels

    def nearest_to_fill(found: keypoints.Keypoints) -> float:
        return away[tuple(np.rint(found.xy[:, ::-1]).astype(int).T)].min()

    assert nearest_to_fill(audit.keypoints(copy, AUDIT.keypoints)) < audit.FILL_MARGIN
    assert nearest_to_fill(audit.keypoints(copy, AUDIT.keypoints, FILL)) > audit.FILL_MARGIN


def test_the_stretch_allowed_is_what_zoom_and_shear_make():
    assert audit.max_stretch(AUGMENT) == pytest.approx(audit.STRETCH_SLACK * 1.2 / 0.8, rel=0.01)
    still = AUGMENT.model_copy(update={"zoom_range": 0.0, "shear_range": 0.0})
    assert audit.max_stretch(still) == pytest.approx(audit.STRETCH_SLACK)


def test_a_test_image_is_matched_mirrored_only_when_the_augmentation_flips():
    image = crop(0, 0, 8)
    assert len(audit.views(image, AUGMENT)) == 2
    for horizontal, vertical, n in [(False, False, 1), (False, True, 2), (True, False, 2)]:
        flips = {"horizontal_flip": horizontal, "vertical_flip": vertical}
        views = audit.views(image, AUGMENT.model_copy(update=flips))
        assert len(views) == n
        np.testing.assert_array_equal(views[-1], image[:, ::-1] if n == 2 else image)


def _tiny_params(folder: Path, split: str) -> Path:
    synthesize = ["synthesize.n_blast=8", "synthesize.n_not_blast=8", "synthesize.image_size=128"]
    # the audit's own params, at any size
    prepare = ["prepare.image_size=64", f"prepare.split={split}"]
    return write_params(folder / "params.yaml", *synthesize, *prepare, tiny=True)


@pytest.fixture(scope="module")
def augmented_set(tmp_path_factory) -> tuple[Path, Path]:
    """Synthesize, copies and augment, run once for both splits (they read no prepare.*):
    their folder and augment's output."""
    folder = tmp_path_factory.mktemp("sources")
    return folder, run_source_stages(folder, _tiny_params(folder, "source"))


def run_audit(augmented_set, tmp_path: Path, split: str) -> tuple[dict, list[dict[str, str]]]:
    """Prepare with `split` and the audit, on the tiny augmented set; the audit's full report
    and CSV rows."""
    sources, aug = augmented_set
    params = _tiny_params(tmp_path, split)
    prepared = run_prepare(tmp_path, params, aug)
    metrics, table = tmp_path / "audit_metrics.json", tmp_path / "audit" / "nearest.csv"
    report = tmp_path / "audit.json"
    run_stage(
        "audit",
        [
            "--params",
            str(params),
            "--data",
            str(prepared),
            "--copies",
            str(sources / "copies"),
            "--metrics",
            str(metrics),
            "--report",
            str(report),
            "--nearest",
            str(table),
        ],
    )
    full = json.loads(report.read_text())
    assert json.loads(metrics.read_text()) == {"near_duplicates": full["near_duplicates"]}
    with table.open() as f:
        return full, list(csv.DictReader(f))


def test_the_audit_finds_no_near_duplicates_in_the_source_split(augmented_set, tmp_path):
    metrics, rows = run_audit(augmented_set, tmp_path, "source")
    assert metrics["test_images"] == len(rows) == 4  # 2 originals per class
    assert metrics["source_in_train"] == 0
    assert metrics["near_duplicates"] == 0
    assert metrics["near_duplicate_fraction"] == 0
    assert all(r["near_duplicate"] == "false" and r["same_source"] == "false" for r in rows)
    assert all(int(r["inliers"]) < metrics["min_inliers"] for r in rows)
    assert metrics["too_few_keypoints"] == 0
    assert metrics["median_inliers"] < metrics["min_inliers"] / 2
    assert metrics["candidates"] == AUDIT.candidates


def test_the_audit_flags_the_leaked_copies_of_the_random_split(augmented_set, tmp_path):
    metrics, rows = run_audit(augmented_set, tmp_path, "random")
    assert list(rows[0]) == [
        "test_file",
        "train_file",
        "distance",
        "inliers",
        "inlier_ratio",
        "near_duplicate",
        "same_source",
    ]
    leaked = [r for r in rows if r["same_source"] == "true"]
    flagged = [r for r in rows if r["near_duplicate"] == "true"]
    assert metrics["test_images"] == len(rows) == 48 - round(48 * 1020 / 1268)
    assert metrics["near_duplicates"] == len(flagged)
    assert metrics["nearest_same_source"] == len(leaked)
    assert metrics["source_in_train"] >= len(leaked)
    assert all(r["same_source"] == "true" for r in flagged)  # every flag is a true leak
    assert len(flagged) >= 0.8 * metrics["source_in_train"]  # and most leaks are flagged
    for r in flagged:
        assert int(r["inliers"]) >= metrics["min_inliers"]
        assert float(r["inlier_ratio"]) >= metrics["min_inlier_ratio"]
