"""Image classification (ImageNet, CIFAR-10) as a `Task`: softmax cross-entropy, top-1 / top-5, full-split evaluation.

Reference: thesis Section 2.5.1 (spec ch2 7.2): the loss is the softmax cross-entropy of the decoded logits (the
decoder, spec 6, sits before the loss); the L2 terms of the model (`model.losses`) are added by the loop.

  CE(z, y)      = -log softmax(z)_y;  with label smoothing e: (1 - e) CE(z, y) + e mean_k(-log softmax(z)_k)
  "decoded":    L = mean_b CE(logits_b, y_b)
  "all_steps":  L = mean_b mean_t CE(logits_per_step_{b,t}, y_b)   (every readout step of a ConvRNN)
  top-k:        correct iff rank(y) < k, rank = #{j : z_j > z_y} + #{j < y : z_j = z_y}   (ties as argmax / top_k)

Metrics always use the decoded "logits". Model contract: `model(images, training=bool)` returns
{"logits": (b, classes) float32, "features": {...}} and, for ConvRNNs, also "logits_per_step": (b, t, classes).
Evaluation (spec A-27: the training presentation and the model's own decoder) runs every example of the evaluation
split exactly once through the strategy, weighting by the batches' 0/1 "weight" (padding of the last batches).
"""

# b: batch, t: time (readout steps), k: classes
import os
import time
from typing import Any, Callable

import keras
import tensorflow as tf

from goaldriven import atomic_write, runtime
from goaldriven.tasks import base, image_datasets, image_preprocessing

LOSS_OVER = ("decoded", "all_steps")


class ImageClassificationTask(base.Task):
    """Supervised image classification.

    Args:
      model_fn: called with no arguments, returns a built keras.Model following the model contract above (bind its
        num_classes and image_size in gin to match the dataset).
      dataset: the data: an object with `train_dataset(*, global_batch_size, input_context, start_step, seed)`,
        `eval_dataset(*, global_batch_size, input_context)`, `num_eval_examples()` and `image_size`, e.g.
        `image_datasets.ImageNetData` or `image_datasets.Cifar10Data`.
      num_classes: classes of the labels (default: `dataset.num_classes`).
      eval_batch_size: global batch of the evaluation (a multiple of the replica count; the split need not divide).
      loss_over: "decoded" (cross-entropy of "logits", the thesis) or "all_steps" (mean over "logits_per_step").
      label_smoothing: e in [0, 1) (the thesis uses none).
    """

    name = "image_classification"
    # Pixel normalisation of the model's input, (x - mean) / std on [0, 1] pixels (neural fits present new stimuli
    # the same way; goaldriven/neural_fits/pipeline/stimuli.py).
    pixel_mean = image_preprocessing.IMAGENET_MEAN
    pixel_std = image_preprocessing.IMAGENET_STD

    def __init__(
        self,
        *,
        model_fn: Callable[[], keras.Model],
        dataset: Any,
        num_classes: int | None = None,
        eval_batch_size: int = 256,
        loss_over: str = "decoded",
        label_smoothing: float = 0.0,
    ):
        if not callable(model_fn):
            raise TypeError(f"model_fn must be a callable returning a built keras.Model; received {model_fn!r}.")
        for method in ("train_dataset", "eval_dataset", "num_eval_examples"):
            if not callable(getattr(dataset, method, None)):
                raise TypeError(
                    f"dataset needs a {method}() method (use image_datasets.ImageNetData or Cifar10Data); "
                    f"received {dataset!r}."
                )
        data_classes = getattr(dataset, "num_classes", None)
        num_classes = data_classes if num_classes is None else num_classes
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(
                f"num_classes must be an int >= 2 (or taken from dataset.num_classes); got {num_classes!r}"
            )
        if data_classes is not None and data_classes != num_classes:
            raise ValueError(f"num_classes={num_classes} but the dataset has {data_classes} classes; drop num_classes.")
        if not isinstance(eval_batch_size, int) or eval_batch_size <= 0:
            raise ValueError(f"eval_batch_size must be a positive int. Received: {eval_batch_size!r}")
        if loss_over not in LOSS_OVER:
            raise ValueError(f"loss_over must be one of {LOSS_OVER}. Received: {loss_over!r}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1) (thesis: 0). Received: {label_smoothing}")
        self.model_fn = model_fn
        self.dataset = dataset
        self.num_classes = num_classes
        self.eval_batch_size = eval_batch_size
        self.loss_over = loss_over
        self.label_smoothing = float(label_smoothing)

    @property
    def metric_names(self) -> tuple[str, ...]:
        return ("top1", "top5") if self.num_classes > 5 else ("top1",)

    @property
    def input_spec(self) -> base.InputSpec:
        return base.InputSpec(self.dataset.image_size, self.pixel_mean, self.pixel_std)

    def build_model(self) -> keras.Model:
        model = self.model_fn()
        if not isinstance(model, keras.Model) or not model.built:
            raise ValueError(
                f"model_fn must return a built keras.Model (build it for (None, s, s, 3) inputs); received {model!r}."
            )
        return model

    def train_dataset(self, *, global_batch_size, input_context, start_step, seed):
        return self.dataset.train_dataset(
            global_batch_size=global_batch_size, input_context=input_context, start_step=start_step, seed=seed
        )

    def per_example(self, model: keras.Model, batch: runtime.Batch, *, training: bool) -> dict[str, tf.Tensor]:
        """{"loss", "top1"[, "top5"]}: per-example (b,) float32 loss and 0/1 correctness."""
        out = model(batch["images"], training=training)
        if not isinstance(out, dict) or "logits" not in out:
            raise TypeError(
                "the model must return a dict with 'logits' (b, classes) (and 'logits_per_step' for loss_over="
                f"'all_steps'); received {type(out).__name__}."
            )
        logits = tf.cast(out["logits"], tf.float32)  # (b, k)
        if logits.shape[-1] is not None and logits.shape[-1] != self.num_classes:
            raise ValueError(
                f"the model has {logits.shape[-1]} logits but the task {self.num_classes} classes; bind the model "
                "builder's num_classes to the dataset's."
            )
        labels = tf.cast(batch["labels"], tf.int32)  # (b,)
        if self.loss_over == "decoded":
            loss = self.cross_entropy(logits, labels)
        else:
            if "logits_per_step" not in out:
                raise ValueError(
                    "loss_over='all_steps' needs 'logits_per_step' (b, t, classes) from the model (ConvRNNs return "
                    "it); use loss_over='decoded' for feedforward models."
                )
            per_step = tf.cast(out["logits_per_step"], tf.float32)  # (b, t, k)
            steps = tf.shape(per_step)[1]
            step_labels = tf.repeat(labels[:, None], steps, axis=1)  # (b, t)
            loss = tf.reduce_mean(self.cross_entropy(per_step, step_labels), axis=1)
        rank = label_rank(logits, labels)  # (b,)
        result = {"loss": loss, "top1": tf.cast(rank < 1, tf.float32)}
        if "top5" in self.metric_names:
            result["top5"] = tf.cast(rank < 5, tf.float32)
        return result

    def cross_entropy(self, logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        """Softmax cross-entropy (with label smoothing) over the last axis; labels have the leading shape."""
        log_probs = tf.nn.log_softmax(logits, axis=-1)
        nll = -tf.squeeze(tf.gather(log_probs, labels[..., None], batch_dims=labels.shape.rank), -1)
        if not self.label_smoothing:
            return nll
        return (1.0 - self.label_smoothing) * nll - self.label_smoothing * tf.reduce_mean(log_probs, axis=-1)

    def compute_loss(self, model, batch, *, training):
        values = self.per_example(model, batch, training=training)
        means = {name: tf.reduce_mean(value) for name, value in values.items()}
        return means.pop("loss"), means

    def evaluate(self, model, *, strategy, output_dir, step, log=print):
        runtime.check_global_batch_size(self.eval_batch_size, strategy.num_replicas_in_sync)
        os.makedirs(output_dir, exist_ok=True)
        expected = self.dataset.num_eval_examples()
        dataset = strategy.distribute_datasets_from_function(
            lambda ctx: self.dataset.eval_dataset(global_batch_size=self.eval_batch_size, input_context=ctx)
        )
        names = ("loss",) + self.metric_names

        def replica_sums(batch):
            weight = tf.cast(batch["weight"], tf.float32)
            values = self.per_example(model, batch, training=False)
            sums = {name: tf.reduce_sum(weight * values[name]) for name in names}
            return {**sums, "examples": tf.reduce_sum(weight)}

        @tf.function
        def eval_step(dist_batch):
            out = strategy.run(replica_sums, args=(dist_batch,))
            return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in out.items()}

        totals = dict.fromkeys(names + ("examples",), 0.0)
        began, every = time.perf_counter(), max(1, -(-expected // self.eval_batch_size) // 10)
        for done, dist_batch in enumerate(dataset, start=1):
            for name, value in eval_step(dist_batch).items():
                totals[name] += float(value)
            if done % every == 0:
                log(
                    f"eval step {step}: {int(totals['examples']):,}/{expected:,} examples, "
                    f"top1 {totals['top1'] / max(totals['examples'], 1.0):.4f} ({time.perf_counter() - began:.0f} s)"
                )
        examples = int(round(totals["examples"]))
        if examples != expected:
            raise RuntimeError(f"evaluation saw {examples} weighted examples, expected {expected} (data pipeline bug).")
        metrics = {name: totals[name] / examples for name in self.metric_names}
        metrics.update(eval_loss=totals["loss"] / examples, examples=examples)
        log(
            f"eval step {step}: {examples:,} examples, "
            + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k != "examples")
        )
        atomic_write.write_json(os.path.join(output_dir, "eval_metrics.json"), {"step": step, **metrics})
        return metrics


def label_rank(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Position (b,) of each label in the descending order of its logits, ties broken by lower class index."""
    label_logit = tf.gather(logits, labels[:, None], batch_dims=1)  # (b, 1)
    classes = tf.range(tf.shape(logits)[-1])[None, :]  # (1, k)
    ahead = (logits > label_logit) | ((logits == label_logit) & (classes < labels[:, None]))
    return tf.reduce_sum(tf.cast(ahead, tf.int32), axis=-1)


class ImageNetTask(ImageClassificationTask):
    """ImageNet classification (1000 classes); `dataset` defaults to `image_datasets.ImageNetData()`."""

    name = "imagenet"

    def __init__(self, *, model_fn, dataset=None, eval_batch_size=256, loss_over="decoded", label_smoothing=0.0):
        super().__init__(
            model_fn=model_fn,
            dataset=dataset if dataset is not None else image_datasets.ImageNetData(),
            eval_batch_size=eval_batch_size,
            loss_over=loss_over,
            label_smoothing=label_smoothing,
        )


class Cifar10Task(ImageClassificationTask):
    """CIFAR-10 classification (10 classes, 32 px); `dataset` defaults to `image_datasets.Cifar10Data()`."""

    name = "cifar10"

    def __init__(self, *, model_fn, dataset=None, eval_batch_size=512, loss_over="decoded", label_smoothing=0.0):
        super().__init__(
            model_fn=model_fn,
            dataset=dataset if dataset is not None else image_datasets.Cifar10Data(),
            eval_batch_size=eval_batch_size,
            loss_over=loss_over,
            label_smoothing=label_smoothing,
        )
