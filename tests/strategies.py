"""Strategies for tests.

One MirroredStrategy per process: each new MirroredStrategy restarts its collective instance keys, and the runtime
caches collective parameters by key, so a second strategy in the same process can collide with the first
("Shape mismatch in the collective instance ..."). Real runs build one strategy per process, as this module does.
"""

import functools

import tensorflow as tf


@functools.cache
def mirrored() -> tf.distribute.MirroredStrategy:
    """MirroredStrategy over the two logical CPU devices that conftest.py creates."""
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


def one_device() -> tf.distribute.OneDeviceStrategy:
    return tf.distribute.OneDeviceStrategy("/cpu:0")
