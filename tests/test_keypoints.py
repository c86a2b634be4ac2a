"""The keypoint geometry shared by the copies stage and the audit: Hamming distances, mutual
nearest pairs (with and without the ratio test), the audit's RANSAC over allowed affine maps, the
copies stage's map proposed by every pair, and ORB keypoints with an excluded region and mirrored
edges."""

import numpy as np
import pytest
import skimage.data
import skimage.transform

from blastcell import keypoints
from blastcell.keypoints import Keypoints, detect, fit_affine, fit_similarity, hamming, match

PHOTO = skimage.data.immunohistochemistry()  # 512 x 512: one stain, one light
STRETCH = 1.15 * 1.2 / 0.8  # what the default augmentation allows (audit.max_stretch)


def bare(bits: np.ndarray) -> Keypoints:
    n = len(bits)
    return Keypoints(np.zeros((n, 2)), bits, np.zeros(n), np.ones(n))


def test_hamming_counts_the_bits_that_differ_and_match_pairs_mutual_nearest():
    rng = np.random.default_rng(5)
    a, b = (rng.integers(0, 256, (n, 32), dtype=np.uint8) for n in (7, 9))
    expected = (np.unpackbits(a, axis=1)[:, None] != np.unpackbits(b, axis=1)[None]).sum(2)
    np.testing.assert_array_equal(hamming(a, b), expected)
    b[[4, 2]] = a[[1, 5]]  # two exact matches
    pairs = match(bare(a), bare(b))
    assert {(1, 4), (5, 2)} <= set(map(tuple, pairs.tolist()))
    assert len(set(pairs[:, 1].tolist())) == len(pairs)  # one to one


def test_the_ratio_test_drops_a_pair_whose_nearest_is_not_clearly_nearest():
    rng = np.random.default_rng(6)
    a = rng.integers(0, 256, (5, 32), dtype=np.uint8)
    b = rng.integers(0, 256, (6, 32), dtype=np.uint8)
    b[0] = a[0]  # a clear match
    b[1] = b[2] = a[1]  # a[1] looks like two keypoints of b: a repeated pattern
    kept = {tuple(p) for p in match(bare(a), bare(b), ratio=0.75).tolist()}
    assert (0, 0) in kept
    assert not any(i == 1 for i, _ in kept)
    everything = {tuple(p) for p in match(bare(a), bare(b)).tolist()}
    assert any(i == 1 for i, _ in everything)  # without the test it pairs, by chance


def test_fit_affine_finds_the_inliers_of_an_allowed_map_only():
    rng = np.random.default_rng(4)
    src = rng.uniform(0, 128, (80, 2))
    turn = np.deg2rad(70)
    linear = 1.2 * np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    dst = src @ linear.T + [30, -10] + rng.normal(0, 0.3, src.shape)
    dst[60:] = rng.uniform(0, 128, (20, 2))  # outliers
    found = fit_affine(src, dst, STRETCH, np.random.default_rng(0))
    assert found[:60].all()
    assert found[60:].sum() <= 1
    mirrored = dst[:60] * [-1, 1]  # a mirror: matched as such, never as a map
    assert fit_affine(src[:60], mirrored, STRETCH, np.random.default_rng(0)).sum() == 0
    stretched = src[:60] * [2.5, 1]  # beyond what zoom and shear make
    assert fit_affine(src[:60], stretched, STRETCH, np.random.default_rng(0)).sum() == 0


def mapped(src: np.ndarray, degrees: float, scale: float, shift) -> tuple[np.ndarray, np.ndarray]:
    turn = np.deg2rad(degrees)
    linear = scale * np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    return src @ linear.T + shift, linear


@pytest.mark.parametrize(("degrees", "scale"), [(0, 1.0), (37, 1.0), (-150, 1.6), (90, 0.6)])
def test_fit_similarity_finds_a_map_from_a_few_percent_of_the_pairs(degrees, scale):
    rng = np.random.default_rng(7)
    m, good = 400, 16  # 4 % agree: three-pair samples would almost never be all good
    src = rng.uniform(0, 128, (m, 2))
    dst, linear = mapped(src, degrees, scale, [20, -7])
    dst[good:] = rng.uniform(0, 128, (m - good, 2))
    angle = np.zeros(m)
    a = Keypoints(src, np.zeros((m, 32), np.uint8), angle, np.ones(m))
    # each good pair's keypoints carry the turn and the scale, roughly, as ORB's do
    b_angle = angle + np.deg2rad(degrees) + rng.normal(0, 0.03, m)
    b = Keypoints(dst, np.zeros((m, 32), np.uint8), b_angle, np.full(m, scale))
    pairs = np.column_stack([np.arange(m), np.arange(m)])
    fit = fit_similarity(a, b, pairs, max_scale=2.5, max_anisotropy=1.25)
    assert fit.inliers[:good].all()
    assert fit.inliers[good:].sum() <= 2
    assert fit.count >= good
    np.testing.assert_allclose(fit.linear, linear, atol=0.02)
    shown = fit.describe()
    assert shown["rotation_deg"] == pytest.approx((degrees + 180) % 360 - 180, abs=0.5)
    assert shown["scale"] == pytest.approx(scale, abs=0.02)


def test_fit_similarity_refuses_a_mirror_or_a_scale_beyond_its_bound_and_counts_places_once():
    rng = np.random.default_rng(8)
    src = rng.uniform(0, 128, (60, 2))
    pairs = np.column_stack([np.arange(60), np.arange(60)])
    plain = Keypoints(src, np.zeros((60, 32), np.uint8), np.zeros(60), np.ones(60))
    mirrored = Keypoints(src * [-1, 1], plain.bits, plain.angle, plain.scale)
    assert fit_similarity(plain, mirrored, pairs, 2.5, 1.25).count == 0
    far, _ = mapped(src, 0, 3.0, [0, 0])
    scaled = Keypoints(far, plain.bits, plain.angle, np.full(60, 3.0))
    assert fit_similarity(plain, scaled, pairs, 2.5, 1.25).count == 0
    assert fit_similarity(plain, scaled, pairs, 3.5, 1.25).count == 60
    # one corner found at three scales is one place
    twice = Keypoints(np.repeat(src[:10], 3, axis=0), np.zeros((30, 32), np.uint8), np.zeros(30),
                      np.ones(30))  # fmt: skip
    same = np.column_stack([np.arange(30), np.arange(30)])
    fit = fit_similarity(twice, twice, same, 2.5, 1.25)
    assert fit.inliers.sum() == 30
    assert fit.count == 10


def test_detect_leaves_out_an_excluded_region_and_keeps_the_strongest_elsewhere():
    image = PHOTO[:128, :128]
    everything = detect(image, 300)
    corner = np.zeros((keypoints.WORK_SIZE,) * 2, bool)
    corner[96:, 96:] = True
    kept = detect(image, 300, exclude=corner, budget=600)
    assert len(kept) == 300
    assert not ((kept.xy[:, 0] >= 95.5) & (kept.xy[:, 1] >= 95.5)).any()
    assert ((everything.xy[:, 0] >= 96) & (everything.xy[:, 1] >= 96)).any()
    assert len(detect(np.full((64, 64, 3), 128, np.uint8), 50)) == 0  # flat: none


def test_mirrored_edges_let_keypoints_near_an_edge_count():
    image = PHOTO[200:328, 200:328]
    near = keypoints.ORB_MARGIN - 4  # ORB describes nothing this near an edge by itself

    def at_edge(found: Keypoints) -> int:
        return int((np.minimum(found.xy, keypoints.WORK_SIZE - 1 - found.xy) < near).any(1).sum())

    assert at_edge(detect(image, 500)) == 0
    assert at_edge(detect(image, 500, pad=True, budget=1000)) > 20
    padded = detect(image, 500, pad=True, budget=1000)
    assert (padded.xy >= 0).all()
    assert (padded.xy <= keypoints.WORK_SIZE - 1).all()


def test_a_turned_resized_copy_of_a_photograph_is_found_with_its_map():
    image = PHOTO[100:228, 150:278]
    turned = skimage.transform.rotate(image, 30, resize=False, mode="reflect", preserve_range=True)
    turned = np.clip(np.rint(turned), 0, 255).astype(np.uint8)
    a, b = detect(image, 500, pad=True, budget=1000), detect(turned, 500, pad=True, budget=1000)
    fit = fit_similarity(a, b, match(a, b, ratio=0.75), 2.5, 1.25)
    assert fit.count >= 40
    assert fit.describe()["rotation_deg"] == pytest.approx(-30, abs=2)  # x right, y down
    other = detect(PHOTO[300:428, 300:428], 500, pad=True, budget=1000)
    assert fit_similarity(a, other, match(a, other, ratio=0.75), 2.5, 1.25).count < 10
