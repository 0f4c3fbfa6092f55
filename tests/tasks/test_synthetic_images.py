"""Synthetic CIFAR-like images: determinism, balance, class cues, the data-class contract, exact resume."""

import numpy as np
import pytest
import tensorflow as tf

from goaldriven.tasks import image_classification, synthetic_images

SMALL = dict(num_train=40, num_test=23)


def _batches(dataset, count):
    return [{k: v.numpy() for k, v in batch.items()} for batch in dataset.take(count)]


def test_generation_is_deterministic_balanced_and_seed_dependent():
    data = synthetic_images.SyntheticImageData(**SMALL)
    images, labels = data.arrays("train")
    assert images.shape == (40, 32, 32, 3) and images.dtype == np.float32 and labels.dtype == np.int32
    assert 0.0 <= images.min() and images.max() <= 1.0
    np.testing.assert_array_equal(np.bincount(labels), [4] * 10)
    again = synthetic_images.generate(40, data_seed=0, split="train", hue_jitter=0.12, noise=0.1)
    np.testing.assert_array_equal(again[0], images)
    other = synthetic_images.SyntheticImageData(**SMALL, data_seed=1).arrays("train")[0]
    test = data.arrays("test")[0]
    assert not np.allclose(other, images) and not np.allclose(test[:23], images[:23])


def test_class_cues_are_present_without_noise():
    """Noise-free, no distractor-free guarantee: the class hue dominates the object, so the mean colour of the most
    saturated pixels follows the hue wheel (red 0, yellow-green 0.2-0.3, ... purple 0.8-0.9)."""
    images, labels = synthetic_images.generate(400, data_seed=3, split="train", hue_jitter=0.0, noise=0.0)
    saturation = images.max(-1) - images.min(-1)  # (n, s, s): 0 on the grey background
    hues = []
    for image, sat in zip(images, saturation):
        pixels = image[sat > 0.5 * sat.max()]
        r, g, b = pixels.mean(0)
        hues.append(np.arctan2(np.sqrt(3) * (g - b), 2 * r - g - b) / (2 * np.pi) % 1.0)
    hues = np.array(hues)
    for c in range(10):  # circular distance to the class hue, median over the class
        distance = np.abs((hues[labels == c] - c / 10 + 0.5) % 1.0 - 0.5)
        assert np.median(distance) < 0.06, c


def test_stripe_orientation_separates_the_two_halves_of_the_classes():
    images, labels = synthetic_images.generate(400, data_seed=4, split="train", hue_jitter=0.0, noise=0.0)
    grey = images.mean(-1)
    dy = np.abs(np.diff(grey, axis=1)).mean((1, 2))  # horizontal stripes vary along y
    dx = np.abs(np.diff(grey, axis=2)).mean((1, 2))
    horizontal = labels < 5
    assert np.mean((dy > dx)[horizontal]) > 0.6 and np.mean((dx > dy)[~horizontal]) > 0.6


def test_train_stream_is_a_function_of_seed_and_step():
    data = synthetic_images.SyntheticImageData(**SMALL)
    kwargs = dict(global_batch_size=8, input_context=None, seed=5)
    full = _batches(data.train_dataset(start_step=0, **kwargs), 7)
    resumed = _batches(data.train_dataset(start_step=4, **kwargs), 3)
    for a, b in zip(full[4:], resumed):
        np.testing.assert_array_equal(a["images"], b["images"])
        np.testing.assert_array_equal(a["labels"], b["labels"])
    assert full[0]["images"].shape == (8, 32, 32, 3) and full[0]["images"].dtype == np.float32
    # One epoch (5 batches of 8) visits every training example once.
    _, labels = data.arrays("train")
    assert sorted(np.concatenate([b["labels"] for b in full[:5]])) == sorted(labels)
    other = _batches(data.train_dataset(start_step=0, global_batch_size=8, input_context=None, seed=6), 1)
    assert not np.allclose(other[0]["images"], full[0]["images"])


def test_augmentation_none_gives_the_normalised_stored_images():
    data = synthetic_images.SyntheticImageData(**SMALL, augmentation="none")
    batch = _batches(data.train_dataset(global_batch_size=40, input_context=None, start_step=0, seed=0), 1)[0]
    images, labels = data.arrays("train")
    raw = batch["images"] * 0.25 + 0.5
    distance = np.abs(images[None] - raw[:, None]).max((2, 3, 4))  # (batch, stored)
    assert np.all(distance.min(1) < 1e-5)  # every batch image is a stored image, unaugmented
    np.testing.assert_array_equal(labels[distance.argmin(1)], batch["labels"])
    assert sorted(distance.argmin(1)) == list(range(40))


def test_eval_pass_covers_every_test_example_once_with_weights():
    data = synthetic_images.SyntheticImageData(**SMALL)
    batches = _batches(data.eval_dataset(global_batch_size=10, input_context=None), 100)
    assert len(batches) == 3 and data.num_eval_examples() == 23
    weight = np.concatenate([b["weight"] for b in batches])
    np.testing.assert_array_equal(weight, [1.0] * 23 + [0.0] * 7)
    images, labels = data.arrays("test")
    np.testing.assert_allclose(np.concatenate([b["images"] for b in batches])[:23], (images - 0.5) / 0.25, atol=1e-6)
    np.testing.assert_array_equal(np.concatenate([b["labels"] for b in batches])[:23], labels)


def test_task_contract_and_invalid_arguments():
    model_fn = lambda: None  # noqa: E731
    task = synthetic_images.SyntheticImagesTask(model_fn=model_fn)
    assert isinstance(task, image_classification.ImageClassificationTask)
    assert task.name == "cifar_synthetic" and task.num_classes == 10 and task.input_spec.image_size == 32
    with pytest.raises(ValueError, match="augmentation"):
        synthetic_images.SyntheticImageData(augmentation="crop")
    with pytest.raises(ValueError, match="num_train"):
        synthetic_images.SyntheticImageData(num_train=0)
    with pytest.raises(ValueError, match="split"):
        synthetic_images.SyntheticImageData(**SMALL).arrays("validation")
    with pytest.raises(ValueError, match="global_batch_size"):
        synthetic_images.SyntheticImageData(**SMALL).train_dataset(
            global_batch_size=3, input_context=tf.distribute.InputContext(num_replicas_in_sync=2), start_step=0, seed=0
        )
