"""A synthetic CIFAR-like image set that needs no download: 10 classes of 32 x 32 x 3 procedurally generated images,
for training the Chapter 6 KNets offline (thesis Section 6.3.8; spec ch5 13: small demonstrations on generated data).
A stand-in for CIFAR-10, not a reproduction of it.

Class c in 0..9 fixes a shape s = c mod 5 (disk, square, ring, plus, upward triangle: all symmetric under the
left-right flip of the augmentation) and a stripe orientation o = c div 5 (horizontal or vertical stripes inside the
shape), and biases the hue. Every image, independently (n: examples, all draws uniform unless stated):
  background  grey level g in [0.25, 0.75] plus a class-independent distractor grating (random orientation in
              [0, pi), frequency in [0.08, 0.25] cycles/px, amplitude in [0, 0.15])
  object      the class shape with centre in the middle 16 x 16 px and radius r in [5, 11] px, filled with the colour
              v (1 - s + s rgb(hue)), hue = c / 10 + U(-hue_jitter, hue_jitter) (mod 1), s in [0.4, 1], v in [0.5, 1],
              modulated by stripes 1 - a + a (1 + cos(2 pi f t + phase)) / 2 along y (o = 0) or x (o = 1), f in
              [0.12, 0.3] cycles/px, a in [0.3, 0.8]
  distractor  with probability 1/2 a second, smaller shape (r in [3, 6]) of a random kind and colour, no stripes
  noise       x = clip(x + N(0, noise^2), 0, 1)
The hue alone is ambiguous (hue_jitter 0.12 > half the 0.1 spacing), so a classifier has to combine colour, shape and
stripe orientation. Examples are a pure function of (data_seed, split, index): numpy.random.default_rng((data_seed,
split id)) draws the parameters of the split's examples in order; labels cycle 0..9 (balanced), then both splits are
permuted by the same generator.

Preprocessing: x = (pixels - 0.5) / 0.25. Training stream (as tasks/digits.py, exact resume): global batch k holds
training examples `digits.stream_indices(k, ...)` (a seeded permutation per epoch), augmented (augmentation
"shift_flip", the Chapter 6 CIFAR-10 recipe: image_preprocessing.random_shift_flip with seed fold_in((seed, 0), 1, k);
"none": no augmentation). Evaluation: one pass over the test split, padded with weight-0 examples to whole batches.
Batches: {"images": (b, 32, 32, 3) float32, "labels": (b,) int32[, "weight": (b,) float32]}.
"""

# n: examples, b: per-replica batch, g: global batch, s: image side
import dataclasses
import functools

import numpy as np
import tensorflow as tf

from goaldriven import runtime
from goaldriven.tasks import digits, image_classification, pipeline_math
from goaldriven.tasks import image_preprocessing as preprocessing

NUM_CLASSES = 10
MEAN, STD = 0.5, 0.25
SHAPES = ("disk", "square", "ring", "plus", "triangle")
_AUGMENT = 1
_SPLIT_IDS = {"train": 0, "test": 1}


def _hsv_to_rgb(hue, saturation, value):
    """(n,) arrays -> (n, 3) RGB in [0, 1] (standard HSV cone)."""
    k = (hue[:, None] * 6.0 + np.array([5.0, 3.0, 1.0])) % 6.0
    rgb = 1.0 - np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)  # pure hue
    return value[:, None] * (1.0 - saturation[:, None] + saturation[:, None] * rgb)


def _shape_masks(kind, cy, cx, radius, size):
    """(n, s, s) bool masks of shapes `kind` (n,) in 0..4 centred at (cy, cx) (n,) with radius (n,)."""
    grid = np.arange(size, dtype=np.float64) + 0.5
    dy = grid[None, :, None] - cy[:, None, None]  # (n, s, 1)
    dx = grid[None, None, :] - cx[:, None, None]  # (n, 1, s)
    r = radius[:, None, None]
    dist = np.sqrt(dy**2 + dx**2)
    masks = np.stack(
        [
            dist <= r,  # disk
            np.maximum(np.abs(dy), np.abs(dx)) <= 0.85 * r,  # square
            (dist <= r) & (dist >= 0.55 * r),  # ring
            ((np.abs(dy) <= 0.3 * r) & (np.abs(dx) <= r)) | ((np.abs(dx) <= 0.3 * r) & (np.abs(dy) <= r)),  # plus
            (np.abs(dy) <= r) & (np.abs(dx) <= (dy + r) / 2),  # upward triangle
        ]
    )  # (5, n, s, s)
    return np.take_along_axis(masks, kind[None, :, None, None], axis=0)[0]


@functools.cache
def generate(num_examples: int, *, data_seed: int, split: str, hue_jitter: float, noise: float, size: int = 32):
    """(images (n, s, s, 3) float32 in [0, 1], labels (n,) int32) of one split (module docstring)."""
    rng = np.random.default_rng((data_seed, _SPLIT_IDS[split]))
    n, u = num_examples, lambda lo, hi, shape=None: rng.uniform(lo, hi, num_examples if shape is None else shape)
    labels = np.arange(n) % NUM_CLASSES
    grid = np.arange(size, dtype=np.float64) + 0.5
    yy, xx = grid[None, :, None], grid[None, None, :]
    # Background: grey level and a class-independent grating.
    theta, freq, phase = u(0, np.pi), u(0.08, 0.25), u(0, 2 * np.pi)
    along = np.cos(theta)[:, None, None] * yy + np.sin(theta)[:, None, None] * xx
    grey = u(0.25, 0.75)[:, None, None] + u(0, 0.15)[:, None, None] * np.cos(
        2 * np.pi * freq[:, None, None] * along + phase[:, None, None]
    )
    image = np.repeat(grey[..., None], 3, axis=-1)  # (n, s, s, 3)
    # The object: class shape, class-biased hue, class stripe orientation.
    hue = (labels / NUM_CLASSES + u(-hue_jitter, hue_jitter)) % 1.0
    colour = _hsv_to_rgb(hue, u(0.4, 1.0), u(0.5, 1.0))  # (n, 3)
    centre = size / 2.0
    mask = _shape_masks(labels % 5, u(centre - 8, centre + 8), u(centre - 8, centre + 8), u(5, 11), size)
    coordinate = np.where((labels // 5 == 0)[:, None, None], yy + 0 * xx, xx + 0 * yy)  # (n, s, s)
    amplitude, stripe_freq, stripe_phase = u(0.3, 0.8), u(0.12, 0.3), u(0, 2 * np.pi)
    stripes = (1 + np.cos(2 * np.pi * stripe_freq[:, None, None] * coordinate + stripe_phase[:, None, None])) / 2
    shade = 1.0 - amplitude[:, None, None] + amplitude[:, None, None] * stripes
    image = np.where(mask[..., None], colour[:, None, None, :] * shade[..., None], image)
    # A smaller distractor shape in half of the images.
    distractor = _shape_masks(rng.integers(0, 5, n), u(4, size - 4), u(4, size - 4), u(3, 6), size)
    distractor &= (u(0, 1) < 0.5)[:, None, None]
    other = _hsv_to_rgb(u(0, 1), u(0.4, 1.0), u(0.5, 1.0))
    image = np.where(distractor[..., None], other[:, None, None, :], image)
    image = np.clip(image + rng.normal(0.0, noise, image.shape), 0.0, 1.0)
    order = rng.permutation(n)
    return image[order].astype(np.float32), labels[order].astype(np.int32)


@dataclasses.dataclass(frozen=True)
class SyntheticImageData:
    """The synthetic images for `ImageClassificationTask` (module docstring).

    Args:
      num_train, num_test: examples per split (labels balanced over the 10 classes).
      data_seed: seed of the generated images (independent of the training-order seed).
      hue_jitter: half-width of the hue noise around the class hue (spacing 0.1; larger = harder).
      noise: std of the additive pixel noise.
      augmentation: "shift_flip" (Chapter 6 CIFAR-10: random shift up to `shift_fraction` of the side, then flip) or
        "none".
      shift_fraction: the shift range (Keras example: 0.1).
    """

    num_train: int = 5000
    num_test: int = 1000
    data_seed: int = 0
    hue_jitter: float = 0.12
    noise: float = 0.1
    augmentation: str = "shift_flip"
    shift_fraction: float = 0.1
    num_classes: int = NUM_CLASSES
    image_size: int = 32

    def __post_init__(self):
        for name in ("num_train", "num_test"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int. Received: {value!r}")
        if self.augmentation not in ("shift_flip", "none"):
            raise ValueError(f"augmentation must be 'shift_flip' or 'none'. Received: {self.augmentation!r}")
        if self.num_classes != NUM_CLASSES or self.image_size != 32:
            raise ValueError(f"the synthetic set has {NUM_CLASSES} classes of 32 px images; leave those fields.")
        if not (0 <= self.hue_jitter <= 0.5 and self.noise >= 0):
            raise ValueError(f"need 0 <= hue_jitter <= 0.5 and noise >= 0. Received: {self.hue_jitter}, {self.noise}")

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(raw images (n, 32, 32, 3) float32 in [0, 1], labels (n,) int32) of "train" or "test"."""
        if split not in _SPLIT_IDS:
            raise ValueError(f"split must be 'train' or 'test'. Received: {split!r}")
        count = self.num_train if split == "train" else self.num_test
        return generate(count, data_seed=self.data_seed, split=split, hue_jitter=self.hue_jitter, noise=self.noise)

    def num_train_examples(self) -> int:
        return self.num_train

    def num_eval_examples(self) -> int:
        return self.num_test

    def train_dataset(self, *, global_batch_size, input_context, start_step, seed) -> tf.data.Dataset:
        context = input_context or tf.distribute.InputContext()
        runtime.check_global_batch_size(global_batch_size, context.num_replicas_in_sync)
        if start_step < 0:
            raise ValueError(f"start_step must be >= 0. Received: {start_step}")
        raw, labels = (tf.constant(a) for a in self.arrays("train"))

        def make_global_batch(step, step_seed):
            base_seed = tf.stack([step_seed[0], tf.constant(0, tf.int64)])
            index = digits.stream_indices(
                step, base_seed, global_batch_size=global_batch_size, num_examples=self.num_train
            )
            images = tf.gather(raw, index)  # (g, 32, 32, 3)
            if self.augmentation == "shift_flip":
                seed = pipeline_math.fold_seed(base_seed, _AUGMENT, step)
                images = preprocessing.random_shift_flip(images, seed, shift_fraction=self.shift_fraction)
            return {"images": normalize(images), "labels": tf.gather(labels, index)}

        return runtime.step_indexed_dataset(
            make_global_batch,
            global_batch_size=global_batch_size,
            input_context=context,
            start_step=start_step,
            seed=seed,
        )

    def eval_dataset(self, *, global_batch_size, input_context) -> tf.data.Dataset:
        """One padded pass over the test split, {"images", "labels", "weight"} (module docstring)."""
        context = input_context or tf.distribute.InputContext()
        runtime.check_global_batch_size(global_batch_size, context.num_replicas_in_sync)
        per_replica = context.get_per_replica_batch_size(global_batch_size)
        pipelines, pipeline_id = context.num_input_pipelines, context.input_pipeline_id
        pipeline_batch = per_replica * (context.num_replicas_in_sync // pipelines)
        raw, labels = self.arrays("test")
        total = len(labels)
        begin, end = pipeline_id * total // pipelines, (pipeline_id + 1) * total // pipelines
        ceil_div = pipeline_math.ceil_div
        pad = ceil_div(ceil_div(total, pipelines), pipeline_batch) * pipeline_batch - (end - begin)
        examples = {
            "images": np.concatenate([raw[begin:end], np.full((pad,) + raw.shape[1:], MEAN, np.float32)]),
            "labels": np.concatenate([labels[begin:end], np.zeros(pad, np.int32)]),
            "weight": np.concatenate([np.ones(end - begin, np.float32), np.zeros(pad, np.float32)]),
        }
        dataset = tf.data.Dataset.from_tensor_slices(examples).batch(per_replica, drop_remainder=True)
        return dataset.map(lambda batch: {**batch, "images": normalize(batch["images"])}).prefetch(tf.data.AUTOTUNE)


class SyntheticImagesTask(image_classification.ImageClassificationTask):
    """Classification of the synthetic CIFAR-like images; `dataset` defaults to `SyntheticImageData()`."""

    name = "cifar_synthetic"
    pixel_mean, pixel_std = MEAN, STD

    def __init__(self, *, model_fn, dataset=None, eval_batch_size=500, loss_over="decoded", label_smoothing=0.0):
        super().__init__(
            model_fn=model_fn,
            dataset=dataset if dataset is not None else SyntheticImageData(),
            eval_batch_size=eval_batch_size,
            loss_over=loss_over,
            label_smoothing=label_smoothing,
        )


def normalize(raw: tf.Tensor) -> tf.Tensor:
    """Pixels in [0, 1] -> (pixels - 0.5) / 0.25."""
    return (tf.cast(raw, tf.float32) - MEAN) / STD
