"""Test configuration: two logical CPU devices (so MirroredStrategy runs cross-replica code), seeds, markers.

Markers: `slow` (skipped unless --run-slow; CI passes it) and `tpu` (skipped unless --run-tpu on a TPU host).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # pylint: disable=g-import-not-at-top
import pytest
import tensorflow as tf

_CPUS = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(_CPUS[0], [tf.config.LogicalDeviceConfiguration()] * 2)


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False, help="run tests marked slow")
    parser.addoption("--run-tpu", action="store_true", default=False, help="run tests marked tpu")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: slower tests (multi-process, full-size builds); need --run-slow")
    config.addinivalue_line("markers", "tpu: needs a TPU; needs --run-tpu")


def pytest_collection_modifyitems(config, items):
    for marker, option in (("slow", "--run-slow"), ("tpu", "--run-tpu")):
        if config.getoption(option):
            continue
        skip = pytest.mark.skip(reason=f"needs {option}")
        for item in items:
            if marker in item.keywords:
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Each test starts from float32, a fixed seed and a clean Keras name scope."""
    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(0)
    yield
    keras.mixed_precision.set_global_policy("float32")
    keras.backend.clear_session()
