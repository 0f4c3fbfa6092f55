"""Every experiment config parses with the smoke settings, builds its task and model, and can take a train step."""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf

import gin
from goaldriven import cli_config, config_paths

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENTS = sorted(glob.glob(os.path.join(REPO, "gin", "experiments", "*.gin")))


def test_there_are_experiments_and_no_init_in_gin_folder():
    assert len(EXPERIMENTS) >= 10
    assert not os.path.exists(os.path.join(REPO, "gin", "__init__.py"))  # would shadow gin-config


def _smoke_batch(task):
    """One tiny training batch of the experiment's task."""
    if hasattr(task, "trajectories"):  # path integration
        return task.make_batch(task.trajectories, 4)(tf.constant(0, tf.int64), tf.constant([0, 1], tf.int64))
    images = tf.random.stateless_normal([2, 32, 32, 3], [0, 1])
    return {"images": images, "labels": tf.constant([1, 3])}


def _tiny_bindings(path):
    """ConvRNNs and BaseNets at 1/16 width (the feedforward ResNets/AlexNet have no width option; built at 32 px)."""
    text = open(path).read()
    if "models/zoo.gin" in text and not any(f"MODEL = '{m}" in text for m in ("alexnet", "resnet", "small_resnet")):
        return [os.path.join(REPO, "gin", "models", "zoo_tiny.gin")]
    return []


def _marked(path):
    """The deep ResNets (50/101/152, 8-60 s each on 2 cores) are slow tests; their ResNet-18 rows stay in the fast suite."""
    deep = any(f"resnet{depth}" in os.path.basename(path) for depth in (50, 101, 152))
    return pytest.param(path, marks=pytest.mark.slow) if deep else path


@pytest.mark.parametrize("path", [_marked(p) for p in EXPERIMENTS], ids=os.path.basename)
def test_experiment_parses_and_builds(path):
    try:
        cli_config.parse_gin_config([path, *_tiny_bindings(path), "testing/smoke.gin"], clear=True)
        header = open(path).read().split("\n")[0]
        assert header.startswith("#"), "experiment files start with a header comment"
        task = cli_config.configured_task()
        model = task.build_model()
        loss, metrics = task.compute_loss(model, _smoke_batch(task), training=True)
        assert np.isfinite(float(loss)) and set(metrics) == set(task.metric_names)
        assert gin.query_parameter("TRAIN_STEPS/macro.value") == 4
    finally:
        gin.clear_config()


def test_every_experiment_is_listed():
    names = config_paths.list_experiments()
    assert {os.path.join("experiments", os.path.basename(p)) for p in EXPERIMENTS} <= set(names)
