"""ImageNetSSLData on mocked TFDS data (no downloads): view batches, split indices, exact resume, sharding, eval."""

import io
import re

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from goaldriven.tasks.self_supervised import augment, data

SIZES = {"train": 23, "validation": 7}
NEUTRAL = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def _jpeg(value: int, shape=(20, 26)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full(shape + (3,), value, np.uint8)).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _indexed_as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
    """A TFDS stand-in honouring slices: example i of a split is a JPEG of grey level 10 i with label 100 + i."""
    del self, decoders, read_config, shuffle_files
    name, begin, end = re.fullmatch(r"(\w+)(?:\[(\d+):(\d+)\])?", split).groups()
    indices = range(int(begin or 0), int(end or SIZES[name]))
    return tf.data.Dataset.from_tensor_slices(
        {"image": [_jpeg(10 * i) for i in indices], "label": np.array([100 + i for i in indices], np.int64)}
    )


def _context(pipelines=1, pipeline_id=0, replicas=1):
    return tf.distribute.InputContext(
        num_input_pipelines=pipelines, input_pipeline_id=pipeline_id, num_replicas_in_sync=replicas
    )


def _data(recipe="simclr", **kwargs):
    augmentation = augment.preset(recipe, augment_size=24, output_size=12, **kwargs.pop("recipe_kwargs", {}))
    defaults = dict(data_dir="/nonexistent", num_chunks=3, shuffle_window=5, eval_resize_size=28, eval_crop_size=24)
    return data.ImageNetSSLData(augmentation=augmentation, **{**defaults, **kwargs})


def _train(dataset, *, global_batch_size=2, context=None, start_step=0, seed=1):
    return dataset.train_dataset(
        global_batch_size=global_batch_size, input_context=context or _context(), start_step=start_step, seed=seed
    )


def _numpy(batches):
    return [{k: v.numpy() for k, v in b.items()} for b in batches]


def test_view_batches_have_static_shapes_and_the_contract_types():
    with tfds.testing.mock_data(num_examples=5):
        ssl = _data()
        train = _train(ssl)
        assert train.element_spec["views"].shape == (2, 2, 12, 12, 3)
        assert train.element_spec["labels"].shape == (2,) and train.element_spec["labels"].dtype == tf.int32
        assert train.element_spec["index"].shape == (2,) and train.element_spec["index"].dtype == tf.int64
        batch = next(iter(train))
        assert np.isfinite(batch["views"].numpy()).all()
        assert not np.array_equal(batch["views"][:, 0], batch["views"][:, 1])  # two different augmentations
        assert (ssl.image_size, ssl.pixel_mean, ssl.pixel_std) == (12, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
        three = _train(_data(num_views=3))
        assert three.element_spec["views"].shape == (2, 3, 12, 12, 3)


def test_index_is_the_split_position_and_views_show_that_example():
    with tfds.testing.mock_data(as_dataset_fn=_indexed_as_dataset):
        ssl = _data("rotnet", recipe_kwargs=NEUTRAL)
        assert ssl.num_train_examples() == 23 and ssl.num_eval_examples() == 7
        batches = _numpy(_train(ssl).take(23))  # two epochs of 23 examples, batch 2
        index = np.concatenate([b["index"] for b in batches])
        labels = np.concatenate([b["labels"] for b in batches])
        np.testing.assert_array_equal(labels, 100 + index)
        assert sorted(index[:23]) == list(range(23)) and sorted(index[23:46]) == list(range(23))
        assert index[:23].tolist() != list(range(23))  # shuffled
        views = np.concatenate([b["views"] for b in batches])  # (46, 2, 12, 12, 3): constant grey images
        np.testing.assert_allclose(views.mean(axis=(1, 2, 3, 4)) * 255, 10 * index, atol=2.0)


def test_resume_at_step_k_gives_the_uninterrupted_batches():
    with tfds.testing.mock_data(as_dataset_fn=_indexed_as_dataset):
        ssl = _data()
        full = _numpy(_train(ssl, global_batch_size=4).take(9))
        for start in (3, 7):  # 12 examples consumed: inside epoch 0; 28: inside epoch 1
            resumed = _numpy(_train(ssl, global_batch_size=4, start_step=start).take(2))
            for expected, got in zip(full[start : start + 2], resumed):
                for key in ("views", "labels", "index"):
                    np.testing.assert_array_equal(expected[key], got[key])
        other_seed = _numpy(_train(ssl, global_batch_size=4, seed=2).take(1))[0]
        assert not np.array_equal(other_seed["views"], full[0]["views"])


def test_two_replicas_take_consecutive_slices_and_two_pipelines_disjoint_shards():
    with tfds.testing.mock_data(as_dataset_fn=_indexed_as_dataset):
        ssl = _data()
        single = _numpy(_train(ssl, global_batch_size=2).take(6))
        replicated = _train(ssl, global_batch_size=4, context=_context(1, 0, 2))
        assert replicated.element_spec["views"].shape == (2, 2, 12, 12, 3)  # per-replica batch
        for expected, got in zip(single, _numpy(replicated.take(6))):
            for key in ("views", "labels", "index"):
                np.testing.assert_array_equal(expected[key], got[key])
        resumed = _numpy(_train(ssl, global_batch_size=4, context=_context(1, 0, 2), start_step=1).take(2))
        np.testing.assert_array_equal(
            np.stack([b["views"] for b in resumed]), np.stack([b["views"] for b in single[2:4]])
        )

        shards = []
        for pipeline in range(2):
            dataset = _train(ssl, global_batch_size=4, context=_context(2, pipeline, 2))
            assert dataset.element_spec["views"].shape == (2, 2, 12, 12, 3)
            index = np.concatenate([b["index"] for b in _numpy(dataset.take(6))])[: (11, 12)[pipeline]]
            shards.append(sorted(index.tolist()))
        assert shards == [list(range(11)), list(range(11, 23))]


def test_rotations_mode_gives_the_four_rotations_of_one_view():
    with tfds.testing.mock_data(num_examples=4):
        ssl = _data("rotnet", mode="rotations")
        assert ssl.views_per_example == 4
        train = _train(ssl)
        assert train.element_spec["views"].shape == (2, 4, 12, 12, 3)
        views = next(iter(train))["views"].numpy()
        for example in views:
            for k in range(4):
                np.testing.assert_array_equal(example[k], np.rot90(example[0], k, axes=(0, 1)))
        assert not np.array_equal(views[0, 0], views[0, 1])


@pytest.mark.parametrize("pipelines", [1, 2])
def test_evaluation_batches_see_every_example_once(pipelines):
    with tfds.testing.mock_data(as_dataset_fn=_indexed_as_dataset):
        ssl = _data(recipe_kwargs=NEUTRAL)
        seen = []
        for pipeline in range(pipelines):
            dataset = ssl.eval_dataset(global_batch_size=4, input_context=_context(pipelines, pipeline, 2))
            assert dataset.element_spec["images"].shape == (2, 12, 12, 3)
            assert set(dataset.element_spec) == {"images", "labels", "weight"}
            for batch in _numpy(dataset):
                kept = batch["weight"] == 1
                grey = batch["images"][kept].mean(axis=(1, 2, 3)) * 255
                np.testing.assert_allclose(grey, 10 * (batch["labels"][kept] - 100), atol=2.0)
                seen += batch["labels"][kept].tolist()
        assert sorted(seen) == [100 + i for i in range(7)]


def test_invalid_settings_raise():
    with pytest.raises(ValueError, match="mode"):
        _data(mode="jigsaw")
    with pytest.raises(ValueError, match="num_views"):
        _data(num_views=0)
    with pytest.raises(TypeError, match="ViewAugmentation"):
        data.ImageNetSSLData(augmentation="simclr")
    with pytest.raises(ValueError, match="eval_crop_size"):
        _data(eval_resize_size=20)
