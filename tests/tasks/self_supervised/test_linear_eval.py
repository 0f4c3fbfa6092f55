"""Linear evaluation: only the readout trains, the frozen network (BN statistics included) does not move, the probe
restores exactly the SSL run's weights and refuses a mismatched model, and the gin path reaches a top-1."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import gin
from goaldriven import cli_config
from goaldriven.tasks import digits, image_classification, loop
from goaldriven.tasks.self_supervised import digits_data, linear_eval, simclr
from tests import strategies
from tests.tasks.self_supervised.test_objectives import SIZE, TinyBackbone


def _backbone():
    model = TinyBackbone(name="tiny")
    model(keras.KerasTensor((None, SIZE, SIZE, 3)))
    return model


def _task(hidden=8):
    return simclr.SimCLRTask(backbone_fn=_backbone, feature="pool", dataset=digits_data.DigitsSSLData(image_size=SIZE),
                             hidden_dim=hidden, projection_dim=4)  # fmt: skip


def _train_ssl(workdir, steps=2):
    loop.run(task=_task(), strategy=strategies.one_device(), workdir=str(workdir), train_steps=steps,
             global_batch_size=4, steps_per_loop=steps, checkpoint_every=100, log=lambda _: None)  # fmt: skip


def _probe_task(checkpoint, hidden=8):
    model_fn = lambda: linear_eval.probe_model(ssl_task=_task(hidden), checkpoint=checkpoint, num_classes=10,  # noqa: E731
                                                log=lambda _: None)  # fmt: skip
    return digits.DigitsTask(model_fn=model_fn, dataset=digits.DigitsData(image_size=SIZE))


@pytest.fixture(scope="module")
def ssl_workdir(tmp_path_factory):
    """One 2-step SSL run shared by the tests below, which only read its checkpoint."""
    keras.utils.set_random_seed(0)
    workdir = tmp_path_factory.mktemp("ssl")
    _train_ssl(workdir)
    keras.backend.clear_session(free_memory=False)
    return workdir


def test_only_the_readout_trains_and_the_frozen_network_is_restored_exactly(ssl_workdir, tmp_path):
    reader = tf.train.load_checkpoint(str(ssl_workdir / "checkpoints"))
    probe_task = _probe_task(str(ssl_workdir))
    probe = probe_task.build_model()
    frozen = probe.frozen
    for i, variable in enumerate(frozen.variables):  # the SSL run's weights, BN statistics included
        saved = reader.get_tensor(f"model_variables/{i}/.ATTRIBUTES/VARIABLE_VALUE")
        np.testing.assert_array_equal(variable.numpy(), saved)
    assert [v.path for v in probe.trainable_variables] == [v.path for v in probe.readout.trainable_variables]
    before = [v.numpy() for v in frozen.variables]
    result = loop.run(task=probe_task, strategy=strategies.one_device(), workdir=str(tmp_path / "probe"),
                      train_steps=3, global_batch_size=8, learning_rate=0.1, optimizer=keras.optimizers.SGD,
                      steps_per_loop=3, checkpoint_every=100, log=lambda _: None)  # fmt: skip
    assert 0.0 < result["eval"]["top1"] <= 1.0
    restored = _probe_task(str(ssl_workdir)).build_model()
    tf.train.Checkpoint(model_variables=list(restored.variables)).restore(
        tf.train.latest_checkpoint(str(tmp_path / "probe" / "checkpoints"))
    ).expect_partial()
    for a, b in zip(before, restored.frozen.variables):
        np.testing.assert_array_equal(a, b.numpy())  # nothing of the frozen network moved (moving stats too)
    assert np.abs(restored.readout.kernel.numpy()).max() > 0  # the readout (initialised at 0) trained


def test_a_mismatched_model_is_refused_and_none_is_the_untrained_control(ssl_workdir):
    with pytest.raises(ValueError, match="does not match the model"):
        _probe_task(str(ssl_workdir), hidden=16).build_model()
    untrained = _probe_task(None).build_model()
    assert isinstance(untrained, linear_eval.LinearProbe)
    with pytest.raises(ValueError, match="num_classes"):
        linear_eval.LinearProbe(_backbone(), "pool", 1)


def test_one_command_from_an_ssl_run_to_top1(tmp_path):
    """The digits experiment trained for 2 steps, then tasks/linear_eval_digits.gin on its workdir through the same
    gin files the README gives."""
    smoke = ["TRAIN_STEPS = 2", "STEPS_PER_LOOP = 2", "KNN_EVERY = 0", "GLOBAL_BATCH_SIZE = 8"]
    cli_config.parse_gin_config(["experiments/digits_simclr__small_resnet8.gin"], smoke, clear=True)
    ssl_run = gin.get_configurable(loop.run)
    ssl_run(strategy=strategies.one_device(), workdir=str(tmp_path / "ssl"), log=lambda _: None)
    assert os.path.exists(tmp_path / "ssl" / "knn.json")
    cli_config.parse_gin_config(
        ["experiments/digits_simclr__small_resnet8.gin", "tasks/linear_eval_digits.gin"],
        [*smoke, f"SSL_WORKDIR = '{tmp_path / 'ssl'}'"],
        clear=True,
    )
    task = cli_config.configured_task()
    assert isinstance(task, image_classification.ImageClassificationTask)
    gin.get_configurable(loop.run)(strategy=strategies.one_device(), workdir=str(tmp_path / "probe"),
                                   log=lambda _: None)  # fmt: skip
    metrics = json.load(open(tmp_path / "probe" / "eval" / "step_2" / "eval_metrics.json"))
    assert metrics["examples"] == 450 and 0.0 < metrics["top1"] <= 1.0
    gin.clear_config()
