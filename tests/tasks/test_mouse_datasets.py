"""The 64 px supervised pipelines of thesis Chapter 3 (goaldriven/tasks/mouse_datasets.py): augmentation at 224 then
resize to 64 (ImageNet), pad-crop-flip at 32 then resize to 64 (CIFAR-10), exact evaluation transforms."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from goaldriven.tasks import image_preprocessing, mouse_datasets
from goaldriven.tasks.self_supervised import augment

CONTEXT = tf.distribute.InputContext()


def _image(h=90, w=120):
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return tf.constant(np.stack([rows * 2, cols * 2, (rows + cols) % 256], -1).astype(np.uint8))


def test_imagenet_train_view_is_the_supervised_recipe_at_224_then_64():
    data = mouse_datasets.ImageNet64Data(augment_size=224, image_size=64)
    image, seed = _image(), tf.constant([3, 4], tf.int64)
    view = data.augmentation.view(image, seed)
    assert view.shape == (64, 64, 3)
    # The same crop and flip at 224 px, then the antialiased resize to 64 (not a crop straight to 64).
    at_224 = augment.preset("supervised", output_size=224).view(image, seed)
    unnormalised = at_224 * np.array(image_preprocessing.IMAGENET_STD) + np.array(image_preprocessing.IMAGENET_MEAN)
    expected = image_preprocessing.normalize(tf.clip_by_value(augment.resize(unnormalised, 64), 0.0, 1.0))
    np.testing.assert_allclose(view, expected, atol=1e-5)
    assert data.augmentation.crop_scale == (0.08, 1.0) and data.augmentation.jitter_prob == 0.0


def test_imagenet_batches_from_mock_data_are_64_px_and_eval_is_resize_crop_resize():
    data = mouse_datasets.ImageNet64Data(data_dir="/nonexistent", num_chunks=1, shuffle_window=None)
    with tfds.testing.mock_data(num_examples=6):
        train = next(iter(data.train_dataset(global_batch_size=4, input_context=CONTEXT, start_step=0, seed=0)))
        again = next(iter(data.train_dataset(global_batch_size=4, input_context=CONTEXT, start_step=0, seed=0)))
        evaluation = list(data.eval_dataset(global_batch_size=4, input_context=CONTEXT))
    assert train["images"].shape == (4, 64, 64, 3) and train["labels"].dtype == tf.int32
    np.testing.assert_array_equal(train["images"], again["images"])  # a pure function of (seed, step)
    assert sum(float(tf.reduce_sum(b["weight"])) for b in evaluation) == 6  # every example once, padded to 8
    assert all(b["images"].shape == (4, 64, 64, 3) for b in evaluation)


def test_imagenet_eval_view_is_torchvision_resize_256_crop_224_resize_64():
    data = mouse_datasets.ImageNet64Data()
    image = _image(300, 400)
    got = data._eval_fn()(image)  # pylint: disable=protected-access
    expected = augment.evaluation_view(image, resize_size=256, crop_size=224, output_size=64)
    np.testing.assert_array_equal(got, expected)
    with pytest.raises(ValueError, match="eval_crop_size"):
        mouse_datasets.ImageNet64Data(eval_crop_size=300)
    with pytest.raises(ValueError, match="image_size must be a positive int"):
        mouse_datasets.ImageNet64Data(image_size=0)


def test_cifar_train_view_crops_and_flips_at_32_then_upsamples_to_64():
    image, seed = _image(32, 32), tf.constant([1, 2], tf.int64)
    view = mouse_datasets.cifar_train_view(image, seed, image_size=64)
    at_32 = image_preprocessing.pad_crop_flip(image, seed, padding=4, normalized=False)
    expected = image_preprocessing.normalize(tf.clip_by_value(augment.resize(at_32, 64), 0.0, 1.0))
    np.testing.assert_allclose(view, expected, atol=1e-6)
    assert view.shape == (64, 64, 3)
    evaluation = mouse_datasets.cifar_eval_view(image, image_size=64)
    # Upsampling by 2: the mean of each 2 x 2 block is close to the source pixel (bilinear, half-pixel centres).
    unnormalised = evaluation * np.array(image_preprocessing.IMAGENET_STD) + np.array(image_preprocessing.IMAGENET_MEAN)
    blocks = tf.nn.avg_pool2d(unnormalised[None], 2, 2, "VALID")[0]
    np.testing.assert_allclose(blocks[4:-4, 4:-4], tf.cast(image, tf.float32)[4:-4, 4:-4] / 255.0, atol=2e-2)


def test_cifar_batches_from_mock_data_are_64_px():
    data = mouse_datasets.Cifar10At64Data(data_dir="/nonexistent", download=False)
    with tfds.testing.mock_data(num_examples=4):
        batch = next(iter(data.train_dataset(global_batch_size=2, input_context=CONTEXT, start_step=0, seed=0)))
        evaluation = next(iter(data.eval_dataset(global_batch_size=2, input_context=CONTEXT)))
    assert batch["images"].shape == evaluation["images"].shape == (2, 64, 64, 3)
    assert data.num_classes == 10
    with pytest.raises(ValueError, match="padding"):
        mouse_datasets.Cifar10At64Data(padding=-1)
