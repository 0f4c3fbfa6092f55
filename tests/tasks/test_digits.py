"""The digits data (sklearn's embedded load_digits): split, preprocessing, stateless training order, evaluation, and
the digits experiment file training a few steps under a learning rule."""

import os

import numpy as np
import pytest
import tensorflow as tf
from sklearn import datasets

import gin
from goaldriven import cli_config
from goaldriven.alignment import layers
from goaldriven.tasks import digits, loop
from tests import strategies

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DIGITS = datasets.load_digits()


def _context(pipelines=1, pipeline_id=0, replicas=1):
    return tf.distribute.InputContext(
        num_input_pipelines=pipelines, input_pipeline_id=pipeline_id, num_replicas_in_sync=replicas
    )


def _reference_images(index, size):
    """NumPy: pixels / 16, half-pixel-centred bilinear resize to size x size, 3 channels, (x - 0.5) / 0.25."""
    src = np.clip((np.arange(size) + 0.5) * 8 / size - 0.5, 0, 7)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, 7)
    w = src - lo
    x = DIGITS.images[index] / 16.0  # (n, 8, 8)
    rows = x[:, lo, :] * (1 - w)[None, :, None] + x[:, hi, :] * w[None, :, None]  # (n, s, 8)
    full = rows[:, :, lo] * (1 - w)[None, None, :] + rows[:, :, hi] * w[None, None, :]  # (n, s, s)
    return np.repeat(((full - 0.5) / 0.25)[..., None], 3, axis=-1)


def _match(images, reference):
    """Index into `reference` of each image (asserting an exact match exists)."""
    distance = np.abs(images[:, None] - reference[None]).reshape(len(images), len(reference), -1).max(-1)
    assert np.all(distance.min(1) < 1e-5)
    return distance.argmin(1)


def test_split_is_disjoint_stratified_and_fixed_by_its_seed():
    data = digits.DigitsData(test_fraction=0.25, split_seed=0)
    train, test = data.train_indices, data.test_indices
    assert not set(train) & set(test) and len(train) + len(test) == 1797
    per_class = np.bincount(DIGITS.target, minlength=10)
    assert np.array_equal(np.bincount(DIGITS.target[test], minlength=10), np.round(0.25 * per_class))
    assert data.num_eval_examples() == int(np.round(0.25 * per_class).sum()) == 450
    again, other = digits.DigitsData(split_seed=0), digits.DigitsData(split_seed=1)
    assert np.array_equal(again.test_indices, test) and not np.array_equal(other.test_indices, test)
    small = digits.DigitsData(train_examples=105)
    assert np.array_equal(np.bincount(DIGITS.target[small.train_indices]), [11] * 5 + [10] * 5)
    assert set(small.train_indices) <= set(train) and np.array_equal(small.test_indices, test)
    with pytest.raises(ValueError, match="fewer"):
        digits.DigitsData(train_examples=1500).train_indices


def test_evaluation_covers_every_test_example_once_with_the_reference_preprocessing():
    data = digits.DigitsData(image_size=12)
    seen_images, seen_labels = [], []
    for pipeline in range(2):  # 2 input pipelines of 1 replica each, global batch 2 x 16
        dataset = data.eval_dataset(global_batch_size=32, input_context=_context(2, pipeline, 2))
        assert dataset.element_spec["images"].shape == (16, 12, 12, 3)
        assert dataset.element_spec["labels"].dtype == tf.int32
        batches = list(dataset)
        assert len(batches) == 15  # ceil(ceil(450 / 2) / 16) on every pipeline
        for batch in batches:
            keep = batch["weight"].numpy() == 1
            assert set(np.unique(batch["weight"].numpy())) <= {0.0, 1.0}
            seen_images.append(batch["images"].numpy()[keep])
            seen_labels.append(batch["labels"].numpy()[keep])
    images, labels = np.concatenate(seen_images), np.concatenate(seen_labels)
    np.testing.assert_allclose(images, _reference_images(data.test_indices, 12), atol=1e-5)
    np.testing.assert_array_equal(labels, DIGITS.target[data.test_indices])


def test_training_batches_are_a_pure_function_of_seed_and_step():
    data = digits.DigitsData(max_shift=2)
    kwargs = dict(global_batch_size=8, input_context=_context(), seed=3)
    full = list(data.train_dataset(start_step=0, **kwargs).take(5))
    assert full[0]["images"].shape == (8, 16, 16, 3) and full[0]["images"].dtype == tf.float32
    assert full[0]["labels"].shape == (8,) and full[0]["labels"].dtype == tf.int32
    resumed = list(data.train_dataset(start_step=3, **kwargs).take(2))
    for a, b in zip(full[3:], resumed):
        np.testing.assert_array_equal(a["images"], b["images"])
        np.testing.assert_array_equal(a["labels"], b["labels"])
    other = next(iter(data.train_dataset(start_step=0, **{**kwargs, "seed": 4})))
    assert not np.array_equal(other["labels"], full[0]["labels"]) or not np.array_equal(
        other["images"], full[0]["images"]
    )
    halves = [
        next(iter(data.train_dataset(start_step=0, **{**kwargs, "input_context": _context(2, p, 2)}))) for p in (0, 1)
    ]
    np.testing.assert_array_equal(np.concatenate([h["labels"] for h in halves]), full[0]["labels"])


def test_each_epoch_visits_every_training_example_once():
    data = digits.DigitsData(train_examples=20, max_shift=0)
    reference = _reference_images(data.train_indices, 16)
    batches = list(data.train_dataset(global_batch_size=8, input_context=_context(), start_step=0, seed=0).take(5))
    images = np.concatenate([b["images"].numpy() for b in batches])  # 40 examples = 2 epochs
    labels = np.concatenate([b["labels"].numpy() for b in batches])
    order = _match(images, reference)
    np.testing.assert_array_equal(labels, DIGITS.target[data.train_indices][order])
    assert sorted(order[:20]) == list(range(20)) and sorted(order[20:]) == list(range(20))
    assert list(order[:20]) != list(order[20:]) and list(order[:20]) != list(range(20))


def test_shift_augmentation_translates_the_image_with_background_fill():
    shift = 2
    clean = digits.DigitsData(max_shift=0).train_dataset(
        global_batch_size=16, input_context=_context(), start_step=5, seed=1
    )
    moved = digits.DigitsData(max_shift=shift).train_dataset(
        global_batch_size=16, input_context=_context(), start_step=5, seed=1
    )
    a, b = next(iter(clean))["images"].numpy(), next(iter(moved))["images"].numpy()
    shifts = []
    for x, y in zip(a, b):
        padded = np.pad(x, [(shift, shift), (shift, shift), (0, 0)], constant_values=-2.0)  # background -> -2
        found = [
            (dy, dx)
            for dy in range(2 * shift + 1)
            for dx in range(2 * shift + 1)
            if np.allclose(padded[dy : dy + 16, dx : dx + 16], y, atol=1e-6)
        ]
        assert found, "an augmented image is not a shifted copy of the clean one"
        shifts.append(found[0])
    assert len(set(shifts)) > 3  # the shifts vary over the batch


@pytest.mark.slow  # about 20 s: two compiled loops under MirroredStrategy and a full evaluation
def test_experiment_file_trains_symmetric_alignment_with_adam_on_the_backward_kernels(tmp_path):
    bindings = [
        "LEARNING_RULE = 'sa'",
        "IMAGE_SIZE = 8",
        "GLOBAL_BATCH_SIZE = 4",
        "TRAIN_STEPS = 4",
        "STEPS_PER_LOOP = 2",
        "CHECKPOINT_EVERY = 2",
    ]
    try:
        cli_config.parse_gin_config(["experiments/digits__small_resnet8.gin"], bindings, clear=True)
        task = cli_config.configured_task()
        built, initial = [], {}
        build_model = task.build_model

        def recording_build_model():
            built.append(build_model())
            initial.update({v.path: v.numpy() for v in layers.backward_kernels(built[0])})
            return built[0]

        task.build_model = recording_build_model
        result = gin.get_configurable(loop.run)(
            task=task, strategy=strategies.mirrored(), workdir=str(tmp_path), log=lambda line: None
        )
    finally:
        gin.clear_config()
    assert result["status"] == "finished" and result["step"] == 4
    assert result["eval"]["examples"] == int(np.round(0.25 * np.bincount(DIGITS.target)).sum())
    assert np.isfinite(result["train"]["alignment_loss"])
    # SA's gradient 2e-3 (B - W^T) keeps its sign over 4 steps, so Adam (lr 1e-3, thesis 5.9.2) moves each backward
    # weight by about 4 x 1e-3 (Adam's first steps are lr x sign(g)); the task optimizer would move them otherwise.
    moved = np.concatenate([np.abs(v.numpy() - initial[v.path]).ravel() for v in layers.backward_kernels(built[0])])
    assert len(initial) == 10  # 7 convs + 2 projection shortcuts + logits of ResNet-8
    np.testing.assert_allclose(np.median(moved), 4e-3, rtol=0.05)
