"""The thesis Chapter 6 CIFAR-10 recipe: Keras-standard shift + flip against scipy.ndimage (the engine of Keras'
ImageDataGenerator), the constant schedule, and the per-rule rates, L2 and step counts of the experiment files."""

import math

import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

import gin
from goaldriven import cli_config
from goaldriven.tasks import image_preprocessing, schedules

H, W = 12, 20


def _ramps(batch):
    """Channel 0 = column index x, channel 1 = row index y, channel 2 = random."""
    yy, xx = np.meshgrid(np.arange(H, dtype=np.float32), np.arange(W, dtype=np.float32), indexing="ij")
    noise = np.random.default_rng(0).uniform(size=(batch, H, W)).astype(np.float32)
    return np.stack([np.broadcast_to(xx, (batch, H, W)), np.broadcast_to(yy, (batch, H, W)), noise], axis=-1)


def test_shift_flip_matches_scipy_with_the_recovered_shifts():
    images = _ramps(64)
    out = image_preprocessing.random_shift_flip(images, tf.constant([3, 4], tf.int64), shift_fraction=0.1).numpy()
    flipped = out[:, H // 2, 0, 0] > out[:, H // 2, -1, 0]  # the x ramp decreases after a flip
    assert 16 < flipped.sum() < 48
    unflipped = np.where(flipped[:, None, None, None], out[:, :, ::-1], out)
    # Linear interpolation is exact on a ramp: away from the clamped border, x' = x + dx and y' = y + dy.
    dx = unflipped[:, H // 2, W // 2, 0] - W // 2
    dy = unflipped[:, H // 2, W // 2, 1] - H // 2
    assert np.all(np.abs(dx) <= 0.1 * W + 1e-4) and np.all(np.abs(dy) <= 0.1 * H + 1e-4)
    assert np.std(dx) > 0.3 and np.std(dy) > 0.2  # continuous, random shifts
    for i in range(len(images)):
        # Keras: scipy.ndimage affine transform, order 1, fill_mode "nearest"; output (y, x) reads (y + dy, x + dx).
        expected = ndimage.shift(images[i, :, :, 2], (-dy[i], -dx[i]), order=1, mode="nearest")
        np.testing.assert_allclose(unflipped[i, :, :, 2], expected, atol=2e-4)


def test_shift_flip_is_stateless_and_zero_shift_is_flip_only():
    images = _ramps(8)
    seed = tf.constant([1, 2], tf.int64)
    a = image_preprocessing.random_shift_flip(images, seed)
    np.testing.assert_array_equal(a, image_preprocessing.random_shift_flip(images, seed))
    assert not np.allclose(a, image_preprocessing.random_shift_flip(images, tf.constant([1, 3], tf.int64)))
    still = image_preprocessing.random_shift_flip(images, seed, shift_fraction=0.0).numpy()
    for image, result in zip(images, still):
        assert np.allclose(result, image) or np.allclose(result, image[:, ::-1])
    with pytest.raises(ValueError, match="shift_fraction"):
        image_preprocessing.random_shift_flip(images, seed, shift_fraction=1.5)


def test_cifar_augment_choices():
    image = tf.constant(np.random.default_rng(1).integers(0, 256, (32, 32, 3)), tf.uint8)
    seed = tf.constant([0, 1], tf.int64)
    out = image_preprocessing.cifar_augment(image, seed, augmentation="shift_flip", normalized=False)
    assert out.shape == (32, 32, 3) and 0.0 <= float(tf.reduce_min(out)) and float(tf.reduce_max(out)) <= 1.0
    with pytest.raises(ValueError, match="augmentation must be"):
        image_preprocessing.cifar_augment(image, seed, augmentation="mixup")


def test_constant_schedule():
    rate = schedules.constant_schedule(0.01, global_batch_size=128, reference_batch_size=256)
    np.testing.assert_allclose([float(rate(s)) for s in (0, 1, 10**6)], 0.005)


def _resolve(value):
    return value.scoped_configurable_fn() if isinstance(value, gin.config.ConfigurableReference) else value


# rule -> (rate per 256 images, rescaled with the batch, optimizer, nesterov, weight decay)
RECIPE = {
    "sgdm": (0.01, True, "SGD", True, 1e-5),
    "ia": (0.01, True, "SGD", True, 1e-12),
    "adam": (0.001, False, "Adam", None, 1e-5),
    "fa": (0.001, False, "Adam", None, 1e-5),
}


@pytest.mark.parametrize("task", ["cifar10_ch6", "cifar_synthetic"])
@pytest.mark.parametrize("rule", list(RECIPE))
def test_experiment_recipe(task, rule):
    base, rescaled, optimizer_name, nesterov, decay = RECIPE[rule]
    try:
        cli_config.parse_gin_config(
            [f"experiments/{task}__knet4_lrn__{rule}.gin"], ["GLOBAL_BATCH_SIZE = 128"], clear=True
        )
        rate = _resolve(gin.query_parameter("loop.run.learning_rate"))
        expected = base * (128 / 256 if rescaled else 1.0)
        np.testing.assert_allclose([float(rate(s)) for s in (0, 5000, 10**6)], expected, rtol=1e-6)  # constant
        optimizer = gin.query_parameter("loop.run.optimizer").scoped_configurable_fn(learning_rate=rate)
        assert type(optimizer).__name__ == optimizer_name
        if nesterov is not None:
            assert optimizer.nesterov and optimizer.momentum == 0.9
        task_object = cli_config.configured_task()
        model = task_object.build_model()
        assert model.name == "knet4_lrn" and model.weight_decay == decay
        examples = 50_000 if task == "cifar10_ch6" else 5_000
        steps = _resolve(gin.query_parameter("TRAIN_STEPS/macro.value"))
        if rule == "ia":  # (R, J) pairs: de = 1 epoch of R alone, then 100 epochs of pairs
            assert steps == 2 * math.ceil(100.5 * examples / 128)
            # The alignment optimizer's rate is constant too (no drops at epochs 31/61/81).
            alignment = _resolve(gin.query_parameter("training.AlignmentTraining.learning_rate"))
            np.testing.assert_allclose([float(alignment(s)) for s in (0, 10**6)], 0.0098, rtol=1e-6)
        else:
            assert steps == math.ceil(100 * examples / 128)
        if task == "cifar10_ch6":
            assert task_object.dataset.augmentation == "shift_flip" and task_object.dataset.shift_fraction == 0.1
        else:
            assert task_object.dataset.augmentation == "shift_flip" and task_object.dataset.num_train == examples
    finally:
        gin.clear_config()
