"""The Task protocol every objective implements, shaped like tensorflow/models' official/core/base_task.py.

A task owns what is trained: its data, its model, its loss and metrics, and its evaluation. The loop
(`goaldriven.tasks.loop.run`) owns how: strategy, precision, optimizer, checkpoints and logs. New tasks (ImageNet,
SimCLR, audio, CIFAR) subclass `Task` and plug into the loop without touching it.

Data contract (what makes resume and multi-replica runs exact): `train_dataset` yields the batches of training step
`start_step`, `start_step + 1`, ... and every batch is a pure function of (seed, step), so the step counter saved in a
checkpoint is the whole data state; `step_indexed_dataset` below builds such a dataset from a batch function.
"""

# b: batch (global or per replica, as named)
import abc
from typing import Any, Callable

import keras
import tensorflow as tf

Batch = dict[str, tf.Tensor]
_LAST_STEP = 2**62


class Task(abc.ABC):
    """Base class of goaldriven tasks."""

    name: str = "task"

    @abc.abstractmethod
    def build_model(self) -> keras.Model:
        """Returns a built model (all variables created); called inside `strategy.scope()`."""

    @abc.abstractmethod
    def train_dataset(
        self, *, global_batch_size: int, input_context: tf.distribute.InputContext, start_step: int, seed: int
    ) -> tf.data.Dataset:
        """Per-replica training batches of this input pipeline, from step `start_step` on (static shapes)."""

    @abc.abstractmethod
    def compute_loss(
        self, model: keras.Model, batch: Batch, *, training: bool
    ) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        """Returns (mean loss over the local batch, {metric name: mean over the local batch}).

        Regularisation losses of the model (`model.losses`) are added by the loop; do not add them here.
        """

    @property
    @abc.abstractmethod
    def metric_names(self) -> tuple[str, ...]:
        """Names of the metrics `compute_loss` returns (fixed, so the loop can accumulate them in-graph)."""

    def evaluate(
        self,
        model: keras.Model,
        *,
        strategy: tf.distribute.Strategy,
        output_dir: str,
        step: int,
        log: Callable[[str], None] = print,
    ) -> dict[str, Any]:
        """Full evaluation after (or during) training; writes artifacts to `output_dir`, returns scalar metrics."""
        del model, strategy, output_dir, step, log
        return {}


def step_indexed_dataset(
    make_global_batch: Callable[[tf.Tensor, tf.Tensor], Batch],
    *,
    global_batch_size: int,
    input_context: tf.distribute.InputContext,
    start_step: int,
    seed: int,
    num_steps: int | None = None,
) -> tf.data.Dataset:
    """Dataset of per-replica batches where global batch k is `make_global_batch(step=k, seed=[seed, k])`.

    Every input pipeline computes the same global batch and keeps its own slice, split into consecutive per-replica
    batches, so the concatenation over replicas is the single-device global batch whatever the number of replicas or
    hosts: one device, MirroredStrategy and multi-worker runs see identical data. Suitable for cheap generated data.
    The dataset is endless unless `num_steps` is given.
    """
    per_replica = input_context.get_per_replica_batch_size(global_batch_size)
    replicas_here = input_context.num_replicas_in_sync // input_context.num_input_pipelines
    pipeline_batch = per_replica * replicas_here
    offset = input_context.input_pipeline_id * pipeline_batch

    def one_step(step):
        step_seed = tf.stack([tf.constant(seed, tf.int64), step])
        batch = make_global_batch(step, step_seed)
        return {k: v[offset : offset + pipeline_batch] for k, v in batch.items()}

    stop = _LAST_STEP if num_steps is None else start_step + num_steps
    dataset = tf.data.Dataset.range(start_step, stop).map(
        one_step, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    if replicas_here > 1:
        dataset = dataset.unbatch().batch(per_replica, drop_remainder=True)
    return dataset.prefetch(tf.data.AUTOTUNE)


def check_global_batch_size(global_batch_size: int, num_replicas: int) -> None:
    """Raises ValueError naming the fix when the global batch does not split evenly over the replicas."""
    if global_batch_size <= 0 or global_batch_size % num_replicas:
        raise ValueError(
            f"global_batch_size={global_batch_size} does not split over {num_replicas} replicas; "
            f"set GLOBAL_BATCH_SIZE to a positive multiple of {num_replicas}."
        )
