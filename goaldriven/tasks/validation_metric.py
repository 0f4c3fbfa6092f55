"""A model's validation metric during training: one pass of a validation split through the strategy, weighted.

  value = sum_i w_i m_i / sum_i w_i      over the split's examples i (w_i: the batch's 0/1 "weight", padding 0)

`make_evaluator` builds it for any per-example metric function (model, batch) -> {name: (b,) values};
`classification_metrics` is the image-classification one (top-1, top-5, cross-entropy of the model's "logits", ties
ranked as tasks/image_classification.py). Used by the plateau learning-rate drops (tasks/plateau.py).
"""

# b: batch (per replica), k: classes
from typing import Any, Callable, Mapping

import keras
import tensorflow as tf

from goaldriven.tasks import image_classification


def classification_metrics(model: keras.Model, batch: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """{"top1", "top5", "loss"}: per-example (b,) correctness and cross-entropy of model(images)["logits"]
    (the image-classification model contract; ties ranked as tasks/image_classification.py)."""
    out = model(batch["images"], training=False)
    logits = tf.cast(out["logits"] if isinstance(out, dict) else out, tf.float32)  # (b, k)
    labels = tf.cast(batch["labels"], tf.int32)  # (b,)
    rank = image_classification.label_rank(logits, labels)  # (b,)
    loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    return {"top1": tf.cast(rank < 1, tf.float32), "top5": tf.cast(rank < 5, tf.float32), "loss": loss}


def make_evaluator(
    model: keras.Model,
    strategy: tf.distribute.Strategy,
    data: Any,
    *,
    metric: str = "top1",
    metric_fn: Callable[[keras.Model, Mapping[str, tf.Tensor]], Mapping[str, tf.Tensor]] = classification_metrics,
    eval_batch_size: int = 256,
    max_batches: int | None = None,
) -> Callable[[], tuple[float, int]]:
    """() -> (weighted mean of metric_fn(model, batch)[metric] over `data.eval_dataset`, examples): one pass of the
    validation split through `strategy` (batches' optional 0/1 "weight" marks padding), summed in float64 on the host."""
    if eval_batch_size % strategy.num_replicas_in_sync:
        raise ValueError(
            f"eval_batch_size={eval_batch_size} does not split over {strategy.num_replicas_in_sync} replicas; "
            "make PlateauDrop.eval_batch_size a multiple of the replica count."
        )

    def replica_sums(batch):
        values = metric_fn(model, batch)
        if metric not in values:
            raise KeyError(
                f"PlateauDrop.metric {metric!r} is not among metric_fn's outputs {sorted(values)}; pick one."
            )
        value = tf.cast(values[metric], tf.float32)  # (b,)
        weight = tf.cast(batch["weight"], tf.float32) if "weight" in batch else tf.ones_like(value)
        kept = tf.where(weight > 0, weight * value, tf.zeros_like(value))  # padding counts 0 even if NaN
        return {"sum": tf.reduce_sum(kept), "count": tf.reduce_sum(weight)}

    @tf.function
    def step(dist_batch):
        out = strategy.run(replica_sums, args=(dist_batch,))
        return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in out.items()}

    datasets = []  # distributed once (about a second), iterated afresh by each evaluation

    def evaluate() -> tuple[float, int]:
        if not datasets:
            datasets.append(
                strategy.distribute_datasets_from_function(
                    lambda ctx: data.eval_dataset(global_batch_size=eval_batch_size, input_context=ctx)
                )
            )
        total, count = 0.0, 0.0
        for index, dist_batch in enumerate(datasets[0]):
            if max_batches is not None and index >= max_batches:
                break
            out = step(dist_batch)
            total, count = total + float(out["sum"]), count + float(out["count"])
        if count <= 0:
            raise ValueError("PlateauDrop's validation data gave no examples (empty dataset or every weight 0).")
        return total / count, int(round(count))

    return evaluate
