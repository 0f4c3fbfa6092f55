"""Every experiment config parses with the smoke settings, builds its task and model, and can take a train step."""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf

import gin
from goaldriven import config_paths

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENTS = sorted(glob.glob(os.path.join(REPO, "gin", "experiments", "*.gin")))


def test_there_are_experiments_and_no_init_in_gin_folder():
    assert len(EXPERIMENTS) >= 10
    assert not os.path.exists(os.path.join(REPO, "gin", "__init__.py"))  # would shadow gin-config


@pytest.mark.parametrize("path", EXPERIMENTS, ids=os.path.basename)
def test_experiment_parses_and_builds(path):
    gin.clear_config()
    for root in config_paths.gin_roots():
        gin.add_config_file_search_path(str(root))
    try:
        gin.parse_config_files_and_bindings([path, os.path.join(REPO, "gin", "testing", "smoke.gin")], [])
        header = open(path).read().split("\n")[0]
        assert header.startswith("#"), "experiment files start with a header comment"
        task = gin.query_parameter("loop.run.task").scoped_configurable_fn()
        model = task.build_model()
        batch = task.make_batch(task.trajectories, 4)(tf.constant(0, tf.int64), tf.constant([0, 1], tf.int64))
        loss, metrics = task.compute_loss(model, batch, training=True)
        assert np.isfinite(float(loss)) and set(metrics) == set(task.metric_names)
        assert gin.query_parameter("TRAIN_STEPS/macro.value") == 4
    finally:
        gin.clear_config()


def test_every_experiment_is_listed():
    names = config_paths.list_experiments()
    assert {os.path.join("experiments", os.path.basename(p)) for p in EXPERIMENTS} <= set(names)
