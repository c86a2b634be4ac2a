"""Online augmentation (`train.online_augmentation`): the augment stage's transforms, drawn per
batch and epoch in tf.data, deterministic from the seed, uint8 in and out."""

from pathlib import Path

import numpy as np
import pytest
import yaml
from skimage import data
from skimage.transform import resize

from blastcell import online, params, transform
from blastcell.tf import tf

ROOT = Path(__file__).resolve().parents[1]
AUGMENT = params.load(ROOT / "params.yaml").augment
STILL = AUGMENT.model_copy(
    update={
        "rotation_range": 0,
        "width_shift_range": 0,
        "height_shift_range": 0,
        "shear_range": 0,
        "zoom_range": 0,
        "horizontal_flip": False,
        "vertical_flip": False,
    }
)


def cells(n: int = 1, size: int = 64) -> np.ndarray:
    """`n` uint8 RGB crops of a real microscopy photograph (scikit-image's IHC sample)."""
    photo = data.immunohistochemistry()
    crops = [photo[80 * i : 80 * i + 256, 60 * i : 60 * i + 256] for i in range(n)]
    return np.stack(
        [(resize(c, (size, size), anti_aliasing=True) * 255).astype(np.uint8) for c in crops]
    )


@pytest.mark.parametrize(
    "t",
    [
        transform.Transform(theta=30),
        transform.Transform(tx=5, ty=-3),
        transform.Transform(shear=15),
        transform.Transform(zx=1.2, zy=0.85),
        transform.Transform(theta=-40, tx=2, ty=4, shear=10, zx=0.9, zy=1.1),
    ],
)
def test_a_warp_is_the_augment_stages_transform(t):
    """The same transform online and on disk: the same geometry, Keras's quirks included; only
    TensorFlow's border rule differs from scipy's, a few edge pixels."""
    image = cells()[0]
    on_disk = transform.apply_transform(image, t, fill_mode="constant", cval=125.0)
    values = (t.theta, t.tx, t.ty, t.shear, t.zx, t.zy)
    matrices = online.matrices(*(tf.constant([v], tf.float32) for v in values), 64)
    warped = online.warp(tf.constant(image[None]), matrices, "constant", 125.0).numpy()[0]
    diff = np.abs(np.clip(np.round(warped), 0, 255) - on_disk.astype(float))
    assert diff.mean() < 2
    assert (diff > 2).mean() < 0.05
    mirrored = (-t.theta, -t.tx, -t.ty, -t.shear, t.zx, t.zy)  # the wrong way round is far off
    if any(mirrored[:4]):
        wrong = online.matrices(*(tf.constant([v], tf.float32) for v in mirrored), 64)
        other = online.warp(tf.constant(image[None]), wrong, "constant", 125.0).numpy()[0]
        assert np.abs(other - on_disk).mean() > 4 * diff.mean()


def test_no_ranges_no_change_and_flips_mirror_about_half_the_images():
    images = cells(4)
    batch = tf.constant(np.concatenate([images] * 8))
    seed = tf.constant([3, 4], tf.int64)
    assert np.array_equal(online.augment_batch(batch, STILL, seed).numpy(), batch.numpy())
    flips = STILL.model_copy(update={"horizontal_flip": True})
    out = online.augment_batch(batch, flips, seed).numpy()
    mirrored = [np.array_equal(o, b[:, ::-1]) for o, b in zip(out, batch.numpy(), strict=True)]
    same = [np.array_equal(o, b) for o, b in zip(out, batch.numpy(), strict=True)]
    assert all(m != s for m, s in zip(mirrored, same, strict=True))  # one or the other
    assert 4 <= sum(mirrored) <= 28
    assert out.dtype == np.uint8


def test_the_batches_are_new_every_epoch_and_the_same_every_run():
    images = cells(6)
    labels = np.eye(2, dtype=np.float32)[[0, 1] * 3]

    def two_epochs() -> list[np.ndarray]:
        tf.random.set_seed(1)  # the train stage seeds TensorFlow first (train.make_deterministic)
        batches = tf.data.Dataset.from_tensor_slices((images, labels)).batch(4)
        augmented = online.augmented(batches, AUGMENT, 7)
        assert int(augmented.cardinality()) == 2  # Keras still knows an epoch's length
        return [x.numpy() for _ in range(2) for x, _ in augmented]

    first, again = two_epochs(), two_epochs()
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0], first[2])  # epoch 2's first batch is warped anew
    assert not np.array_equal(first[0], images[:4])
    assert first[0].dtype == np.uint8


def test_train_declares_every_augment_range_and_only_those():
    """docs/parameters.md: train reads every augment param but copies and workers."""
    declared = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["train"]["params"]
    ranges = {k.split(".", 1)[1] for k in declared if k.startswith("augment.")}
    assert ranges == set(params.AugmentParams.model_fields) - {"copies", "workers"}
    page = " ".join((ROOT / "docs" / "parameters.md").read_text(encoding="utf-8").split())
    assert "every `augment` param but `copies` and `workers`" in page
