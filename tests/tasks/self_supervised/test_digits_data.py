"""The digits as SSL data: the contract's shapes, the example index, exact resume, replica slices, the augmentation's
definition (crop box, jitter formula, blur) and the RotNet rotations."""

import numpy as np
import pytest
import tensorflow as tf

from goaldriven.tasks import digits
from goaldriven.tasks.self_supervised import digits_data

SIZE = 12


def _batches(data, *, start=0, count=2, batch=6, context=None):
    dataset = data.train_dataset(
        global_batch_size=batch, input_context=context or tf.distribute.InputContext(), start_step=start, seed=3
    )
    return [{k: v.numpy() for k, v in b.items()} for b in dataset.take(count)]


def test_batches_follow_the_ssl_contract_and_index_the_training_split():
    data = digits_data.DigitsSSLData(image_size=SIZE)
    (batch,) = _batches(data, count=1)
    assert batch["views"].shape == (6, 2, SIZE, SIZE, 3) and batch["views"].dtype == np.float32
    assert batch["index"].dtype == np.int64 and batch["labels"].dtype == np.int32
    _, labels = data.labelled.arrays("train")
    np.testing.assert_array_equal(batch["labels"], labels[batch["index"]])  # index = position in the training split
    assert len(set(batch["index"].tolist())) == 6
    assert not np.array_equal(batch["views"][:, 0], batch["views"][:, 1])  # two independent draws
    np.testing.assert_array_equal(batch["views"][..., 0], batch["views"][..., 2])  # grey: identical channels


def test_resume_and_replica_slices_are_exact():
    data = digits_data.DigitsSSLData(image_size=SIZE)
    straight = _batches(data, count=3)
    resumed = _batches(data, start=2, count=1)
    for key in straight[2]:
        np.testing.assert_array_equal(straight[2][key], resumed[0][key])
    halves = [_batches(data, count=1, context=tf.distribute.InputContext(2, p, 2))[0] for p in range(2)]
    for key in straight[0]:
        np.testing.assert_array_equal(np.concatenate([h[key] for h in halves]), straight[0][key])


def test_an_epoch_visits_every_training_example_once():
    data = digits_data.DigitsSSLData(image_size=SIZE)
    n = data.num_train_examples()
    (batch,) = _batches(data, count=1, batch=n)
    assert sorted(batch["index"].tolist()) == list(range(n))


def test_crops_stay_inside_the_image_and_within_the_scale_range():
    data = digits_data.DigitsSSLData(image_size=SIZE, crop_scale=(0.4, 1.0), jitter_prob=0.0, blur_prob=0.0)
    ramp = np.tile(np.arange(SIZE, dtype=np.float32)[None, :, None, None] / (SIZE - 1), (200, 1, SIZE, 1))
    out = data.augment(tf.constant(ramp), tf.constant([4, 5], tf.int64)).numpy()  # (200, s, s, 1): value = row
    spans = out[:, -1, 0, 0] - out[:, 0, 0, 0]  # covered fraction of the height, (rows - 1) / rows scaled
    assert out.min() >= 0.0 and out.max() <= 1.0 + 1e-6
    assert spans.min() > 0.2 and spans.max() <= 1.0 + 1e-6 and spans.std() > 0.05


def test_jitter_is_torchvision_brightness_then_contrast_on_grey_images():
    data = digits_data.DigitsSSLData(
        image_size=SIZE, crop_scale=(1.0, 1.0), jitter_prob=1.0, blur_prob=0.0, brightness=0.3, contrast=0.3
    )
    raw, _ = data.labelled.arrays("train")
    seed = tf.constant([7, 8], tf.int64)
    out = data.augment(tf.constant(raw[:4]), seed).numpy()
    plain = digits_data.DigitsSSLData(image_size=SIZE, crop_scale=(1.0, 1.0), jitter_prob=0.0, blur_prob=0.0)
    cropped = plain.augment(tf.constant(raw[:4]), seed).numpy()  # the same crop (its own seeds), nothing else
    seeds = tf.unstack(tf.random.experimental.stateless_split(seed, 6))
    factors = tf.random.stateless_uniform([2, 4], seeds[3]).numpy()
    for i in range(4):
        b, c = 0.7 + 0.6 * factors[0, i], 0.7 + 0.6 * factors[1, i]
        bright = np.clip(cropped[i] * b, 0, 1)
        expected = np.clip(c * (bright - bright.mean()) + bright.mean(), 0, 1)
        np.testing.assert_allclose(out[i], expected, atol=1e-5)


def test_blur_is_the_binomial_filter_with_edge_reflection():
    data = digits_data.DigitsSSLData(image_size=SIZE, crop_scale=(1.0, 1.0), jitter_prob=0.0, blur_prob=1.0)
    raw, _ = data.labelled.arrays("train")
    seed = tf.constant([1, 1], tf.int64)
    out = data.augment(tf.constant(raw[:1]), seed).numpy()[0, :, :, 0]
    plain = digits_data.DigitsSSLData(image_size=SIZE, crop_scale=(1.0, 1.0), jitter_prob=0.0, blur_prob=0.0)
    cropped = plain.augment(tf.constant(raw[:1]), seed).numpy()[0, :, :, 0]
    padded = np.pad(cropped, 1, mode="symmetric")
    k = np.array([1.0, 2.0, 1.0]) / 4
    expected = sum(
        k[i] * k[j] * padded[i : i + SIZE, j : j + SIZE] for i in range(3) for j in range(3)
    )  # fmt: skip
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_rotations_mode_gives_the_four_rotations_of_one_view():
    data = digits_data.DigitsSSLData(image_size=SIZE, mode="rotations")
    (batch,) = _batches(data, count=1)
    views = batch["views"]
    assert views.shape == (6, 4, SIZE, SIZE, 3)
    for k in range(4):
        np.testing.assert_array_equal(views[:, k], np.rot90(views[:, 0], k, axes=(1, 2)))


def test_memory_is_the_unaugmented_training_split_with_weights():
    data = digits_data.DigitsSSLData(image_size=SIZE)
    memory = data.memory()
    batches = list(memory.eval_dataset(global_batch_size=100, input_context=tf.distribute.InputContext()))
    weights = np.concatenate([b["weight"].numpy() for b in batches])
    assert weights.sum() == memory.num_eval_examples() == data.num_train_examples()
    raw, labels = data.labelled.arrays("train")
    np.testing.assert_allclose(batches[0]["images"].numpy(), digits.normalize(raw[:100]).numpy())
    np.testing.assert_array_equal(batches[0]["labels"].numpy(), labels[:100])


@pytest.mark.parametrize(
    "kwargs, match",
    [({"mode": "pairs"}, "mode must be"), ({"crop_scale": (0.0, 1.0)}, "crop_scale"),
     ({"jitter_prob": 2.0}, "jitter_prob"), ({"num_views": 0}, "num_views")],
)  # fmt: skip
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        digits_data.DigitsSSLData(**kwargs)
