"""The reconstruction objectives of thesis Chapter 3: the sparse autoencoder and depth prediction.

Reference: thesis Section 3.6.5, Eq. 3.12 (spec ch3 A4.2, A4.3; Ambiguities 10 and 17). Models: a plan's encoder and
its mirrored decoder (models/mirrored.py, models/mirrored_autoencoder.py); AlexNet-BN's feature stack
(`mirrored.alexnet_plan()`) by default, StreamNets when their plans exist.

Sparse autoencoder (x: the normalised (h, w, 3) input image, f(x) its reconstruction, v the (d,) embedding):

    thesis (Eq. 3.12):   L = (1 / (2 h w)) ||f(x) - x||^2 + (lambda / d) ||v||_1,    d = 128, lambda = 5e-4
    reference code [C]:  L = mean over (h, w, c) of (f(x) - x)^2 + lambda mean|v|

  The two differ only in the reconstruction term: the thesis' sums the squared error over channels and halves it,
  i.e. 3/2 of the reference's per-element mean for RGB (Ambiguity 10). `reconstruction_normalization="thesis"` (the
  default: where the thesis states a formula it wins, spec preamble) or "mean" (the reference code). Each is averaged
  over the batch. Metrics: "reconstruction_mse", the per-element mean squared error, and "l1", mean |v|
  (unweighted), whatever the normalisation.
  Recipe (spec A4.2; the loop and gin own it): SGD momentum 0.9, weight decay 5e-4 (the TF1 lambda of the model's
  kernels, `weight_decay`), lr 0.01 (six-stream StreamNet 0.001) x 0.1 at epochs 30, 60, 90, batch 256, 100 epochs.

Depth prediction (hour-glass without the bottleneck, a final conv 3 -> 1):

    target = (depth - mean(depth)) / std(depth)    per map, over its pixels (population std, floored at 1e-6)
    L = mean over the batch and pixels of (prediction - target)^2
    Metric: "depth_mse" (the same MSE, reported beside the loop's loss, which it equals).
  Recipe (spec A4.3): SGD momentum 0.9, weight decay 1e-4, lr 1e-4 x 0.1 at epochs 15, 30, 45, batch 256, 50 epochs.

Data: the autoencoder reads an SSL dataset with one view per example (batch["views"][:, 0],
tasks/self_supervised/base.py) or any dataset of {"images"}; depth prediction reads `depth_data.DepthData`
({"images", "depth"}). Both are pure functions of (seed, step), so resume is exact.
"""

# b: batch, h/w: space, c: channels, d: embedding
from typing import Any

import keras
import tensorflow as tf

from goaldriven.models import mirrored, mirrored_autoencoder
from goaldriven.tasks import base
from goaldriven.tasks.self_supervised import base as ssl_base

L1_WEIGHT = 5e-4  # lambda of Eq. 3.12
NORMALIZATIONS = ("thesis", "mean")
DEPTH_STD_FLOOR = 1e-6


def sparse_autoencoder_loss(
    reconstruction: tf.Tensor,
    images: tf.Tensor,
    embedding: tf.Tensor,
    *,
    l1_weight: float = L1_WEIGHT,
    normalization: str = "thesis",
) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """(Eq. 3.12 averaged over the batch, {"reconstruction_mse", "l1"}) in float32 (module docstring)."""
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}. Received: {normalization!r}")
    squared = tf.square(tf.cast(reconstruction, tf.float32) - tf.cast(images, tf.float32))  # (b, h, w, c)
    mse = tf.reduce_mean(squared)
    if normalization == "thesis":
        h, w = squared.shape[1], squared.shape[2]
        term = tf.reduce_mean(tf.reduce_sum(squared, axis=[1, 2, 3])) / (2.0 * h * w)
    else:
        term = mse
    l1 = tf.reduce_mean(tf.abs(tf.cast(embedding, tf.float32)))  # (1 / d) ||v||_1, batch mean
    return term + l1_weight * l1, {"reconstruction_mse": mse, "l1": l1}


def normalize_depth(depth: tf.Tensor) -> tf.Tensor:
    """Each map (b, h, w, 1) shifted and scaled to zero mean and unit (population) std over its pixels."""
    depth = tf.cast(depth, tf.float32)
    mean, variance = tf.nn.moments(depth, axes=[1, 2, 3], keepdims=True)
    return (depth - mean) / tf.maximum(tf.sqrt(variance), DEPTH_STD_FLOOR)


def depth_loss(prediction: tf.Tensor, depth: tf.Tensor) -> tf.Tensor:
    """Mean squared error between the prediction (b, h, w, 1) and the per-map normalised depth (b, h, w, 1)."""
    return tf.reduce_mean(tf.square(tf.cast(prediction, tf.float32) - normalize_depth(depth)))


def batch_images(batch: dict) -> tf.Tensor:
    """The (b, s, s, 3) images of a batch: its "images", or the single view of an SSL batch."""
    if "images" in batch:
        return batch["images"]
    return ssl_base.views(batch, 1)[:, 0]


class _ReconstructionTask(base.Task):
    """What both objectives share: a dataset with image_size / pixel_mean / pixel_std, a plan, weight decay."""

    def __init__(self, *, dataset: Any, plan: mirrored.Plan | None, weight_decay: float, learning_rule: Any):
        if not callable(getattr(dataset, "train_dataset", None)):
            raise TypeError(f"dataset needs a train_dataset() method; received {dataset!r}.")
        if not isinstance(getattr(dataset, "image_size", None), int):
            raise TypeError(f"dataset needs an int image_size (pixels); received {dataset!r}.")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0 (a TF1 lambda). Received: {weight_decay}")
        self.dataset = dataset
        self.plan = mirrored.alexnet_plan() if plan is None else plan
        self.weight_decay = float(weight_decay)
        self.learning_rule = learning_rule

    @property
    def input_spec(self) -> base.InputSpec | None:
        if not hasattr(self.dataset, "pixel_mean") or not hasattr(self.dataset, "pixel_std"):
            return None
        return base.InputSpec(self.dataset.image_size, self.dataset.pixel_mean, self.dataset.pixel_std)

    def train_dataset(self, *, global_batch_size, input_context, start_step, seed):
        return self.dataset.train_dataset(
            global_batch_size=global_batch_size, input_context=input_context, start_step=start_step, seed=seed
        )


class SparseAutoencoderTask(_ReconstructionTask):
    """The sparse autoencoder of Eq. 3.12 (module docstring).

    Args:
      dataset: an SSL dataset with one view per example, or a dataset of {"images"} (with `image_size`).
      plan: the encoder plan (default: `mirrored.alexnet_plan()`).
      embedding_dim: width d of the embedding v.
      l1_weight: lambda.
      reconstruction_normalization: "thesis" (Eq. 3.12) or "mean" (the reference code's per-element mean).
      weight_decay: TF1 lambda on every kernel of the model.
      learning_rule: None (backprop); any other rule raises (no aligned transposed conv).
    """

    name = "sparse_autoencoder"

    def __init__(
        self,
        *,
        dataset: Any,
        plan: mirrored.Plan | None = None,
        embedding_dim: int = mirrored_autoencoder.EMBEDDING_DIM,
        l1_weight: float = L1_WEIGHT,
        reconstruction_normalization: str = "thesis",
        weight_decay: float = 5e-4,
        learning_rule: Any = None,
    ):
        super().__init__(dataset=dataset, plan=plan, weight_decay=weight_decay, learning_rule=learning_rule)
        if reconstruction_normalization not in NORMALIZATIONS:
            raise ValueError(
                f"reconstruction_normalization must be one of {NORMALIZATIONS}. Received: "
                f"{reconstruction_normalization!r}"
            )
        if l1_weight < 0:
            raise ValueError(f"l1_weight must be >= 0. Received: {l1_weight}")
        self.embedding_dim = embedding_dim
        self.l1_weight = float(l1_weight)
        self.reconstruction_normalization = reconstruction_normalization

    @property
    def metric_names(self) -> tuple[str, ...]:
        return ("reconstruction_mse", "l1")

    def build_model(self) -> keras.Model:
        return mirrored_autoencoder.build_sparse_autoencoder(
            self.plan,
            image_size=self.dataset.image_size,
            embedding_dim=self.embedding_dim,
            weight_decay=self.weight_decay,
            learning_rule=self.learning_rule,
        )

    def compute_loss(self, model, batch, *, training):
        images = batch_images(batch)
        out = model(images, training=training)
        return sparse_autoencoder_loss(
            out["reconstruction"],
            images,
            out["embedding"],
            l1_weight=self.l1_weight,
            normalization=self.reconstruction_normalization,
        )


class DepthPredictionTask(_ReconstructionTask):
    """Depth prediction with the hour-glass (module docstring).

    Args:
      dataset: a `depth_data.DepthData` (or any dataset of {"images", "depth"} with `image_size`).
      plan: the encoder plan (default: `mirrored.alexnet_plan()`).
      head_kernel_size: kernel of the final conv 3 -> 1 (not stated in the thesis).
      weight_decay: TF1 lambda on every kernel of the model.
      learning_rule: None (backprop); any other rule raises (no aligned transposed conv).
    """

    name = "depth_prediction"

    def __init__(
        self,
        *,
        dataset: Any,
        plan: mirrored.Plan | None = None,
        head_kernel_size: int = 1,
        weight_decay: float = 1e-4,
        learning_rule: Any = None,
    ):
        super().__init__(dataset=dataset, plan=plan, weight_decay=weight_decay, learning_rule=learning_rule)
        self.head_kernel_size = head_kernel_size

    @property
    def metric_names(self) -> tuple[str, ...]:
        return ("depth_mse",)

    def build_model(self) -> keras.Model:
        return mirrored_autoencoder.build_depth_hourglass(
            self.plan,
            image_size=self.dataset.image_size,
            head_kernel_size=self.head_kernel_size,
            weight_decay=self.weight_decay,
            learning_rule=self.learning_rule,
        )

    def compute_loss(self, model, batch, *, training):
        if "depth" not in batch:
            raise KeyError(f"a depth batch needs 'images' and 'depth'; received keys {sorted(batch)}.")
        out = model(batch["images"], training=training)
        loss = depth_loss(out["prediction"], batch["depth"])
        return loss, {"depth_mse": loss}
