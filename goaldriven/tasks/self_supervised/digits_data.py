"""Scikit-learn's embedded handwritten digits as self-supervised data: the offline, no-download default.

The images, split and normalisation are `goaldriven.tasks.digits.DigitsData`'s (1,797 grey 8 x 8 digits, bilinearly
upsampled to `image_size`, stratified fixed split, x -> (x - 0.5) / 0.25 on 3 identical channels). Labels are carried
but never used by the objectives; they serve the kNN monitor and the linear probe.

Views (augmented on the whole global batch at once, in-graph; every draw stateless from (seed, step), so global batch
k is a pure function of (seed, k): exact resume, the same data on any number of replicas):
  crop:   area fraction a ~ U[crop_scale], aspect r ~ logU[3/4, 4/3], h = min(1, sqrt(a / r)), w = min(1, sqrt(a r))
          (fractions of the side), top-left corner uniform over the positions that keep the box inside the image;
          the box is resized back to image_size x image_size with bilinear interpolation (tf.image.crop_and_resize).
  jitter: with probability jitter_prob: x -> clip(c (b x - mean(b x)) + mean(b x), 0, 1),
          b ~ U[1 - brightness, 1 + brightness], c ~ U[1 - contrast, 1 + contrast] (torchvision's brightness and
          contrast on a grey image; hue and saturation do nothing to grey digits, grayscale is the identity).
  blur:   with probability blur_prob a 3 x 3 binomial blur ([1, 2, 1] / 4 in each direction, edge padding).
  No flips (a mirrored 2 is not a 2). Views of one example are independent draws. Mode "rotations" gives RotNet's 4:
  one augmented view rotated by 0, 90, 180 and 270 degrees.

These batched in-graph ops are this file's own (the ImageNet views are augment.py's per-example ops): for in-memory
8 x 8 digits, one vectorised op over the global batch is ~100x cheaper than a per-example tf.data map.
Stream order: example i of the stream is training example perm_e[i mod N], e = i div N, as in DigitsData.
"""

# n: examples, g: global batch, v: views, s: image side
import dataclasses
import functools

import numpy as np
import tensorflow as tf

from goaldriven import runtime
from goaldriven.tasks import digits, pipeline_math

_AUGMENT = 1  # (0 is the order's seed stream: digits.stream_indices)
ROTATIONS = 4


@dataclasses.dataclass(frozen=True)
class DigitsSSLData:
    """The digits as an SSL dataset (module docstring).

    Args:
      image_size: side s in pixels.
      num_views: augmented views per example in mode "views".
      mode: "views" (independent augmentations) or "rotations" (RotNet's 4 rotations of one augmented view).
      crop_scale: range of the crop's area fraction.
      brightness, contrast, jitter_prob: the jitter.
      blur_prob: probability of the 3 x 3 blur.
      test_fraction, split_seed: the split (DigitsData's).
    """

    image_size: int = 32
    num_views: int = 2
    mode: str = "views"
    crop_scale: tuple[float, float] = (0.4, 1.0)
    brightness: float = 0.4
    contrast: float = 0.4
    jitter_prob: float = 0.8
    blur_prob: float = 0.5
    test_fraction: float = 0.25
    split_seed: int = 0
    num_classes: int = digits.NUM_CLASSES

    def __post_init__(self):
        if self.mode not in ("views", "rotations"):
            raise ValueError(f"mode must be 'views' or 'rotations'. Received: {self.mode!r}")
        if not isinstance(self.num_views, int) or self.num_views < 1:
            raise ValueError(f"num_views must be a positive int. Received: {self.num_views!r}")
        low, high = self.crop_scale
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1. Received: {self.crop_scale}")
        for name in ("jitter_prob", "blur_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]. Received: {getattr(self, name)}")
        if not (0.0 <= self.brightness < 1.0 and 0.0 <= self.contrast < 1.0):
            raise ValueError(f"brightness and contrast must be in [0, 1). Received: {self.brightness}, {self.contrast}")

    @functools.cached_property
    def labelled(self) -> digits.DigitsData:
        """The same images as labelled classification data (test split: `eval_dataset`; training: shifts)."""
        return digits.DigitsData(
            image_size=self.image_size, test_fraction=self.test_fraction, split_seed=self.split_seed
        )

    @property
    def pixel_mean(self) -> float:
        return digits.MEAN

    @property
    def pixel_std(self) -> float:
        return digits.STD

    @property
    def views_per_example(self) -> int:
        return ROTATIONS if self.mode == "rotations" else self.num_views

    def num_train_examples(self) -> int:
        return self.labelled.num_train_examples()

    def num_eval_examples(self) -> int:
        return self.labelled.num_eval_examples()

    def eval_dataset(self, *, global_batch_size, input_context):
        """The labelled test split ({"images", "labels", "weight"}), un-augmented."""
        return self.labelled.eval_dataset(global_batch_size=global_batch_size, input_context=input_context)

    def memory(self) -> "DigitsTrainSplit":
        """The labelled training split, un-augmented, in the evaluation contract (a kNN monitor's memory)."""
        return DigitsTrainSplit(self)

    def train_dataset(self, *, global_batch_size, input_context, start_step, seed) -> tf.data.Dataset:
        context = input_context or tf.distribute.InputContext()
        runtime.check_global_batch_size(global_batch_size, context.num_replicas_in_sync)
        if start_step < 0:
            raise ValueError(f"start_step must be >= 0. Received: {start_step}")
        raw, labels = self.labelled.arrays("train")  # (n, s, s, 1) in [0, 1]
        raw, labels = tf.constant(raw), tf.constant(labels)
        n = int(labels.shape[0])

        def make_global_batch(step, step_seed):
            base_seed = tf.stack([step_seed[0], tf.constant(0, tf.int64)])
            index = digits.stream_indices(step, base_seed, global_batch_size=global_batch_size, num_examples=n)
            images = tf.gather(raw, index)  # (g, s, s, 1)
            augment_seed = pipeline_math.fold_seed(base_seed, _AUGMENT, step)
            draws = 1 if self.mode == "rotations" else self.num_views
            views = [self.augment(images, pipeline_math.fold_seed(augment_seed, v)) for v in range(draws)]
            if self.mode == "rotations":
                views = [tf.image.rot90(views[0], k) for k in range(ROTATIONS)]
            stacked = tf.stack([digits.normalize(v) for v in views], axis=1)  # (g, v, s, s, 3)
            return {"views": stacked, "labels": tf.gather(labels, index), "index": tf.cast(index, tf.int64)}

        return runtime.step_indexed_dataset(
            make_global_batch, global_batch_size=global_batch_size, input_context=context, start_step=start_step,
            seed=seed,
        )  # fmt: skip

    def augment(self, images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """One augmented view (g, s, s, 1) in [0, 1] of raw images (g, s, s, 1) (module docstring)."""
        g, s = images.shape[0], self.image_size
        seeds = tf.unstack(tf.random.experimental.stateless_split(seed, 6))
        low, high = self.crop_scale
        area = tf.random.stateless_uniform([g], seeds[0], low, high)
        log_ratio = tf.random.stateless_uniform([g], seeds[1], np.log(3 / 4), np.log(4 / 3))
        ratio = tf.exp(log_ratio)
        height = tf.minimum(1.0, tf.sqrt(area / ratio))
        width = tf.minimum(1.0, tf.sqrt(area * ratio))
        corner = tf.random.stateless_uniform([2, g], seeds[2])  # fractions of the free range
        top, left = corner[0] * (1.0 - height), corner[1] * (1.0 - width)
        boxes = tf.stack([top, left, top + height, left + width], axis=1)  # (g, 4) normalised
        views = tf.image.crop_and_resize(images, boxes, tf.range(g), [s, s], method="bilinear")  # (g, s, s, 1)
        factors = tf.random.stateless_uniform([2, g], seeds[3])
        b = 1.0 - self.brightness + 2.0 * self.brightness * factors[0]
        c = 1.0 - self.contrast + 2.0 * self.contrast * factors[1]
        bright = tf.clip_by_value(views * b[:, None, None, None], 0.0, 1.0)
        mean = tf.reduce_mean(bright, axis=[1, 2, 3], keepdims=True)
        jittered = tf.clip_by_value(c[:, None, None, None] * (bright - mean) + mean, 0.0, 1.0)
        apply = tf.random.stateless_uniform([2, g], seeds[4])
        views = tf.where((apply[0] < self.jitter_prob)[:, None, None, None], jittered, views)
        kernel = tf.constant([1.0, 2.0, 1.0]) / 4.0
        padded = tf.pad(views, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
        blurred = tf.nn.conv2d(padded, tf.reshape(tf.tensordot(kernel, kernel, 0), [3, 3, 1, 1]), 1, "VALID")
        return tf.where((apply[1] < self.blur_prob)[:, None, None, None], blurred, views)


@dataclasses.dataclass(frozen=True)
class DigitsTrainSplit:
    """The digits training split in the evaluation contract ({"images", "labels", "weight"}, un-augmented)."""

    data: DigitsSSLData

    def num_eval_examples(self) -> int:
        return self.data.num_train_examples()

    def eval_dataset(self, *, global_batch_size, input_context) -> tf.data.Dataset:
        return self.data.labelled.labelled_dataset(
            "train", global_batch_size=global_batch_size, input_context=input_context
        )
