"""Bounded memory for the largest image the limits accept: one 6300 x 6300 image (39.7 M pixels,
under params.yaml's data.max_image_pixels; 113.6 MiB as 8-bit RGB), as a CMYK JPEG and as a
PNG, read by the augment stage and by `blastcell predict`, each run in a process of its own
(bench/decode_memory.py's, which the benchmark reports): its peak RSS stays within the same run's
on a small image plus TIMES decoded RGB images. Float64 copies of the image took it to 3.4 GB
(augment, the JPEG) and 4.0 GB (predict). The resize that avoids them gives scikit-image's
bytes, and the augment stage's preview keeps a large image shrunk (matplotlib took 2 GB).
With params.yaml's augment.copies, the augment stage stays within TIMES_WARPED (scikit-image's
float64 warps took it to 3.7 GB; blastcell.transform warps a large image by bands, with the
same bytes: tests/test_transform.py)."""

import sys
from pathlib import Path

import decode_memory as bench  # bench/decode_memory.py (conftest puts bench/ on the path)
import numpy as np
import pytest
import skimage.transform

from blastcell import augment, images

LINUX = pytest.mark.skipif(sys.platform != "linux", reason="peak RSS as Linux counts it (KiB)")
TIMES = 3  # a large image's run may peak this many decoded RGB images over a small image's run
TIMES_WARPED = 3.5  # with the copies: one more, the copy being written beside its source
LARGE = ("cmyk_jpeg", "png")


@pytest.fixture(scope="session")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """bench.write_images: the large image as a CMYK JPEG and a PNG, and small PNGs."""
    return bench.write_images(tmp_path_factory.mktemp("large_images"))


def _over_small(runs: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Each large run's peak over the small image's run, in decoded RGB images."""
    small = runs["small"][1]
    return {name: (runs[name][1] - small) / bench.rgb_mib() for name in LARGE}


@LINUX
@pytest.mark.slow  # three augment processes, one reading a 6300 px image
def test_the_augment_stage_reads_the_largest_image_in_a_few_times_its_rgb_size(inputs, tmp_path):
    # one worker, no copies: the copies' memory is blastcell.transform's, not decoding's
    runs = {
        name: bench.augment_run(inputs[name], inputs["other"], tmp_path / name)
        for name in ("small", *LARGE)
    }
    extra = _over_small(runs)
    print(f"augment: peaks {runs}, over the small run in RGB images {extra}")
    assert all(times <= TIMES for times in extra.values()), (runs, extra)


@LINUX
@pytest.mark.slow  # four 6300 px warps and five PNGs of them: about 20 s
def test_the_augment_stage_warps_the_largest_image_in_a_few_times_its_rgb_size(inputs, tmp_path):
    # The PNG only: what the copies add does not depend on how the source was decoded.
    runs = {
        name: bench.augment_run(inputs[name], inputs["other"], tmp_path / name, copies=True)
        for name in ("small", "png")
    }
    extra = (runs["png"][1] - runs["small"][1]) / bench.rgb_mib()
    print(f"augment with copies: peaks {runs}, over the small run in RGB images {extra:.2f}")
    assert extra <= TIMES_WARPED, runs
    assert len(list((tmp_path / "png" / "augmented").glob("Im001_1_*.png"))) > 1


@LINUX
@pytest.mark.slow  # three start-ups of TensorFlow: about 20 s
def test_predict_reads_the_largest_image_in_a_few_times_its_rgb_size(inputs, tmp_path):
    model_file = bench.tiny_model(tmp_path / "model", 32)
    runs = {
        name: bench.predict_run(inputs[name], model_file, tmp_path) for name in ("small", *LARGE)
    }
    extra = _over_small(runs)
    print(f"predict: peaks {runs}, over the small run in RGB images {extra}")
    assert all(times <= TIMES for times in extra.values()), (runs, extra)


def _skimage_resize(image: np.ndarray, size: int) -> np.ndarray:
    """What `images.resize` did before it resized large images by bands: scikit-image's."""
    out = skimage.transform.resize(
        image, (size, size), order=1, anti_aliasing=True, preserve_range=True
    )
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    ("shape", "size"),
    [((257, 257), 128), ((600, 610), 128), ((1100, 700), 64), ((16, 3000), 128), ((90, 70), 224)],
)
def test_resizing_by_bands_gives_scikit_images_bytes_ties_included(monkeypatch, shape, size):
    rng = np.random.default_rng(sum(shape))
    noise = rng.integers(0, 256, (*shape, 3), np.uint8)
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]  # ramps: many exact .5 ties to round
    ramps = np.stack([cols % 256, (3 * rows + cols) % 256, (rows // 7 * 9) % 256], axis=-1)
    monkeypatch.setattr(images, "SKIMAGE_SAMPLES", 0)  # every image by bands
    for image in (noise, ramps.astype(np.uint8)):
        np.testing.assert_array_equal(images.resize(image, size), _skimage_resize(image, size))


def test_images_kept_for_the_preview_are_shrunk_only_when_larger_than_its_side():
    small = np.zeros((augment.PREVIEW_SIDE, 700, 3), np.uint8)
    assert images.shrunk(small, augment.PREVIEW_SIDE) is small  # the committed previews' images
    large = np.random.default_rng(3).integers(0, 256, (2500, 1000, 3), np.uint8)
    shown = images.shrunk(large, augment.PREVIEW_SIDE)  # by 3: 2500 / 2 is still over 1024
    assert shown.shape == (834, 334, 3)
    box = large[:3, :3].reshape(9, 3).mean(axis=0)
    np.testing.assert_allclose(shown[0, 0], box, atol=1)  # the mean of each 3 x 3 box
