"""Runtime pieces shared by training, evaluation and feature extraction: step-indexed data and replicated runs.

* `step_indexed_dataset`: the data contract that makes resume and multi-replica runs exact. Global batch k is a pure
  function of (seed, k), so the step counter saved in a checkpoint is the whole data state, and every input pipeline
  keeps its own slice of the same global batch (one device, MirroredStrategy and multi-worker runs see the same data).
* `ReplicatedRunner`: a function of a model run over batches on every replica, outputs gathered on the host.
  Evaluation must run where the weights live (TPU cores, several GPUs), so it goes through `strategy.run` like
  training; `strategy.gather` concatenates the replicas' outputs in global-batch order. Building a distributed dataset
  costs about a second, so batches that are evaluated many times (knockouts) are distributed once with `distribute`
  and passed to `run` repeatedly.

Beside distribute.py (which strategy) and hooks.py (how the loop is extended); imports nothing else of goaldriven.
"""

# b: batch (global or per replica, as named)
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import tensorflow as tf

Batch = dict[str, tf.Tensor]
_LAST_STEP = 2**62


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


class ReplicatedRunner:
    """Wraps `fn(batch, *args) -> {name: (b, ...) tensor}` into one traced, distributed, gathering function."""

    def __init__(self, strategy: tf.distribute.Strategy, fn: Callable[..., dict[str, tf.Tensor]]):
        self.strategy = strategy

        @tf.function
        def run(dist_batch, *args):
            out = strategy.run(fn, args=(dist_batch, *args))
            return tf.nest.map_structure(lambda value: strategy.gather(value, axis=0), out)

        self._run = run

    def distribute(
        self,
        make_global_batch: Callable[[tf.Tensor, tf.Tensor], Batch],
        *,
        global_batch_size: int,
        num_batches: int,
        seed: int,
    ) -> list[Any]:
        """The distributed global batches 0..num_batches-1 of the seeded batch function, held in memory."""
        return list(self._dataset(make_global_batch, global_batch_size, num_batches, seed))

    def run(self, dist_batches: Iterable[Any], args: tuple[Any, ...] = ()) -> Iterator[dict[str, np.ndarray]]:
        """Yields the gathered NumPy outputs of `fn` for each distributed batch."""
        for dist_batch in dist_batches:
            yield tf.nest.map_structure(np.asarray, self._run(dist_batch, *args))

    def map(
        self,
        make_global_batch: Callable[[tf.Tensor, tf.Tensor], Batch],
        *,
        global_batch_size: int,
        num_batches: int,
        seed: int,
        args: tuple[Any, ...] = (),
    ) -> Iterator[dict[str, np.ndarray]]:
        """`run` over freshly distributed batches (streams them: memory stays bounded for long evaluations)."""
        return self.run(self._dataset(make_global_batch, global_batch_size, num_batches, seed), args)

    def _dataset(self, make_global_batch, global_batch_size, num_batches, seed):
        check_global_batch_size(global_batch_size, self.strategy.num_replicas_in_sync)
        return self.strategy.distribute_datasets_from_function(
            lambda ctx: step_indexed_dataset(
                make_global_batch,
                global_batch_size=global_batch_size,
                input_context=ctx,
                start_step=0,
                seed=seed,
                num_steps=num_batches,
            )
        )
