"""The SSL experiment files bind the recipes of spec ch3 A4 and ch5 6.4/11.2 (values read back from gin, not the
code's defaults)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import gin
from goaldriven import cli_config, optimizers
from goaldriven.alignment import layers as aligned_layers
from goaldriven.tasks import schedules


@pytest.fixture(autouse=True)
def _clear_gin():
    yield
    gin.clear_config()


def _parse(name, *bindings, smoke=False):
    files = [f"experiments/{name}.gin"] + (["testing/smoke.gin"] if smoke else [])
    cli_config.parse_gin_config(files, list(bindings), clear=True)


def _rate(step):
    rate = gin.query_parameter("loop.run.learning_rate").scoped_configurable_fn()
    return float(rate(step))


def test_chapter3_simclr_is_lars_at_4_8_for_batch_4096_with_10_warmup_epochs():
    _parse("simclr__resnet18_v1")
    assert gin.query_parameter("loop.run.optimizer").scoped_configurable_fn is not None
    optimizer = gin.query_parameter("loop.run.optimizer").scoped_configurable_fn(learning_rate=0.1)
    assert isinstance(optimizer, optimizers.LARS)
    assert (optimizer.weight_decay, optimizer.momentum, optimizer.eta) == (1e-6, 0.9, 0.001)
    steps_per_epoch = schedules.imagenet_steps_per_epoch(4096)
    warmup = round(10 * steps_per_epoch)
    assert _rate(warmup) == pytest.approx(4.8)
    assert _rate(0) == pytest.approx(4.8e-4)
    assert _rate(int(np.ceil(200 * steps_per_epoch))) == pytest.approx(0.0, abs=1e-9)
    task = cli_config.configured_task()
    assert (task.temperature, task.cross_replica, task.head_style) == (0.1, True, "chapter3")
    assert task.dataset.augmentation.jitter == (0.8, 0.8, 0.8, 0.2) and task.dataset.image_size == 64
    assert task.dataset.augmentation.augment_size == 224 and task.head_weight_decay == 0.0


def test_chapter3_recipes_of_moco_simsiam_ir_and_rotnet():
    _parse("moco_v2__resnet18_v1")
    task = cli_config.configured_task()
    assert (task.temperature, task.memory.queue_size, task.memory.momentum) == (0.2, 65536, 0.999)
    assert _rate(0) == pytest.approx(0.06) and task.head_weight_decay == 5e-4
    _parse("simsiam__resnet18_v1")
    assert _rate(0) == pytest.approx(0.1) and cli_config.configured_task().head_weight_decay == 1e-4
    _parse("instance_recognition__alexnet", "NUM_TRAIN_EXAMPLES = 10")
    task = cli_config.configured_task()
    assert (task.temperature, task.num_negatives, task.dataset.views_per_example) == (0.07, 4096, 1)
    per_epoch = schedules.imagenet_steps_per_epoch(256)
    assert _rate(0) == pytest.approx(0.003) and _rate(round(121 * per_epoch)) == pytest.approx(0.0003)
    _parse("rotnet__resnet18_v1")
    task = cli_config.configured_task()
    assert task.dataset.views_per_example == 4 and _rate(round(16 * schedules.imagenet_steps_per_epoch(192))) == (
        pytest.approx(0.001)
    )


def test_chapter6_simclr_alexnet_sgdm_recipe():
    _parse("simclr_ch6__alexnet__sgdm")
    task = cli_config.configured_task()
    assert (task.head_style, task.cross_replica, task.head_weight_decay) == ("chapter6", False, 1e-6)
    assert task.dataset.image_size == 224
    optimizer = gin.query_parameter("loop.run.optimizer").scoped_configurable_fn(learning_rate=0.1)
    assert isinstance(optimizer, keras.optimizers.SGD) and optimizer.nesterov and optimizer.momentum == 0.9
    per_epoch = schedules.imagenet_steps_per_epoch(256)
    assert _rate(round(7 * per_epoch)) == pytest.approx(0.0125) and _rate(round(31 * per_epoch)) == pytest.approx(
        0.00125
    )


def test_chapter6_simclr_under_information_alignment_aligns_backbone_and_head():
    _parse("simclr_ch6__resnet18_v1__ia", smoke=True)
    task = cli_config.configured_task()
    model = task.build_model()
    head_layers = aligned_layers.aligned_layers(model.heads["projection"])
    assert len(head_layers) == 2 and all(layer.rule.name == "information_alignment" for layer in head_layers)
    assert aligned_layers.aligned_layers(model.backbone)
    head = model.heads["projection"]
    assert head.denses[0].units == 512 and not head.denses[1].use_bias and head.norms[1] is not None
    hooks = gin.query_parameter("loop.run.hooks")
    assert len(hooks) == 1


def test_depth_prediction_config_counts_epochs_in_the_directory_and_trains_a_step(tmp_path):
    from goaldriven.tasks import train_step
    from tests.tasks.self_supervised.test_depth_data import _write

    _write(str(tmp_path), n=6)
    cli_config.parse_gin_config(
        ["tasks/depth_prediction.gin", "testing/smoke.gin"],
        [
            f"DEPTH_DIR = '{tmp_path}'",
            "CROP_SIZE = 40",
            "IMAGE_SIZE = 64",
            "EPOCHS = 2",
            "TRAIN_STEPS = @schedules.train_steps_for_epochs()",
        ],
        clear=True,
    )
    assert gin.query_parameter("TRAIN_STEPS/macro.value").scoped_configurable_fn() == 3  # 2 epochs of 6 at batch 4
    task = cli_config.configured_task()
    assert task.dataset.num_train_examples() == 6 and task.dataset.crop_size == 40
    model = task.build_model()
    train, _ = train_step.build_train_loop(task, model, keras.optimizers.SGD(1e-4), tf.distribute.get_strategy())
    data = task.train_dataset(global_batch_size=2, input_context=tf.distribute.InputContext(), start_step=0, seed=0)
    sums = train(iter(data), tf.constant(1))
    assert np.isfinite(float(sums["loss"])) and float(sums["depth_mse"]) > 0
