"""ImageNet and CIFAR-10 for the supervised models of thesis Chapter 3 (64 px, mouse acuity), torchvision-style.

Reference: thesis Sections 3.4.3 and 3.6.2 (spec ch3 A4 preamble, A4.1; Ambiguities 6 and 7): the 64 px models see
ImageNet augmented at 224 px and downsampled afterwards, CIFAR-10 augmented at 32 px and upsampled:

  ImageNet train: RandomResizedCrop(224, scale (0.08, 1), ratio (3/4, 4/3)) + HFlip, then Resize(64)   [C]
  ImageNet eval:  Resize(256) (shorter side) -> CenterCrop(224) -> Resize(64)                          [T 3.6.2]
  CIFAR-10 train: RandomCrop(32, padding 4) + HFlip, then Resize(64)                                   [C]
  CIFAR-10 eval:  Resize(64)
  all:            [0, 1] pixels, (x - mean) / std with the ImageNet mean and std (the task's pixel_mean/std, which
                  the neural fits use to present stimuli)

The crop sampler, flip and resize are the torchvision-matching ops of `self_supervised/augment.py` (the SSL
objectives' pipeline: bilinear antialiased resize, as PIL), so a supervised 64 px model and an SSL one see the same
image statistics; `image_size = 224` (and `augment_size = 224`) is torchvision's own ImageNet recipe, used for the
224 px controls. The ResNet pipeline of `image_datasets.ImageNetData` (Inception crop, bicubic, straight to the output
size) stays the Chapter 2 one. Order, sharding and exact resume are those of `tfds_reading.tfds_pipeline`.

Decision: CIFAR-10 is normalised with the ImageNet statistics (the reference does not say; one set of statistics per
task class keeps the neural-fit presentation unambiguous).
"""

# s: image side
import dataclasses
import functools

import tensorflow as tf

from goaldriven.tasks import image_datasets, tfds_reading
from goaldriven.tasks import image_preprocessing as preprocessing
from goaldriven.tasks.self_supervised import augment


def _check_side(name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int (64, 224, ...). Received: {value!r}")


class _Data(image_datasets.TFDSData):
    """`image_datasets.TFDSData` over `tfds_reading.tfds_pipeline` with the subclass' `_builder`, `_train_fn` and
    `_eval_fn` (and the split fields)."""

    def _dataset(self, *, training, split, global_batch_size, input_context, start_step=0, seed=0) -> tf.data.Dataset:
        return tfds_reading.tfds_pipeline(
            self._builder(),
            split=split,
            training=training,
            preprocess=self._train_fn() if training else self._eval_fn(),
            image_shape=(self.image_size, self.image_size, 3),
            global_batch_size=global_batch_size,
            input_context=input_context,
            start_step=start_step,
            seed=seed,
            num_chunks=self.num_chunks,
            shuffle_window=self.shuffle_window,
        )

    def num_train_examples(self) -> int:
        return tfds_reading.num_examples(self.tfds_name, self.train_split, data_dir=self.data_dir)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ImageNet64Data(_Data):
    """ImageNet for `ImageClassificationTask`, augmented at `augment_size` then resized to `image_size` (module
    docstring).

    Fields:
      data_dir, manual_dir, download: the TFDS location (as `image_datasets.ImageNetData`).
      image_size: the model's input side (64; 224 for the controls; the resolution sweeps bind 32-224).
      augment_size: the RandomResizedCrop side (224).
      eval_resize_size, eval_crop_size: the evaluation's shorter-side resize and centre crop (256, 224).
      train_split, eval_split, num_chunks, shuffle_window, num_classes: as `image_datasets.ImageNetData`.
    """

    data_dir: str | None = None
    manual_dir: str | None = None
    download: bool = False
    image_size: int = 64
    augment_size: int = 224
    eval_resize_size: int = 256
    eval_crop_size: int = 224
    train_split: str = "train"
    eval_split: str = "validation"
    num_chunks: int = 16
    shuffle_window: int | None = 8192
    num_classes: int = 1000
    tfds_name = tfds_reading.IMAGENET

    def __post_init__(self):
        for name in ("image_size", "augment_size", "eval_resize_size", "eval_crop_size"):
            _check_side(name, getattr(self, name))
        if self.eval_crop_size > self.eval_resize_size:
            raise ValueError(
                f"eval_crop_size ({self.eval_crop_size}) must not exceed eval_resize_size ({self.eval_resize_size})."
            )

    @property
    def augmentation(self) -> augment.ViewAugmentation:
        """RandomResizedCrop(augment_size) + flip, then resize to image_size (augment.SUPERVISED)."""
        return augment.preset("supervised", augment_size=self.augment_size, output_size=self.image_size)

    def _train_fn(self):
        return self.augmentation.view

    def _eval_fn(self):
        return functools.partial(
            augment.evaluation_view,
            resize_size=self.eval_resize_size,
            crop_size=self.eval_crop_size,
            output_size=self.image_size,
        )

    def _builder(self):
        return tfds_reading.tfds_builder(
            self.tfds_name, data_dir=self.data_dir, download=self.download, manual_dir=self.manual_dir
        )


def cifar_train_view(image: tf.Tensor, seed: tf.Tensor, *, image_size: int = 64, padding: int = 4) -> tf.Tensor:
    """RandomCrop(32, padding) + flip at the native size, then bilinear resize to image_size, normalised:
    float32 (image_size, image_size, 3)."""
    pixels = preprocessing.pad_crop_flip(image, seed, padding=padding, normalized=False)  # (32, 32, 3) in [0, 1]
    return preprocessing.normalize(tf.clip_by_value(augment.resize(pixels, image_size), 0.0, 1.0))


def cifar_eval_view(image: tf.Tensor, *, image_size: int = 64) -> tf.Tensor:
    """The whole image resized to image_size, normalised: float32 (image_size, image_size, 3)."""
    pixels = preprocessing.scale_only(image, normalized=False)
    return preprocessing.normalize(tf.clip_by_value(augment.resize(pixels, image_size), 0.0, 1.0))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Cifar10At64Data(_Data):
    """CIFAR-10 for `ImageClassificationTask` at `image_size` (64): the 32 px pad-crop-flip, then an upsampling
    (module docstring). Fields as `image_datasets.Cifar10Data` (eval on the 10,000 test images)."""

    data_dir: str | None = None
    download: bool = True
    image_size: int = 64
    padding: int = 4
    train_split: str = "train"
    eval_split: str = "test"
    num_chunks: int = 1
    shuffle_window: int | None = None
    num_classes: int = 10
    tfds_name = tfds_reading.CIFAR10

    def __post_init__(self):
        _check_side("image_size", self.image_size)
        if not isinstance(self.padding, int) or self.padding < 0:
            raise ValueError(f"padding must be an int >= 0 (CIFAR standard: 4). Received: {self.padding!r}")

    def _train_fn(self):
        return functools.partial(cifar_train_view, image_size=self.image_size, padding=self.padding)

    def _eval_fn(self):
        return functools.partial(cifar_eval_view, image_size=self.image_size)

    def _builder(self):
        return tfds_reading.tfds_builder(self.tfds_name, data_dir=self.data_dir, download=self.download)
