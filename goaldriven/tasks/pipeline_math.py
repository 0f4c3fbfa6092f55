"""Stateless seed folding and batch-count arithmetic shared by the exactly resumable input pipelines.

`fold_seed(seed, a, b, ...)` derives independent stateless seed streams (tfds_reading.py, digits.py,
synthetic_images.py, self_supervised/); `ceil_div` counts the padded evaluation batches of each input pipeline.
"""

import tensorflow as tf


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def fold_seed(seed: tf.Tensor, *data) -> tf.Tensor:
    """A stateless seed (2,) derived from `seed` and integers `data` (distinct data give independent streams)."""
    for value in data:
        seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(value, tf.int64))
    return seed
