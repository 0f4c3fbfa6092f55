"""Every experiment config parses with the smoke settings, builds its task and model, and can take a train step."""

import glob
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import gin
from goaldriven import cli_config, config_paths
from goaldriven.tasks import train_step
from goaldriven.tasks.self_supervised import base as ssl_base

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENTS = sorted(glob.glob(os.path.join(REPO, "gin", "experiments", "*.gin")))


def test_there_are_experiments_and_no_init_in_gin_folder():
    assert len(EXPERIMENTS) >= 10
    assert not os.path.exists(os.path.join(REPO, "gin", "__init__.py"))  # would shadow gin-config


def _smoke_batch(task):
    """One tiny training batch of the experiment's task."""
    if hasattr(task, "example_batch"):  # tasks whose inputs are not square RGB images (WSN cochleagrams)
        return task.example_batch(2)
    spec = getattr(task, "input_spec", None)  # None: no task (a fabricated dataset's batch)
    size = spec.image_size if spec is not None else 32
    if isinstance(task, ssl_base.SelfSupervisedTask):
        views = task.dataset.views_per_example
        return {
            "views": tf.random.stateless_normal([2, views, size, size, 3], [0, 1]),
            "labels": tf.constant([1, 3]),
            "index": tf.constant([0, 5], tf.int64),
        }
    if hasattr(task, "trajectories"):  # path integration
        return task.make_batch(task.trajectories, 4)(tf.constant(0, tf.int64), tf.constant([0, 1], tf.int64))
    images = tf.random.stateless_normal([2, size, size, 3], [0, 1])
    if hasattr(getattr(task, "dataset", None), "depth_scale"):  # depth prediction (tasks/self_supervised/depth_data.py)
        return {"images": images, "depth": tf.random.stateless_uniform([2, size, size, 1], [0, 2])}
    return {"images": images, "labels": tf.constant([1, 3])}


def _tiny_bindings(path):
    """ConvRNNs and BaseNets at 1/16 width (the feedforward ResNets/AlexNet/KNets have no width option; built at 32 px)."""
    text = open(path).read()
    if "models/zoo.gin" in text and not any(
        f"MODEL = '{m}" in text for m in ("alexnet", "resnet", "small_resnet", "knet", "streamnet", "vgg")
    ):
        return [os.path.join(REPO, "gin", "models", "zoo_tiny.gin")]
    return []


FAST_CHAPTER6 = (
    "simclr_ch6__resnet18_v1__ia.gin",
    "simclr_ch6__alexnet__sgdm.gin",
    "simclr_ch6__resnet18_v2__adam.gin",
    "cifar10_ch6__knet4_lrn__ia.gin",
    "cifar_synthetic__knet5__fa.gin",
)
CHAPTER6_GRIDS = ("simclr_ch6__", "cifar10_ch6__", "cifar_synthetic__")
# The Chapter 3 files (one per Table 3.3 row) are built by tests/test_configs_mouse.py; two stay here.
MOUSE_MODELS = ("__streamnet_", "__alexnet_bn.gin", "__alexnet_tv.gin", "__vgg16.gin", "__resnet18_tv.gin")
FAST_MOUSE = ("imagenet64__streamnet_dual.gin", "instance_recognition__resnet18_tv.gin")


def _marked(path):
    """The deep ResNets (50/101/152, 8-60 s each on 2 cores) are slow tests; their ResNet-18 rows stay in the fast suite.
    Of each Chapter 6 grid of files (one recipe, 4 models x 4 rules) two stay in the fast suite."""
    name = os.path.basename(path)
    deep = any(f"resnet{depth}" in name for depth in (50, 101, 152))
    chapter6 = name.startswith(CHAPTER6_GRIDS) and name not in FAST_CHAPTER6
    mouse = any(m in name for m in MOUSE_MODELS) and name not in FAST_MOUSE
    return pytest.param(path, marks=pytest.mark.slow) if deep or chapter6 or mouse else path


@pytest.mark.parametrize("path", [_marked(p) for p in EXPERIMENTS], ids=os.path.basename)
def test_experiment_parses_and_builds(path):
    try:
        # The AlexNet-BN encoder plan needs 64 px (its third pool leaves nothing of a 32 px image).
        name = os.path.basename(path)
        bindings = ["IMAGE_SIZE = 64"] if "sparse_autoencoder" in name or "alexnet_" in name else []
        bindings += ["DEPTH_DIR = '/nonexistent'"] if name.startswith("depth_prediction") else []
        cli_config.parse_gin_config([path, *_tiny_bindings(path), "testing/smoke.gin"], bindings, clear=True)
        header = open(path).read().split("\n")[0]
        assert header.startswith("#"), "experiment files start with a header comment"
        task = cli_config.configured_task()
        model = task.build_model()
        # Hooks the task's loss reads (a MoCo key encoder, a memory bank) are built as the loop builds them.
        train_step.prepare(task, model, keras.optimizers.SGD(0.1), tf.distribute.get_strategy(), task.hooks(),
                           workdir="", seed=0, train_steps=0)  # fmt: skip
        loss, metrics = task.compute_loss(model, _smoke_batch(task), training=True)
        assert np.isfinite(float(loss)) and set(metrics) == set(task.metric_names)
        assert gin.query_parameter("TRAIN_STEPS/macro.value") == 4
    finally:
        gin.clear_config()


def test_every_experiment_is_listed():
    names = config_paths.list_experiments()
    assert {os.path.join("experiments", os.path.basename(p)) for p in EXPERIMENTS} <= set(names)


ONE_EXPERIMENT_PER_TASK = (
    "path_integration__quick.gin",
    "imagenet__resnet18_v1.gin",
    "cifar10__rgc_shallow.gin",
    "digits__small_resnet8.gin",
)


@pytest.mark.parametrize("experiment", ONE_EXPERIMENT_PER_TASK)
def test_zero_train_steps_builds_every_tasks_schedule_and_optimizer(experiment):
    """TRAIN_STEPS = 0 (the untrained control) must configure every task's learning rate and optimizer."""
    try:
        cli_config.parse_gin_config([f"experiments/{experiment}", "testing/smoke.gin"], ["TRAIN_STEPS = 0"], clear=True)
        rate = gin.query_parameter("loop.run.learning_rate")
        rate = rate.scoped_configurable_fn() if isinstance(rate, gin.config.ConfigurableReference) else rate
        optimizer = gin.query_parameter("loop.run.optimizer").scoped_configurable_fn(learning_rate=rate)
        assert np.isfinite(float(optimizer.learning_rate))
    finally:
        gin.clear_config()


def test_digits_untrained_control_trains_zero_steps_and_evaluates(tmp_path):
    from goaldriven.tasks import loop  # pylint: disable=g-import-not-at-top
    from tests import strategies  # pylint: disable=g-import-not-at-top

    try:
        cli_config.parse_gin_config(
            ["experiments/digits__small_resnet8.gin"], ["TRAIN_STEPS = 0", "IMAGE_SIZE = 8"], clear=True
        )
        result = gin.get_configurable(loop.run)(
            strategy=strategies.one_device(), workdir=str(tmp_path), log=lambda line: None
        )
    finally:
        gin.clear_config()
    assert result["status"] == "finished" and result["step"] == 0
    assert 0.0 <= result["eval"]["top1"] <= 1.0 and result["eval"]["examples"] > 400
