"""Test configuration: two logical CPU devices (so MirroredStrategy runs cross-replica code), seeds, markers.

Markers: `slow` (skipped unless --run-slow; CI runs the suite without them), `tpu` (skipped unless --run-tpu on a TPU
host) and `isolated` (run in a fresh process: memory-heavy tests, tests/isolation.py). `--memory-log=PATH` writes
per-test durations and resident memory.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gc  # pylint: disable=g-import-not-at-top
import itertools

import keras
import pytest
import tensorflow as tf
import threadpoolctl

import gin
from tests import isolation

# One BLAS thread per test process: the suite runs 2 processes on 2 cores, and multithreaded OpenBLAS on an
# oversubscribed machine is many times slower (an eigendecomposition of 1000 x 1000: 11 s instead of 0.4 s).
threadpoolctl.threadpool_limits(1)
_TESTS_RUN = itertools.count(1)
_COLLECT_EVERY = 20  # Full garbage collections (0.5-10 s each with TF loaded) every this many tests, not after each.

_CPUS = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(_CPUS[0], [tf.config.LogicalDeviceConfiguration()] * 2)


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False, help="run tests marked slow")
    parser.addoption("--run-tpu", action="store_true", default=False, help="run tests marked tpu")
    isolation.add_options(parser)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: slower tests (multi-process, full-size builds); need --run-slow")
    config.addinivalue_line("markers", "tpu: needs a TPU; needs --run-tpu")
    isolation.configure(config)
    if config.getoption("memory_log"):
        config.pluginmanager.register(isolation.MemoryLog(config.getoption("memory_log")), "memory_log")


def pytest_collection_modifyitems(config, items):
    for marker, option in (("slow", "--run-slow"), ("tpu", "--run-tpu")):
        if config.getoption(option):
            continue
        skip = pytest.mark.skip(reason=f"needs {option}")
        for item in items:
            if marker in item.keywords:
                item.add_marker(skip)
    isolation.isolate(items, run_slow=config.getoption("--run-slow"))


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Each test starts from float32, a fixed seed, a clean Keras name scope and an unlocked, empty gin config (a test
    that parses a config and fails before clearing it must not lock the next test on the same worker out)."""
    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(0)
    yield
    gin.clear_config()
    keras.mixed_precision.set_global_policy("float32")
    keras.backend.clear_session(free_memory=False)
    if next(_TESTS_RUN) % _COLLECT_EVERY == 0:
        gc.collect()
        isolation.release_free_heap()
