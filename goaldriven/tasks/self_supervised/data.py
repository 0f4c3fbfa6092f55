"""ImageNet (ILSVRC-2012, TFDS) as self-supervised data: exactly resumable streams of augmented views.

Reference: thesis Section 3.6.5 (spec ch3 A4): every objective trains on ImageNet views augmented at 224 px and
downsampled to 64 px; evaluation (kNN monitor, linear evaluation) resizes to 256, centre-crops 224, resizes to 64.

Training order, sharding and resume are those of `tfds_reading` (the stream of pipeline p of P is a pure function of
(seed, step); resuming at step k skips the consumed examples undecoded). Example i of the stream has the stateless
seed e_i = fold_in((seed, p), i) there; here its views are
  mode "views":     view_j = augmentation.view(image, seed_j), (seed_0, ..., seed_{v-1}) = stateless_split(e_i, v)
  mode "rotations": x = augmentation.view(image, e_i); view_k = rot90(x, k), k = 0..3 (RotNet's label k)
Batches (per replica): {"views": (b, v, s, s, 3) float32, "labels": (b,) int32, "index": (b,) int64 (the example's
position in the training split)}; evaluation: {"images": (b, s, s, 3), "labels": (b,) int32, "weight": (b,) float32}.
"""

# b: per-replica batch, v: views, s: image side
import dataclasses
import functools

import tensorflow as tf

from goaldriven.tasks import tfds_reading
from goaldriven.tasks.self_supervised import augment

MODES = ("views", "rotations")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ImageNetSSLData:
    """ImageNet for the self-supervised objectives (tasks/self_supervised/base.py data contract).

    Fields:
      data_dir, manual_dir, download: as `image_datasets.ImageNetData` (TFDS location; prepare from the tars once).
      augmentation: the objective's recipe (augment.SIMCLR, augment.MOCO_V2, ...); its output_size is the image size.
      num_views: augmented views per example in mode "views" (mode "rotations" always gives RotNet's 4).
      mode: "views" (independent augmentations) or "rotations" (the 4 rotations of one augmented view).
      eval_resize_size, eval_crop_size: the evaluation transform (256, 224), then resized to the output size.
      train_split, eval_split, num_chunks, shuffle_window, num_classes: as `image_datasets.ImageNetData`.
    """

    augmentation: augment.ViewAugmentation
    data_dir: str | None = None
    manual_dir: str | None = None
    download: bool = False
    num_views: int = 2
    mode: str = "views"
    eval_resize_size: int = 256
    eval_crop_size: int = 224
    train_split: str = "train"
    eval_split: str = "validation"
    num_chunks: int = 16
    shuffle_window: int | None = 8192
    num_classes: int = 1000

    def __post_init__(self):
        if not isinstance(self.augmentation, augment.ViewAugmentation):
            raise TypeError(f"augmentation must be an augment.ViewAugmentation. Received: {self.augmentation!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}. Received: {self.mode!r}")
        if not isinstance(self.num_views, int) or self.num_views < 1:
            raise ValueError(f"num_views must be a positive int. Received: {self.num_views!r}")
        if not 1 <= self.eval_crop_size <= self.eval_resize_size:
            raise ValueError(
                "need 1 <= eval_crop_size <= eval_resize_size. "
                f"Received: {self.eval_crop_size}, {self.eval_resize_size}"
            )

    @property
    def image_size(self) -> int:
        return self.augmentation.output_size

    @property
    def pixel_mean(self) -> tuple[float, float, float]:
        return self.augmentation.mean

    @property
    def pixel_std(self) -> tuple[float, float, float]:
        return self.augmentation.std

    @property
    def views_per_example(self) -> int:
        return augment.NUM_ROTATIONS if self.mode == "rotations" else self.num_views

    def views(self, image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """The example's views (v, s, s, 3) from its encoded image and stream seed (module docstring)."""
        if self.mode == "rotations":
            return augment.rotations(self.augmentation.view(image, seed))
        seeds = tf.random.experimental.stateless_split(seed, self.num_views)  # (v, 2)
        side = self.image_size
        return tf.map_fn(  # traces the view once (a loop), not once per view
            lambda s: self.augmentation.view(image, s), seeds, fn_output_signature=tf.TensorSpec((side, side, 3))
        )

    def train_dataset(self, *, global_batch_size, input_context, start_step, seed) -> tf.data.Dataset:
        """Endless {"views", "labels", "index"} batches of this input pipeline from `start_step` on."""
        side = self.image_size
        return tfds_reading.tfds_pipeline(
            self._builder(),
            split=self.train_split,
            training=True,
            preprocess=self.views,
            image_shape=(self.views_per_example, side, side, 3),
            global_batch_size=global_batch_size,
            input_context=input_context,
            start_step=start_step,
            seed=seed,
            num_chunks=self.num_chunks,
            shuffle_window=self.shuffle_window,
            image_key="views",
            with_index=True,
        )

    def eval_dataset(self, *, global_batch_size, input_context) -> tf.data.Dataset:
        """One padded pass over `eval_split`: {"images", "labels", "weight"} batches (evaluation transform)."""
        side = self.image_size
        preprocess = functools.partial(
            augment.evaluation_view,
            resize_size=self.eval_resize_size,
            crop_size=self.eval_crop_size,
            output_size=side,
            mean=self.pixel_mean,
            std=self.pixel_std,
        )
        return tfds_reading.tfds_pipeline(
            self._builder(),
            split=self.eval_split,
            training=False,
            preprocess=preprocess,
            image_shape=(side, side, 3),
            global_batch_size=global_batch_size,
            input_context=input_context,
            start_step=0,
            seed=0,
            num_chunks=self.num_chunks,
            shuffle_window=self.shuffle_window,
        )

    def num_train_examples(self) -> int:
        return tfds_reading.num_examples(tfds_reading.IMAGENET, self.train_split, data_dir=self.data_dir)

    def num_eval_examples(self) -> int:
        return tfds_reading.num_examples(tfds_reading.IMAGENET, self.eval_split, data_dir=self.data_dir)

    def _builder(self):
        return tfds_reading.tfds_builder(
            tfds_reading.IMAGENET, data_dir=self.data_dir, download=self.download, manual_dir=self.manual_dir
        )
