"""What the models see: the examples as tensors, tf.data batches gathered from them, and random
distortions about the image centre (training's augmentation, export's held-out images)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from . import quiet_native_stderr

with quiet_native_stderr():  # TensorFlow's start-up banner (see quiet_native_stderr)
    import tensorflow as tf

from .models import INPUT_SHAPE, NUM_CLASSES
from .params import Augment

# Large enough to be fast; small enough that five folds validating at once hold little memory.
VALIDATION_BATCH = 250

Examples = tuple[tf.Tensor, tf.Tensor]  # uint8 images (N, 28, 28, 1) and labels (N,)


def to_tensors(images: np.ndarray, labels: np.ndarray) -> Examples:
    """The examples as tensors, once: jobs prepared from them share this one copy."""
    return tf.constant(images), tf.constant(labels)


def random_affines(rng: np.random.Generator, n: int, degrees: float, scale: float, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """n random turns (up to +-degrees), scalings (1 +- scale) and moves (up to +-shift pixels)
    about the image centre, drawn image after image, as the (n, 2, 2) matrices and (n, 2) offsets
    that map an output pixel (row, column) to the input pixel it reads: matrix @ output + offset."""
    matrices, offsets = np.empty((n, 2, 2)), np.empty((n, 2))
    centre = (np.array(INPUT_SHAPE[:2]) - 1) / 2
    for i in range(n):
        angle, factor = np.deg2rad(rng.uniform(-degrees, degrees)), rng.uniform(1 - scale, 1 + scale)
        matrices[i] = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) / factor
        offsets[i] = centre - matrices[i] @ centre - rng.uniform(-shift, shift, 2)
    return matrices, offsets


def distorted(images: np.ndarray, rng: np.random.Generator, degrees: float = 12, scale: float = 0.1, shift: float = 2) -> np.ndarray:
    """Each digit turned, scaled and moved a little at random (the classic MNIST distortions), as
    float32 pixels: new images that no model of the default protocol trained on."""
    out = np.empty_like(images, dtype=np.float32)
    for i, (matrix, offset) in enumerate(zip(*random_affines(rng, len(images), degrees, scale, shift), strict=True)):
        out[i, ..., 0] = ndimage.affine_transform(images[i, ..., 0].astype(np.float32), matrix, offset=offset, order=1)
    return np.clip(out, 0, 255)


def distortions(augment: Augment, n: int, rng: np.random.Generator) -> np.ndarray:
    """random_affines as `augment` sets them, as the (n, 8) transforms of
    tf.raw_ops.ImageProjectiveTransformV3, which map an output pixel (x, y) = (column, row)."""
    matrices, offsets = random_affines(rng, n, augment.rotation, augment.zoom, augment.shift * INPUT_SHAPE[0])
    (m00, m01), (m10, m11) = matrices[:, 0].T, matrices[:, 1].T
    zeros = np.zeros(n)
    return np.stack([m11, m10, offsets[:, 1], m01, m00, offsets[:, 0], zeros, zeros], axis=1).astype(np.float32)


def distort(images: tf.Tensor, transforms: tf.Tensor) -> tf.Tensor:
    """Apply distortions() to a batch of uint8 images (bilinear, black outside the image)."""
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=INPUT_SHAPE[:2], fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT"
    )


def dataset(
    examples: Examples,
    index: np.ndarray,
    batch_size: int,
    shuffle_seed: Sequence[int] | None,
    augment: Augment | None = None,
    label_smoothing: float | None = None,
) -> tf.data.Dataset:
    """Batches of the examples at `index`, in an order drawn from `shuffle_seed` if given, each
    image distorted as `augment` says (with distortions drawn from the same seed). The labels are
    the digits, or with a `label_smoothing` (0 too) one-hot targets smoothed by it.

    Only the indices are shuffled; each batch is gathered from the shared tensors, so five folds
    hold one copy of the images, not five. The images stay uint8: the model's first layer casts
    and scales them.

    tf.data's autotuner is off on purpose: its background thread sleeps 10 ms, 20 ms, ... up to
    10.24 s, and destroying an iterator (Keras makes one per epoch) waits for it to wake, so every
    epoch ended with a stall of up to 10 s. Gathering uint8 batches is cheap, so one private thread
    and a one-batch prefetch keep the training threads fed without competing for the cores.
    """
    images, labels = examples
    options = tf.data.Options()
    options.autotune.enabled = False
    options.threading.private_threadpool_size = 1
    # Under a strategy each replica gets its share of every batch; across workers, its share of the
    # batches' elements (each worker holds all the data, so nothing is read twice).
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    slices = index
    if shuffle_seed is not None:
        rng = np.random.default_rng(list(shuffle_seed))
        slices = rng.permutation(index)
        if augment is not None and augment.active:
            slices = (slices, distortions(augment, len(slices), rng))

    def targets(i):
        digits = tf.gather(labels, i)
        if label_smoothing is None:
            return digits
        return tf.one_hot(tf.cast(digits, tf.int32), NUM_CLASSES) * (1 - label_smoothing) + label_smoothing / NUM_CLASSES

    if isinstance(slices, tuple):

        def gather(i, transforms):
            return distort(tf.gather(images, i), transforms), targets(i)
    else:

        def gather(i):
            return tf.gather(images, i), targets(i)

    return tf.data.Dataset.from_tensor_slices(slices).batch(batch_size).map(gather).prefetch(1).with_options(options)
