"""Handwritten digits (scikit-learn's embedded `load_digits`) as a small image-classification task, no download.

Reference: the small-scale stand-in for thesis Table 5.4 (spec ch5 13: "small end-to-end demonstrations on data that
ships with packages, e.g. sklearn.datasets.load_digits"). 1,797 grey 8 x 8 images of the digits 0-9 (pixel values
0..16), about 180 per class.

Preprocessing (the same for training and evaluation):
  x = pixels / 16                                   in [0, 1]
  x = bilinear_resize(x, image_size)                TF's half-pixel-centred bilinear resize, no antialiasing
  x = stack([x, x, x], channel axis)                3 identical channels (the library's image models take RGB)
  x = (x - MEAN) / STD,  MEAN = 0.5, STD = 0.25     fixed constants (not split statistics): background 0 -> -2

Split: stratified and fixed by `split_seed`: class c's n_c examples are permuted with
numpy.random.default_rng(split_seed) (classes in order 0..9) and the first round(test_fraction * n_c) go to test; the
rest is the training split, optionally cut to `train_examples` (the same count per class, remainder to the lowest
classes, each class's first examples of its permutation). Both splits are kept in load_digits order.

Training stream (every choice stateless, so global batch k is a pure function of (seed, k); exact resume):
  example i of the stream (i = k * global_batch + j) is training example perm_e[i mod N], e = i div N, where perm_e is
  a stateless shuffle of range(N) seeded by fold_in((seed, 0), e): every epoch visits each training example once.
  augmentation: a random shift of dy, dx in [-max_shift, max_shift] output pixels (uniform, per example; seed
  fold_in((seed, 1), k)), the uncovered border filled with background (raw 0), applied before normalisation.
Evaluation: input pipeline p of P reads test examples [p N / P, (p + 1) N / P) in order, padded with weight-0 examples
to the same number of batches on every pipeline, so every test example is seen exactly once with weight 1.

Batches: {"images": (b, s, s, 3) float32, "labels": (b,) int32[, "weight": (b,) float32]}, static shapes.
"""

# n: examples, b: per-replica batch, g: global batch, s: image side
import dataclasses
import functools

import numpy as np
import tensorflow as tf

from goaldriven import runtime
from goaldriven.tasks import image_classification, pipeline_math

NUM_CLASSES = 10
SOURCE_SIZE = 8
MEAN, STD = 0.5, 0.25
_ORDER, _AUGMENT = 0, 1


@functools.cache
def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    """(images (n, 8, 8) float32 in [0, 1], labels (n,) int32) in load_digits order."""
    try:
        from sklearn import datasets
    except ImportError as error:
        raise ImportError(
            "DigitsData needs scikit-learn, which embeds the digits data (no download): pip install scikit-learn."
        ) from error
    digits = datasets.load_digits()
    return (digits.images / 16.0).astype(np.float32), digits.target.astype(np.int32)


def stratified_split(
    labels: np.ndarray, *, test_fraction: float, split_seed: int, train_examples: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, test indices), each sorted, as described in the module docstring."""
    rng = np.random.default_rng(split_seed)
    train, test = [], []
    classes = np.unique(labels)
    for c in classes:
        members = rng.permutation(np.flatnonzero(labels == c))
        n_test = int(round(test_fraction * len(members)))
        test.append(members[:n_test])
        train.append(members[n_test:])
    if train_examples is not None:
        per_class, extra = divmod(train_examples, len(classes))
        counts = [per_class + (k < extra) for k in range(len(classes))]
        short = [int(c) for c, idx, k in zip(classes, train, counts) if len(idx) < k]
        if short:
            raise ValueError(
                f"train_examples={train_examples} needs {max(counts)} training examples of each class, but classes "
                f"{short} have fewer; lower train_examples or test_fraction."
            )
        train = [idx[:k] for idx, k in zip(train, counts)]
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


@dataclasses.dataclass(frozen=True)
class DigitsData:
    """The digits data for `ImageClassificationTask` (see the module docstring).

    Args:
      image_size: output side s in pixels (bilinear upsampling of the 8 x 8 originals).
      test_fraction: fraction of each class held out for evaluation.
      split_seed: seed of the stratified split (fixed, independent of the training seed).
      train_examples: keep only this many training examples (stratified; None: the whole training split).
      max_shift: training augmentation, random shifts of up to this many output pixels (0: none).
    """

    image_size: int = 16
    test_fraction: float = 0.25
    split_seed: int = 0
    train_examples: int | None = None
    max_shift: int = 1
    num_classes: int = NUM_CLASSES

    def __post_init__(self):
        if not isinstance(self.image_size, int) or self.image_size < 2:
            raise ValueError(f"image_size must be an int >= 2 (pixels). Received: {self.image_size!r}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1). Received: {self.test_fraction!r}")
        if self.train_examples is not None and (not isinstance(self.train_examples, int) or self.train_examples < 10):
            raise ValueError(
                f"train_examples must be None or an int >= 10 (one per class). Received: {self.train_examples!r}"
            )
        if not isinstance(self.max_shift, int) or not 0 <= self.max_shift < self.image_size:
            raise ValueError(f"max_shift must be an int in [0, image_size). Received: {self.max_shift!r}")
        if self.num_classes != NUM_CLASSES:
            raise ValueError(f"the digits have {NUM_CLASSES} classes; leave num_classes at {NUM_CLASSES}.")

    @functools.cached_property
    def _split(self) -> tuple[np.ndarray, np.ndarray]:
        _, labels = _load_digits()
        return stratified_split(
            labels, test_fraction=self.test_fraction, split_seed=self.split_seed, train_examples=self.train_examples
        )

    @property
    def train_indices(self) -> np.ndarray:
        """Indices into load_digits() of the training split (sorted)."""
        return self._split[0]

    @property
    def test_indices(self) -> np.ndarray:
        """Indices into load_digits() of the test split (sorted)."""
        return self._split[1]

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(raw upsampled images (n, s, s, 1) float32 in [0, 1], labels (n,) int32) of "train" or "test"."""
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test'. Received: {split!r}")
        images, labels = _load_digits()
        index = self.train_indices if split == "train" else self.test_indices
        size = (self.image_size, self.image_size)
        raw = tf.image.resize(images[index, :, :, None], size, method="bilinear", antialias=False)  # (n, s, s, 1)
        return raw.numpy(), labels[index]

    def num_train_examples(self) -> int:
        return len(self.train_indices)

    def num_eval_examples(self) -> int:
        return len(self.test_indices)

    def train_dataset(self, *, global_batch_size, input_context, start_step, seed) -> tf.data.Dataset:
        context = input_context or tf.distribute.InputContext()
        runtime.check_global_batch_size(global_batch_size, context.num_replicas_in_sync)
        if start_step < 0:
            raise ValueError(f"start_step must be >= 0. Received: {start_step}")
        raw, labels = self.arrays("train")
        raw, labels = tf.constant(raw), tf.constant(labels)
        n = int(labels.shape[0])
        s, shift = self.image_size, self.max_shift

        def make_global_batch(step, step_seed):
            base_seed = tf.stack([step_seed[0], tf.constant(0, tf.int64)])
            index = stream_indices(step, base_seed, global_batch_size=global_batch_size, num_examples=n)  # (g,)
            images = tf.gather(raw, index)  # (g, s, s, 1)
            if shift:
                offsets = tf.random.stateless_uniform(
                    [2, global_batch_size],
                    pipeline_math.fold_seed(base_seed, _AUGMENT, step),
                    minval=0,
                    maxval=2 * shift + 1,
                    dtype=tf.int32,
                )  # (2, g): top-left corner of the crop in the padded image
                padded = tf.pad(images, [[0, 0], [shift, shift], [shift, shift], [0, 0]])  # (g, s + 2m, s + 2m, 1)
                rows = offsets[0][:, None] + tf.range(s)[None, :]  # (g, s)
                cols = offsets[1][:, None] + tf.range(s)[None, :]
                images = tf.gather(tf.gather(padded, rows, batch_dims=1), cols, axis=2, batch_dims=1)
            return {"images": normalize(images), "labels": tf.gather(labels, index)}

        return runtime.step_indexed_dataset(
            make_global_batch,
            global_batch_size=global_batch_size,
            input_context=context,
            start_step=start_step,
            seed=seed,
        )

    def eval_dataset(self, *, global_batch_size, input_context) -> tf.data.Dataset:
        return self.labelled_dataset("test", global_batch_size=global_batch_size, input_context=input_context)

    def labelled_dataset(self, split: str, *, global_batch_size, input_context) -> tf.data.Dataset:
        """One padded pass over `split` ("train" or "test") without augmentation, {"images", "labels", "weight"}."""
        context = input_context or tf.distribute.InputContext()
        runtime.check_global_batch_size(global_batch_size, context.num_replicas_in_sync)
        per_replica = context.get_per_replica_batch_size(global_batch_size)
        pipelines, pipeline_id = context.num_input_pipelines, context.input_pipeline_id
        pipeline_batch = per_replica * (context.num_replicas_in_sync // pipelines)
        raw, labels = self.arrays(split)
        total = len(labels)
        begin, end = pipeline_id * total // pipelines, (pipeline_id + 1) * total // pipelines
        padded = (
            pipeline_math.ceil_div(pipeline_math.ceil_div(total, pipelines), pipeline_batch) * pipeline_batch
        )  # same batches everywhere
        pad = padded - (end - begin)
        images = np.concatenate([raw[begin:end], np.zeros((pad,) + raw.shape[1:], np.float32)])
        examples = {
            "images": images,
            "labels": np.concatenate([labels[begin:end], np.zeros(pad, np.int32)]),
            "weight": np.concatenate([np.ones(end - begin, np.float32), np.zeros(pad, np.float32)]),
        }
        dataset = tf.data.Dataset.from_tensor_slices(examples).batch(per_replica, drop_remainder=True)
        dataset = dataset.map(lambda batch: {**batch, "images": normalize(batch["images"])})
        return dataset.prefetch(tf.data.AUTOTUNE)


class DigitsTask(image_classification.ImageClassificationTask):
    """Digits classification (10 classes); `dataset` defaults to `DigitsData()` (16 px)."""

    name = "digits"
    pixel_mean, pixel_std = MEAN, STD

    def __init__(self, *, model_fn, dataset=None, eval_batch_size=150, loss_over="decoded", label_smoothing=0.0):
        super().__init__(
            model_fn=model_fn,
            dataset=dataset if dataset is not None else DigitsData(),
            eval_batch_size=eval_batch_size,
            loss_over=loss_over,
            label_smoothing=label_smoothing,
        )


def stream_indices(step: tf.Tensor, base_seed: tf.Tensor, *, global_batch_size: int, num_examples: int) -> tf.Tensor:
    """Training-split indices (g,) of global batch `step`: example i of the stream is perm_e[i mod N], e = i div N,
    perm_e a stateless shuffle of range(N) seeded by fold_in(base_seed, 0, e) (module docstring)."""
    n = num_examples
    stream = step * global_batch_size + tf.range(global_batch_size, dtype=tf.int64)  # (g,)
    epoch, position = stream // n, stream % n
    first = epoch[0]
    perms = tf.stack(
        [
            tf.random.experimental.stateless_shuffle(tf.range(n), pipeline_math.fold_seed(base_seed, _ORDER, first + e))
            for e in range(global_batch_size // n + 2)  # the epochs one global batch can touch
        ]
    )  # (epochs, n)
    return tf.gather_nd(perms, tf.stack([epoch - first, position], axis=1))


def normalize(raw: tf.Tensor) -> tf.Tensor:
    """(..., 1) raw pixels in [0, 1] -> (..., 3) normalised identical channels."""
    return tf.repeat((raw - MEAN) / STD, 3, axis=-1)
