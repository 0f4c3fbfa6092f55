"""ImageNet / CIFAR-10 pipelines on mocked TFDS data and on a fabricated ILSVRC-2012 manual_dir (no downloads)."""

import io
import os
import re
import tarfile

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from goaldriven.tasks import image_datasets

SIZES = {"train": 23, "validation": 11, "test": 11}


def _png(value: int, shape=(32, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full(shape + (3,), value, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _indexed_as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
    """A TFDS stand-in that honours slices: example i of a split has label i and pixels of value i."""
    del self, decoders, read_config, shuffle_files
    name, begin, end = re.fullmatch(r"(\w+)(?:\[(\d+):(\d+)\])?", split).groups()
    indices = range(int(begin or 0), int(end or SIZES[name]))
    return tf.data.Dataset.from_tensor_slices(
        {"image": [_png(i) for i in indices], "label": np.array(indices, np.int64)}
    )


def _context(pipelines=1, pipeline_id=0, replicas=1):
    return tf.distribute.InputContext(
        num_input_pipelines=pipelines, input_pipeline_id=pipeline_id, num_replicas_in_sync=replicas
    )


def _labels(dataset, batches=None):
    dataset = dataset if batches is None else dataset.take(batches)
    return [b["labels"].numpy().tolist() for b in dataset]


def _imagenet(**kwargs):
    defaults = dict(data_dir="/nonexistent", image_size=8, input_context=_context())
    return image_datasets.imagenet_dataset(**{**defaults, **kwargs})


def test_mocked_imagenet_and_cifar_batches_have_static_shapes():
    with tfds.testing.mock_data(num_examples=6):
        train = _imagenet(training=True, global_batch_size=4, image_size=16, num_chunks=2, shuffle_window=3)
        assert train.element_spec["images"].shape == (4, 16, 16, 3)
        assert train.element_spec["labels"].shape == (4,) and train.element_spec["labels"].dtype == tf.int32
        batches = list(train.take(3))  # crosses the epoch boundary (2 chunks x 6 mocked examples per epoch)
        assert all(np.isfinite(b["images"].numpy()).all() for b in batches)
        assert all(0 <= b["labels"].numpy().min() and b["labels"].numpy().max() < 1000 for b in batches)
        evaluation = _imagenet(training=False, global_batch_size=4, image_size=16)
        assert evaluation.element_spec["weight"].shape == (4,)
        assert sum(b["weight"].numpy().sum() for b in evaluation) == 6
        for training in (True, False):
            cifar = image_datasets.cifar10_dataset(training=training, global_batch_size=4, data_dir="/nonexistent")
            batch = next(iter(cifar))
            assert batch["images"].shape == (4, 32, 32, 3) and cifar.element_spec["images"].shape == (4, 32, 32, 3)


def test_each_epoch_is_a_seeded_permutation_and_resume_is_exact():
    with tfds.testing.mock_data(as_dataset_fn=_indexed_as_dataset):
        stream = _imagenet(training=True, global_batch_size=1, num_chunks=3, shuffle_window=5, seed=1)
        labels = [b[0] for b in _labels(stream, 46)]
        assert sorted(labels[:23]) == list(range(23)) and sorted(labels[23:]) == list(range(23))
        assert labels[:23] != labels[23:] and labels[:23] != list(range(23))
        other_seed = _imagenet(training=True, global_batch_size=1, num_chunks=3, shuffle_window=5, seed=2)
        assert [b[0] for b in _labels(other_seed, 23)] != labels[:23]

        common = dict(training=True, global_batch_size=4, num_chunks=3, shuffle_window=5, seed=1)
        full = list(_imagenet(**common).take(10))
        for start in (5, 7):  # 20 examples consumed: inside epoch 0; 28: inside epoch 1
            resumed = list(_imagenet(start_step=start, **common).take(3))
            for a, b in zip(full[start : start + 3], resumed):
                np.testing.assert_array_equal(a["labels"].numpy(), b["labels"].numpy())
                np.testing.assert_array_equal(a["images"].numpy(), b["images"].numpy())
        # The augmentation differs between the two epochs' views of the same example.
        stream = list(_imagenet(training=True, global_batch_size=1, seed=1, image_size=4).take(46))
        first = {int(b["labels"][0]): b["images"].numpy() for b in stream[:23]}
        second = {int(b["labels"][0]): b["images"].numpy() for b in stream[23:]}
        assert any(not np.array_equal(first[k], second[k]) for k in first)


def test_two_input_pipelines_read_disjoint_shards():
    with tfds.testing.mock_data(as_dataset_fn=_indexed_as_dataset):
        seen = []
        for pipeline in range(2):
            dataset = _imagenet(
                training=True, global_batch_size=4, input_context=_context(2, pipeline, 2), num_chunks=16, seed=0
            )
            assert dataset.element_spec["images"].shape == (2, 8, 8, 3)  # per-replica batch
            first_epoch = sum(_labels(dataset, 6), [])[: (11, 12)[pipeline]]
            seen.append(set(first_epoch))
        assert seen[0] == set(range(11)) and seen[1] == set(range(11, 23))


@pytest.mark.parametrize("pipelines", [1, 2])
def test_evaluation_sees_every_example_once(pipelines):
    with tfds.testing.mock_data(as_dataset_fn=_indexed_as_dataset):
        weighted, batch_counts = [], []
        for pipeline in range(pipelines):
            dataset = image_datasets.cifar10_dataset(
                training=False,
                global_batch_size=4,
                input_context=_context(pipelines, pipeline, 2),
                data_dir="/nonexistent",
                normalized=False,
            )
            batches = list(dataset)
            batch_counts.append(len(batches))
            for batch in batches:
                pixels = np.round(batch["images"].numpy().mean(axis=(1, 2, 3)) * 255).astype(int)
                labels, weights = batch["labels"].numpy(), batch["weight"].numpy()
                np.testing.assert_array_equal(pixels[weights == 1], labels[weights == 1])
                weighted += labels[weights == 1].tolist()
                assert set(weights.tolist()) <= {0.0, 1.0}
        assert sorted(weighted) == list(range(11))
        assert len(set(batch_counts)) == 1  # every pipeline runs the same number of steps


def test_invalid_batch_and_missing_data_errors():
    with tfds.testing.mock_data(as_dataset_fn=_indexed_as_dataset):
        with pytest.raises(ValueError, match="multiple of 2"):
            _imagenet(training=True, global_batch_size=3, input_context=_context(1, 0, 2))
    with pytest.raises(FileNotFoundError, match="manual_dir.*download=True"):
        image_datasets.imagenet_dataset(training=False, global_batch_size=2, data_dir="/nonexistent_goaldriven")


# A fabricated ILSVRC-2012 manual_dir, prepared by the real TFDS builder.
SYNSETS = ("n01440764", "n01443537", "n01484850")  # the first three lines of TFDS's labels.txt


def _jpeg(value: int, shape, mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full(shape + (3,), value, np.uint8)).convert(mode).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _add(tar, name, payload):
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def _fabricate_manual_dir(path):
    with tarfile.open(os.path.join(path, "ILSVRC2012_img_train.tar"), "w") as outer:
        for s, synset in enumerate(SYNSETS):
            inner_bytes = io.BytesIO()
            with tarfile.open(fileobj=inner_bytes, mode="w") as inner:
                for i in range(4):
                    _add(inner, f"{synset}_{i}.JPEG", _jpeg(10 + 20 * (4 * s + i), (20 + 3 * i, 30)))
            _add(outer, f"{synset}.tar", inner_bytes.getvalue())
    with tarfile.open(os.path.join(path, "ILSVRC2012_img_val.tar"), "w") as tar:
        for i in range(1, 8):
            _add(tar, f"ILSVRC2012_val_{i:08d}.JPEG", _jpeg(30 * i, (24, 18), "L" if i == 2 else "RGB"))


def test_fabricated_imagenet_manual_dir(tmp_path):
    manual_dir, data_dir = tmp_path / "manual", str(tmp_path / "tfds")
    manual_dir.mkdir()
    _fabricate_manual_dir(str(manual_dir))
    with pytest.raises(FileNotFoundError, match="manual_dir"):
        image_datasets.ImageNetData(data_dir=data_dir).num_eval_examples()
    prepared = image_datasets.ImageNetData(data_dir=data_dir, manual_dir=str(manual_dir), download=True, image_size=8)
    prepared.eval_dataset(global_batch_size=2, input_context=_context())  # runs download_and_prepare once
    data = image_datasets.ImageNetData(data_dir=data_dir, image_size=8, normalized=False)
    assert data.num_eval_examples() == 7

    # Validation labels: TFDS assigns validation_labels.txt line i to the i-th file name in sorted order.
    resources = os.path.join(os.path.dirname(tfds.__file__), "datasets", "imagenet2012")
    synsets = open(os.path.join(resources, "labels.txt")).read().split()
    truth = [synsets.index(s) for s in open(os.path.join(resources, "validation_labels.txt")).read().split()[:7]]
    found = {}
    for pipeline in range(2):
        for batch in data.eval_dataset(global_batch_size=4, input_context=_context(2, pipeline, 2)):
            assert batch["images"].shape == (2, 8, 8, 3)
            for image, label, weight in zip(batch["images"].numpy(), batch["labels"].numpy(), batch["weight"].numpy()):
                if weight:
                    value = int(round(image.mean() * 255 / 30))  # the file index i (pixels 30 * i)
                    assert value not in found
                    found[value] = int(label)
    assert found == {i + 1: truth[i] for i in range(7)}

    shards = []
    for pipeline in range(2):
        batches = data.train_dataset(global_batch_size=4, input_context=_context(2, pipeline, 2), start_step=0, seed=0)
        images = np.concatenate([b["images"].numpy() for b in batches.take(3)])  # one shard epoch: 6 examples
        labels = np.concatenate([b["labels"].numpy() for b in batches.take(3)])
        ids = np.round((images.mean(axis=(1, 2, 3)) * 255 - 10) / 20).astype(int)  # 4 * synset + i
        np.testing.assert_array_equal(ids // 4, labels)
        shards.append(set(ids.tolist()))
    assert shards[0].isdisjoint(shards[1]) and shards[0] | shards[1] == set(range(12))
