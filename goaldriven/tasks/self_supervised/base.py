"""What every self-supervised objective shares: the data contract, the model (backbone + heads) and the evaluation.

Reference: thesis Section 3.6.5 (spec ch3 A4) and Section 6.3.8 (spec ch5 6.4).

Data contract. An SSL dataset object has `train_dataset(*, global_batch_size, input_context, start_step, seed)`
yielding per-replica batches
    {"views": (b, v, s, s, 3) float32 (normalised; v = 2 augmented views, or RotNet's 4 rotations),
     "labels": (b,) int32 (the class where the data has one, never used by the objectives),
     "index": (b,) int64 (the example's position in the training split: instance recognition's memory-bank row)}
as a pure function of (seed, step) (exact resume), plus `num_train_examples()`, `image_size` and `pixel_mean`,
`pixel_std` (how images reach the model, for neural fits and linear evaluation). Labelled evaluation data (kNN
monitor, linear evaluation) follow the classification contract {"images", "labels", "weight"}.

Model. `backbone_fn()` returns a built zoo model ({"logits", "features"}, e.g. `zoo.build_model` with num_classes 1);
the task wraps it with its heads (`models.heads.build_self_supervised_model`) under `learning_rule` (the backbone
must be built under the same rule). Every objective is any-backbone: gin binds `backbone_fn` and `feature`.
"""

# b: batch, v: views, s: image side
import math
from typing import Any, Callable

import keras
import tensorflow as tf

from goaldriven import hooks as loop_hooks
from goaldriven.models import heads as ssl_heads
from goaldriven.tasks import base


class SelfSupervisedTask(base.Task):
    """Base class of the objectives: builds backbone + heads, checks the data, no labelled evaluation by default.

    Args:
      backbone_fn: called with no arguments, returns a built backbone of the zoo contract.
      feature: the backbone feature read as the representation (ResNets "pool", AlexNet "fc7").
      dataset: an SSL dataset (module docstring).
      head_weight_decay: TF1 lambda on the heads' kernels (the backbone's own decay is bound in its builder).
      learning_rule: the heads' learning rule (None: backprop); bind the backbone's to the same.
    """

    name = "self_supervised"

    def __init__(
        self,
        *,
        backbone_fn: Callable[[], keras.Model],
        feature: str,
        dataset: Any,
        head_weight_decay: float = 0.0,
        learning_rule: Any = None,
    ):
        if not callable(backbone_fn):
            raise TypeError(f"backbone_fn must be a callable returning a built backbone; received {backbone_fn!r}.")
        for method in ("train_dataset", "num_train_examples"):
            if not callable(getattr(dataset, method, None)):
                raise TypeError(
                    f"dataset needs a {method}() method (an SSL dataset, tasks/self_supervised/base.py); received "
                    f"{dataset!r}."
                )
        if head_weight_decay < 0:
            raise ValueError(f"head_weight_decay must be >= 0. Received: {head_weight_decay}")
        self.backbone_fn = backbone_fn
        self.feature = feature
        self.dataset = dataset
        self.head_weight_decay = float(head_weight_decay)
        self.learning_rule = learning_rule

    def head_specs(self, feature_width: int) -> dict[str, ssl_heads.HeadSpec]:
        """{name: HeadSpec} of this objective's heads, in order (`feature_width`: the representation's width)."""
        del feature_width
        return {}

    @property
    def input_spec(self) -> base.InputSpec:
        return base.InputSpec(self.dataset.image_size, self.dataset.pixel_mean, self.dataset.pixel_std)

    def build_model(self) -> keras.Model:
        backbone = self.backbone_fn()
        if not isinstance(backbone, keras.Model) or not backbone.built:
            raise ValueError(f"backbone_fn must return a built keras.Model; received {backbone!r}.")
        size = self.dataset.image_size
        symbolic = backbone(keras.KerasTensor((None, size, size, 3)))["features"]
        if self.feature not in symbolic:
            raise ValueError(
                f"backbone {backbone.name!r} has no feature {self.feature!r}; its features are "
                f"{', '.join(symbolic)}. Bind the task's feature to one of them."
            )
        width = math.prod(symbolic[self.feature].shape[1:])
        return ssl_heads.build_self_supervised_model(
            backbone,
            self.feature,
            self.head_specs(width),
            image_size=self.dataset.image_size,
            weight_decay=self.head_weight_decay,
            learning_rule=self.learning_rule,
        )

    def train_dataset(self, *, global_batch_size, input_context, start_step, seed):
        return self.dataset.train_dataset(
            global_batch_size=global_batch_size, input_context=input_context, start_step=start_step, seed=seed
        )


def views(batch: dict, expected: int) -> tf.Tensor:
    """The batch's views (b, v, s, s, 3), checked to hold `expected` views."""
    if "views" not in batch:
        raise KeyError(
            f"a self-supervised batch needs 'views' (b, {expected}, s, s, 3); received keys {sorted(batch)}. Use an "
            "SSL dataset (tasks/self_supervised/data.py)."
        )
    value = batch["views"]
    if value.shape.rank != 5 or value.shape[1] != expected:
        raise ValueError(
            f"this objective needs {expected} views per example, (b, {expected}, s, s, 3); got {value.shape}."
        )
    return value


class StepSeeds(loop_hooks.LoopHook):
    """Gives a task per-step stateless seeds inside the compiled step (random negatives, the shuffled-BN
    permutation): `seed(*data)` = fold_in((run seed, step), *data), identical on every replica unless the replica id
    is folded in. The step is the task optimizer's `iterations` (updates applied so far: the loop's own step counter
    moves only between compiled loops), checkpointed with the optimizer, so resumed runs draw the same values."""

    def __init__(self):
        self._step = None
        self._seed = None

    def build(self, state: loop_hooks.LoopState) -> dict:
        self._step, self._seed = state.optimizer.iterations, state.seed
        return {}

    def seed(self, *data) -> tf.Tensor:
        if self._step is None:
            raise RuntimeError("StepSeeds is used before the loop built it; list it in the task's hooks().")
        seed = tf.stack([tf.constant(self._seed, tf.int64), tf.cast(self._step, tf.int64)])
        for value in data:
            seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(value, tf.int64))
        return seed


def replica_id() -> tf.Tensor:
    """This replica's index (0 outside a strategy)."""
    return tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group, tf.int32)


def num_replicas() -> int:
    return tf.distribute.get_replica_context().num_replicas_in_sync


def all_gather(value: tf.Tensor) -> tf.Tensor:
    """Concatenation over replicas along axis 0, in replica order (the value itself on one replica)."""
    context = tf.distribute.get_replica_context()
    replicas = context.num_replicas_in_sync
    if replicas == 1:
        return value
    gathered = context.all_gather(value, axis=0)
    rows = value.shape[0] * replicas if value.shape[0] is not None else None
    return tf.ensure_shape(gathered, [rows, *value.shape[1:]])  # all_gather drops the static shape
