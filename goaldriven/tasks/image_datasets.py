"""ImageNet (ILSVRC-2012) and CIFAR-10 input pipelines from TFDS, with exactly resumable training order.

Reference: thesis Section 2.5.1 (spec ch2 7.1): ResNet preprocessing at 224 px (128 px for the searches); CIFAR-10
uses the standard pad-4 crop and flip. Preprocessing itself lives in `image_preprocessing.py`; sharding, training
order, exact resume and padded evaluation are those of `tfds_reading.tfds_pipeline` (see `tfds_reading.py`).

Batches: {"images": (b, s, s, 3) float32, "labels": (b,) int32[, "weight": (b,) float32]}, static shapes.
"""

# b: per-replica batch, s: image side
import dataclasses
import functools

import tensorflow as tf

from goaldriven.tasks import image_preprocessing as preprocessing
from goaldriven.tasks import tfds_reading


def imagenet_dataset(
    *,
    training: bool,
    global_batch_size: int,
    input_context: tf.distribute.InputContext | None = None,
    start_step: int = 0,
    seed: int = 0,
    data_dir: str | None = None,
    manual_dir: str | None = None,
    download: bool = False,
    image_size: int = 224,
    crop_fraction: float = preprocessing.CROP_FRACTION,
    normalized: bool = True,
    split: str | None = None,
    num_chunks: int = 16,
    shuffle_window: int | None = 8192,
) -> tf.data.Dataset:
    """ImageNet batches for this input pipeline (see the module docstring).

    Args:
      training: endless augmented training stream from `start_step` (split "train"), or one padded pass over the
        evaluation split ("validation") with a 0/1 "weight".
      global_batch_size: examples per step over all replicas.
      input_context: this pipeline's place (None: one pipeline, one replica).
      start_step, seed: the training stream is a function of (seed, step); ignored for evaluation.
      data_dir: TFDS data directory (None: ~/tensorflow_datasets).
      manual_dir: folder with ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar (used when download=True).
      download: prepare the TFDS files from manual_dir first (hours for the full dataset; a no-op once prepared).
      image_size: output side in pixels.
      crop_fraction: eval centre-crop fraction (224 / 256).
      normalized: ImageNet mean/std normalisation (else [0, 1]).
      split: TFDS split (default "train" or "validation").
      num_chunks: chunks per shard merged in random order each epoch.
      shuffle_window: examples shuffled together after the merge (None: the whole shard epoch; memory holds this many
        encoded JPEGs, about 110 kB each).
    """
    builder = tfds_reading.tfds_builder(
        tfds_reading.IMAGENET, data_dir=data_dir, download=download, manual_dir=manual_dir
    )
    if training:
        preprocess = functools.partial(
            preprocessing.preprocess_for_train,
            image_size=image_size,
            crop_fraction=crop_fraction,
            normalized=normalized,
        )
    else:
        preprocess = functools.partial(
            preprocessing.preprocess_for_eval, image_size=image_size, crop_fraction=crop_fraction, normalized=normalized
        )
    return tfds_reading.tfds_pipeline(
        builder,
        split=split or ("train" if training else "validation"),
        training=training,
        preprocess=preprocess,
        image_shape=(image_size, image_size, 3),
        global_batch_size=global_batch_size,
        input_context=input_context,
        start_step=start_step,
        seed=seed,
        num_chunks=num_chunks,
        shuffle_window=shuffle_window,
    )


def cifar10_dataset(
    *,
    training: bool,
    global_batch_size: int,
    input_context: tf.distribute.InputContext | None = None,
    start_step: int = 0,
    seed: int = 0,
    data_dir: str | None = None,
    download: bool = True,
    normalized: bool = True,
    padding: int = 4,
    split: str | None = None,
    num_chunks: int = 1,
    shuffle_window: int | None = None,
    augmentation: str = "pad_crop_flip",
    shift_fraction: float = 0.1,
) -> tf.data.Dataset:
    """CIFAR-10 batches (32 x 32): train = `augmentation` ("pad_crop_flip": pad-`padding` random crop + flip;
    "shift_flip": Keras-standard random shift by up to `shift_fraction` of the side + flip, thesis Chapter 6), eval =
    no augmentation. Other arguments as in `imagenet_dataset`; splits "train" (50,000) and "test" (10,000); by default
    every epoch is a full seeded permutation of the shard (one chunk, window = whole epoch; 50,000 PNGs ~ 125 MB).
    """
    builder = tfds_reading.tfds_builder(tfds_reading.CIFAR10, data_dir=data_dir, download=download)
    if training:
        options = dict(augmentation=augmentation, padding=padding, shift_fraction=shift_fraction)
        preprocess = functools.partial(preprocessing.cifar_augment, normalized=normalized, **options)
    else:
        preprocess = functools.partial(preprocessing.scale_only, normalized=normalized)
    return tfds_reading.tfds_pipeline(
        builder,
        split=split or ("train" if training else "test"),
        training=training,
        preprocess=preprocess,
        image_shape=(32, 32, 3),
        global_batch_size=global_batch_size,
        input_context=input_context,
        start_step=start_step,
        seed=seed,
        num_chunks=num_chunks,
        shuffle_window=shuffle_window,
    )


class TFDSData:
    """The train/eval/count methods `ImageClassificationTask` calls; subclasses set `tfds_name` and `_dataset`
    (also the 64 px data of thesis Chapter 3, tasks/mouse_datasets.py)."""

    tfds_name: str = ""

    def _dataset(self, **kwargs) -> tf.data.Dataset:
        raise NotImplementedError

    def train_dataset(self, *, global_batch_size, input_context, start_step, seed) -> tf.data.Dataset:
        return self._dataset(
            training=True,
            split=self.train_split,
            global_batch_size=global_batch_size,
            input_context=input_context,
            start_step=start_step,
            seed=seed,
        )

    def eval_dataset(self, *, global_batch_size, input_context) -> tf.data.Dataset:
        return self._dataset(
            training=False, split=self.eval_split, global_batch_size=global_batch_size, input_context=input_context
        )

    def num_eval_examples(self) -> int:
        return tfds_reading.num_examples(self.tfds_name, self.eval_split, data_dir=self.data_dir)


@dataclasses.dataclass(frozen=True)
class ImageNetData(TFDSData):
    """ImageNet for `ImageClassificationTask`: bind `data_dir`, `manual_dir`, `image_size` in gin.

    Fields are the `imagenet_dataset` arguments of the same names; `eval_split` is "validation" (50,000 images).
    """

    data_dir: str | None = None
    manual_dir: str | None = None
    download: bool = False
    image_size: int = 224
    crop_fraction: float = preprocessing.CROP_FRACTION
    normalized: bool = True
    train_split: str = "train"
    eval_split: str = "validation"
    num_chunks: int = 16
    shuffle_window: int | None = 8192
    num_classes: int = 1000
    tfds_name = tfds_reading.IMAGENET

    def _dataset(self, **kwargs) -> tf.data.Dataset:
        return imagenet_dataset(
            data_dir=self.data_dir,
            manual_dir=self.manual_dir,
            download=self.download,
            image_size=self.image_size,
            crop_fraction=self.crop_fraction,
            normalized=self.normalized,
            num_chunks=self.num_chunks,
            shuffle_window=self.shuffle_window,
            **kwargs,
        )


@dataclasses.dataclass(frozen=True)
class Cifar10Data(TFDSData):
    """CIFAR-10 for `ImageClassificationTask` (32 px; eval on the 10,000 test images). Fields are the
    `cifar10_dataset` arguments of the same names (augmentation "shift_flip": the thesis Chapter 6 recipe)."""

    data_dir: str | None = None
    download: bool = True
    normalized: bool = True
    padding: int = 4
    train_split: str = "train"
    eval_split: str = "test"
    num_chunks: int = 1
    shuffle_window: int | None = None
    augmentation: str = "pad_crop_flip"
    shift_fraction: float = 0.1
    num_classes: int = 10
    image_size: int = 32
    tfds_name = tfds_reading.CIFAR10
    _NOT_OPTIONS = ("train_split", "eval_split", "num_classes", "image_size")  # the other fields are arguments

    def _dataset(self, **kwargs) -> tf.data.Dataset:
        options = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in self._NOT_OPTIONS}
        return cifar10_dataset(**options, **kwargs)
