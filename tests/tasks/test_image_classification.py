"""ImageClassificationTask: loss and metrics against NumPy, training through loop.run, full-split evaluation."""

import io
import json
import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from keras import ops
from PIL import Image

from goaldriven.tasks import image_classification, image_datasets, loop
from tests import strategies

SIZES = {"train": 40, "test": 13}
COLOURS = np.array(
    [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 0, 255], [0, 255, 255], [255, 255, 255],
     [0, 0, 0], [128, 64, 0], [0, 128, 192]],
    np.uint8,
)  # fmt: skip


def _png(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _test_label(i):
    return i % 10 if i < 7 else (i + 3) % 10  # the pixel rule v % 10 is right for i < 7 only


def _fake_cifar(self, split, decoders=None, read_config=None, shuffle_files=False):
    """train: example i is a flat image of colour COLOURS[i % 10], label i % 10 (learnable);
    test: example i has pixel value i and label _test_label(i)."""
    del self, decoders, read_config, shuffle_files
    name, begin, end = re.fullmatch(r"(\w+)(?:\[(\d+):(\d+)\])?", split).groups()
    indices = range(int(begin or 0), int(end or SIZES[name]))
    if name == "train":
        images = [_png(np.broadcast_to(COLOURS[i % 10], (32, 32, 3)).copy()) for i in indices]
        labels = [i % 10 for i in indices]
    else:
        images = [_png(np.full((32, 32, 3), i, np.uint8)) for i in indices]
        labels = [_test_label(i) for i in indices]
    return tf.data.Dataset.from_tensor_slices({"image": images, "label": np.array(labels, np.int64)})


class TinyClassifier(keras.Model):
    """1x1 conv -> global average pool -> dense; 3 readout "steps" (the logits scaled by 1/3, 2/3, 1)."""

    def __init__(self, num_classes=10, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(16, 1, activation="relu", name="conv")
        self.pool = keras.layers.GlobalAveragePooling2D(name="pool")
        self.dense = keras.layers.Dense(num_classes, name="logits")

    def call(self, images, training=False):
        pooled = self.pool(self.conv(images))
        logits = ops.cast(self.dense(pooled), "float32")
        per_step = ops.stack([logits * (t + 1) / 3.0 for t in range(3)], axis=1)
        return {"logits": logits, "logits_per_step": per_step, "features": {"pool": pooled}}


def _tiny_model(num_classes=10):
    model = TinyClassifier(num_classes)
    model(tf.zeros([1, 32, 32, 3]))  # creates the weights
    return model


class PixelRule(keras.Model):
    """Predicts class round(255 * mean pixel) % 10 with logit 4 (all other logits 0): no weights."""

    def call(self, images, training=False):
        value = ops.cast(ops.round(ops.mean(images, axis=(1, 2, 3)) * 255.0), "int32")
        logits = 4.0 * ops.one_hot(value % 10, 10)
        return {"logits": logits, "features": {}}


def _task(model_fn=_tiny_model, **kwargs):
    data = image_datasets.Cifar10Data(data_dir="/nonexistent", **kwargs.pop("data_kwargs", {}))
    return image_classification.Cifar10Task(model_fn=model_fn, dataset=data, **kwargs)


class FixedLogits(keras.Model):
    def __init__(self, logits, per_step=None):
        super().__init__()
        self.fixed, self.per_step = logits, per_step

    def call(self, images, training=False):
        out = {"logits": tf.constant(self.fixed), "features": {}}
        if self.per_step is not None:
            out["logits_per_step"] = tf.constant(self.per_step)
        return out


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_loss_and_topk_against_numpy(smoothing):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 10)).astype(np.float32)
    logits[5] = 0.0  # all tied: top-1 right only for class 0 (argmax rule), top-5 for classes 0..4
    labels = np.array([3, 7, 0, 9, 1, 4], np.int32)
    logits[0, 3] = logits[0].max() + 1  # certainly top-1
    task = _task(label_smoothing=smoothing)
    loss, metrics = task.compute_loss(FixedLogits(logits), {"images": tf.zeros([6, 2, 2, 3]), "labels": labels},
                                      training=False)  # fmt: skip
    log_p = _log_softmax(logits.astype(np.float64))
    targets = (1 - smoothing) * np.eye(10)[labels] + smoothing / 10
    np.testing.assert_allclose(float(loss), -(targets * log_p).sum(-1).mean(), rtol=1e-5)
    order = np.argsort(-logits, axis=-1, kind="stable")  # ties in class order, like argmax
    rank = np.argmax(order == labels[:, None], axis=-1)
    np.testing.assert_allclose(float(metrics["top1"]), np.mean(rank < 1))
    np.testing.assert_allclose(float(metrics["top5"]), np.mean(rank < 5))
    assert rank[5] == 4 and rank[0] == 0


def test_all_steps_loss_is_the_mean_over_steps():
    rng = np.random.default_rng(1)
    per_step = rng.normal(size=(4, 3, 10)).astype(np.float32)
    labels = np.array([1, 2, 3, 4], np.int32)
    batch = {"images": tf.zeros([4, 2, 2, 3]), "labels": labels}
    task = _task(loss_over="all_steps")
    loss, _ = task.compute_loss(FixedLogits(per_step[:, -1], per_step), batch, training=False)
    log_p = _log_softmax(per_step.astype(np.float64))  # (b, t, k)
    expected = -np.take_along_axis(log_p, labels[:, None, None].repeat(3, 1), -1).mean()
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="logits_per_step"):
        task.compute_loss(FixedLogits(per_step[:, -1]), batch, training=False)
    with pytest.raises(ValueError, match="num_classes"):
        _task().compute_loss(FixedLogits(per_step[:, -1, :7]), batch, training=False)


def test_evaluate_counts_every_example_once(tmp_path):
    # 13 test examples, global batch 4 over 2 replicas: the last batch is padded. The pixel rule is right for
    # examples 0..6 only, so top-1 is 7/13 exactly; a padded example (label 0, pixels 0) counted would add a hit.
    task = _task(model_fn=PixelRule, data_kwargs={"normalized": False}, eval_batch_size=4)
    with tfds.testing.mock_data(as_dataset_fn=_fake_cifar):
        metrics = task.evaluate(PixelRule(), strategy=strategies.mirrored(), output_dir=str(tmp_path), step=3,
                                log=lambda _: None)  # fmt: skip
    assert metrics["examples"] == 13
    assert metrics["top1"] == pytest.approx(7 / 13)
    logits = 4.0 * np.eye(10)[np.arange(13) % 10]
    labels = np.array([_test_label(i) for i in range(13)])
    rank = np.argmax(np.argsort(-logits, axis=-1, kind="stable") == labels[:, None], axis=-1)
    assert metrics["top5"] == pytest.approx(np.mean(rank < 5))  # 12/13: tied zeros rank in class order
    expected_loss = -np.mean([_log_softmax(logits[i])[_test_label(i)] for i in range(13)])
    assert metrics["eval_loss"] == pytest.approx(expected_loss, rel=1e-5)
    with open(tmp_path / "eval_metrics.json") as f:
        assert json.load(f)["step"] == 3


def test_training_halves_the_loss_under_mirrored_strategy(tmp_path):
    with tfds.testing.mock_data(as_dataset_fn=_fake_cifar):
        result = loop.run(
            task=_task(eval_batch_size=4),
            strategy=strategies.mirrored(),
            workdir=str(tmp_path),
            train_steps=60,
            global_batch_size=8,
            optimizer=keras.optimizers.Adam,
            learning_rate=0.02,
            steps_per_loop=20,
            checkpoint_every=60,
            log=lambda _: None,
        )
    with open(os.path.join(tmp_path, "metrics.json")) as f:
        losses = [entry["loss"] for entry in json.load(f)["train"]]
    assert losses[-1] < 0.5 * losses[0], losses
    assert result["eval"]["examples"] == 13 and set(result["eval"]) == {"top1", "top5", "eval_loss", "examples"}


@pytest.mark.parametrize("loss_over", ["decoded", "all_steps"])
def test_one_xla_step_in_mixed_bfloat16(tmp_path, loss_over):
    with tfds.testing.mock_data(as_dataset_fn=_fake_cifar):
        result = loop.run(
            task=_task(loss_over=loss_over),
            strategy=strategies.one_device(),
            workdir=str(tmp_path),
            train_steps=1,
            global_batch_size=2,
            steps_per_loop=1,
            precision="mixed_bfloat16",
            jit_compile=True,
            evaluate_at_end=False,
            log=lambda _: None,
        )
    assert np.isfinite(result["train"]["loss"]) and 0.0 <= result["train"]["top1"] <= 1.0


def test_constructor_validation():
    with pytest.raises(ValueError, match="loss_over"):
        _task(loss_over="last")
    with pytest.raises(ValueError, match="dataset has 10 classes"):
        image_classification.ImageClassificationTask(
            model_fn=_tiny_model, dataset=image_datasets.Cifar10Data(), num_classes=1000
        )
    with pytest.raises(TypeError, match="train_dataset"):
        image_classification.ImageClassificationTask(model_fn=_tiny_model, dataset=object())
    with pytest.raises(ValueError, match="built keras.Model"):
        _task(model_fn=lambda: TinyClassifier()).build_model()
    assert image_classification.ImageNetTask(model_fn=_tiny_model).metric_names == ("top1", "top5")
    assert _task().num_classes == 10
