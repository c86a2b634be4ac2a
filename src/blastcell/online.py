"""Online augmentation (`train.online_augmentation`): each training batch warped afresh every
epoch in the input pipeline, within the augment section's ranges, instead of (or as well as) the
augmented copies that the augment stage writes to disk.

Each image gets the augment stage's kind of random transform (`blastcell.transform`, Keras's
ImageDataGenerator): a rotation, a shift, a shear and a zoom per axis, composed in Keras's order
about Keras's centre, then flips, with `augment.fill_mode` and `augment.cval` outside the image
and bilinear interpolation (TensorFlow's ImageProjectiveTransformV3, the op Keras's own
preprocessing layers use; its border rules are close to, not bit for bit, scipy's). The result is
rounded back to uint8 pixels, as the copies on disk are. It is part of the training input, not of
the model: a saved model takes raw pixels as before, and predicts on them unchanged.

Determinism: the draws are stateless, seeded per batch from a stream of seeds that
`tf.data.Dataset.random` derives from `base.seed`, new for every epoch: the same data and params
give the same batches, on any number of input threads.
"""

from __future__ import annotations

import math

from blastcell.params import AugmentParams
from blastcell.tf import tf

_FILL = {"constant": "CONSTANT", "nearest": "NEAREST", "reflect": "REFLECT", "wrap": "WRAP"}


def matrices(
    theta: tf.Tensor,
    tx: tf.Tensor,
    ty: tf.Tensor,
    shear: tf.Tensor,
    zx: tf.Tensor,
    zy: tf.Tensor,
    size: int,
) -> tf.Tensor:
    """(n, 3, 3) output-to-input matrices in (x = column, y = row) order, as
    `transform.transform_matrix` makes them of one Transform each (angles in degrees, shifts
    in pixels): rotation @ shift @ shear @ zoom about Keras's centre."""
    theta, shear = theta * (math.pi / 180), shear * (math.pi / 180)
    zero, one = tf.zeros_like(theta), tf.ones_like(theta)

    def matrix(rows: list[list[tf.Tensor]]) -> tf.Tensor:
        return tf.stack([tf.stack(row, axis=-1) for row in rows], axis=-2)

    cos, sin = tf.cos(theta), tf.sin(theta)
    rotation = matrix([[cos, -sin, zero], [sin, cos, zero], [zero, zero, one]])
    shift = matrix([[one, zero, tx], [zero, one, ty], [zero, zero, one]])
    shearing = matrix(
        [[one, -tf.sin(shear), zero], [zero, tf.cos(shear), zero], [zero, zero, one]]
    )
    zoom = matrix([[zx, zero, zero], [zero, zy, zero], [zero, zero, one]])
    o = size / 2 - 0.5  # Keras's centre (minus half a pixel)
    centre = tf.constant([[1.0, 0.0, o], [0.0, 1.0, o], [0.0, 0.0, 1.0]])
    back = tf.constant([[1.0, 0.0, -o], [0.0, 1.0, -o], [0.0, 0.0, 1.0]])
    return centre @ rotation @ shift @ shearing @ zoom @ back


def warp(images: tf.Tensor, matrices: tf.Tensor, fill_mode: str, cval: float) -> tf.Tensor:
    """uint8 (n, h, w, 3) images warped by their output-to-input `matrices`, bilinear, with
    `fill_mode` and `cval` outside; float32."""
    n = tf.shape(images)[0]
    transforms = tf.concat([tf.reshape(matrices, [-1, 9])[:, :6], tf.zeros([n, 2])], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(images, tf.float32),
        transforms=transforms,
        output_shape=tf.shape(images)[1:3],
        fill_value=float(cval),
        interpolation="BILINEAR",
        fill_mode=_FILL[fill_mode],
    )


def augment_batch(images: tf.Tensor, settings: AugmentParams, seed: tf.Tensor) -> tf.Tensor:
    """A batch of uint8 (n, size, size, 3) images, each warped and flipped at random by the
    stateless `seed` (2 integers), within `settings` (drawn uniformly, as the augment stage
    draws them); uint8 again."""
    n, size = tf.shape(images)[0], int(images.shape[1])
    u = tf.random.stateless_uniform([n, 8], seed, minval=-1.0, maxval=1.0)  # a row per image
    s = settings
    warped = warp(
        images,
        matrices(
            u[:, 0] * s.rotation_range,
            u[:, 1] * s.height_shift_range * size,  # Keras's quirk: tx moves along the columns
            u[:, 2] * s.width_shift_range * size,
            u[:, 3] * s.shear_range,
            1.0 + u[:, 4] * s.zoom_range,
            1.0 + u[:, 5] * s.zoom_range,
            size,
        ),
        s.fill_mode,
        s.cval,
    )
    for flips, axis, column in ((s.horizontal_flip, 2, 6), (s.vertical_flip, 1, 7)):
        if flips:  # half the images, after the warp
            flip = tf.reshape(u[:, column] < 0, [-1, 1, 1, 1])
            warped = tf.where(flip, tf.reverse(warped, axis=[axis]), warped)
    return tf.cast(tf.clip_by_value(tf.round(warped), 0.0, 255.0), tf.uint8)


def augmented(dataset: tf.data.Dataset, settings: AugmentParams, seed: int) -> tf.data.Dataset:
    """Batches of (uint8 images, labels) of `dataset`, each batch's images augmented
    (`augment_batch`) by its own seed, drawn anew every epoch from `seed`."""
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    pairs = tf.data.Dataset.zip((dataset, seeds))
    return pairs.map(
        lambda batch, pair: (augment_batch(batch[0], settings, pair), batch[1]),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    ).prefetch(tf.data.AUTOTUNE)
