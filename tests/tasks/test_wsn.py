"""The WSN task: zoo models rebuilt for 1-channel cochleagrams with 794 outputs, the front end in the input pipeline,
one training step through the loop on fabricated records, and the gin files' recipe (spec ch5 11.2)."""

import functools
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import gin
from goaldriven import cli_config
from goaldriven.audio import wsn_data
from goaldriven.models import zoo_shaped
from goaldriven.tasks import loop, wsn
from tests import strategies
from tests.audio.standin_frontend import stft_frontend

N = 800  # samples per fabricated clip; the test front end gives 8 channels x 10 frames


def _records(path, train=16, test=6):
    rng = np.random.default_rng(0)
    clips = lambda count: [  # noqa: E731
        {"waveform": rng.uniform(-0.5, 0.5, N), "word": int(rng.integers(794))} for _ in range(count)
    ]
    wsn_data.write_shards(str(path), "train", clips(train), num_shards=2, num_samples=N)
    wsn_data.write_shards(str(path), "test", clips(test), num_shards=1, num_samples=N)
    return wsn_data.WSNData(str(path))


@pytest.mark.parametrize("name, shape", [("small_resnet8", (8, 10, 1)), ("resnet18_v1", (32, 40, 1)),
                                         ("alexnet", (40, 48, 1))])  # fmt: skip
def test_zoo_models_are_rebuilt_for_one_channel_cochleagrams_with_794_outputs(name, shape):
    model = zoo_shaped.build_model(name, input_shape=shape, num_classes=794)
    first_kernel = next(w for w in model.weights if len(w.shape) == 4)
    assert first_kernel.shape[2] == 1  # one input channel
    logits = model(tf.zeros((2, *shape)), training=False)["logits"]
    assert logits.shape == (2, 794)
    if name == "alexnet":  # fc6's fan-in follows the non-square input
        conv5 = model(tf.zeros((1, *shape)))["features"]["conv5"]
        assert conv5.shape[1] != conv5.shape[2] and model.get_layer("fc6").kernel.shape[0] == np.prod(conv5.shape[1:])


def test_build_model_keeps_the_learning_rule():
    model = zoo_shaped.build_model("small_resnet8", input_shape=(8, 10, 1), num_classes=11, learning_rule="fa")
    assert any("backward" in w.path or "feedback" in w.path for w in model.weights)


@pytest.mark.slow
def test_batches_are_cochleagrams_and_one_training_step_runs(tmp_path):
    data = _records(tmp_path / "data")
    task = wsn.WSNTask(
        model_fn=functools.partial(zoo_shaped.build_model, "small_resnet8", input_shape=(8, 10, 1), num_classes=794),
        dataset=data,
        frontend=stft_frontend,
        eval_batch_size=4,
    )
    assert task.input_spec is None and task.num_classes == 794 and task.input_shape() == (8, 10, 1)
    batch = next(iter(task.train_dataset(global_batch_size=4, input_context=None, start_step=0, seed=0)))
    assert batch["images"].shape == (4, 8, 10, 1) and "waveforms" not in batch
    result = loop.run(
        task=task, strategy=strategies.one_device(), workdir=str(tmp_path / "run"), train_steps=1,
        global_batch_size=4, optimizer=keras.optimizers.SGD, learning_rate=0.01, log=lambda line: None,
    )  # fmt: skip
    assert result["step"] == 1 and result["eval"]["examples"] == 6 and 0 <= result["eval"]["top1"] <= 1


def _parse(files, bindings):
    gin.clear_config()  # registering a configurable needs an unlocked config
    gin.external_configurable(stft_frontend, name="stft_frontend")
    cli_config.parse_gin_config(files, bindings, clear=True)


def test_wsn_gin_is_the_imagenet_recipe_of_chapter6(tmp_path):
    _records(tmp_path)
    try:
        _parse(
            ["tasks/wsn.gin", "rules/chapter6/sgdm.gin"],
            [f"DATA_DIR = '{tmp_path}'", "MODEL = 'small_resnet8'", "wsn.WSNTask.cochleagram_kwargs = None",
             "wsn.WSNTask.frontend = @stft_frontend", "INPUT_SHAPE = (8, 10, 1)"],
        )  # fmt: skip
        assert gin.query_parameter("TRAIN_STEPS/macro.value") is not None
        steps = gin.query_parameter("TRAIN_STEPS/macro.value").scoped_configurable_fn()
        assert steps == math.ceil(100 * 5_810_600 / 256)
        rate = gin.query_parameter("LEARNING_RATE/macro.value").scoped_configurable_fn()
        per_epoch = 5_810_600 / 256
        assert float(rate(int(10 * per_epoch))) == pytest.approx(0.125)  # after the 6-epoch warm-up
        assert float(rate(int(3 * per_epoch))) == pytest.approx(0.125 * 0.5, rel=1e-3)  # mid warm-up
        assert float(rate(int(45 * per_epoch))) == pytest.approx(0.0125)
        assert float(rate(int(85 * per_epoch))) == pytest.approx(0.000125)
        task = cli_config.configured_task()
        assert task.num_classes == 794 and task.build_model()(tf.zeros((1, 8, 10, 1)))["logits"].shape == (1, 794)
    finally:
        gin.clear_config()


def test_standin_experiment_builds_and_computes_a_loss(tmp_path):
    try:
        _parse(
            ["experiments/wsn_standin__small_resnet8.gin"],
            ["wsn.WSNTask.cochleagram_kwargs = None", "wsn.WSNTask.frontend = @stft_frontend",
             f"wsn_standin.WSNStandInData.cache_dir = '{tmp_path}'"],
        )  # fmt: skip
        task = cli_config.configured_task()
        model = task.build_model()
        optimizer = keras.optimizers.SGD(0.1)
        batch = task.example_batch(2)
        before = [w.numpy() for w in model.trainable_weights]
        with tf.GradientTape() as tape:
            loss, metrics = task.compute_loss(model, batch, training=True)
        optimizer.apply(tape.gradient(loss, model.trainable_weights), model.trainable_weights)  # one training step
        assert np.isfinite(float(loss)) and set(metrics) == {"top1", "top5"} and task.num_classes == 11
        assert batch["images"].shape == (2, 8, 10, 1)
        assert all(np.all(np.isfinite(w.numpy())) for w in model.trainable_weights)
        assert any(not np.array_equal(a, w.numpy()) for a, w in zip(before, model.trainable_weights))
    finally:
        gin.clear_config()
