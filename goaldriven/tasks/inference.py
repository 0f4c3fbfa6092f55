"""Running a function of a model over generated batches on every replica, with the outputs gathered on the host.

Evaluation must run where the weights live (TPU cores, several GPUs), so it goes through `strategy.run` like
training; `strategy.gather` concatenates the replicas' outputs in global-batch order. Building a distributed
dataset costs about a second, so batches that are evaluated many times (knockouts) are distributed once with
`distribute` and passed to `run` repeatedly.
"""

from typing import Any, Callable, Iterable, Iterator

import numpy as np
import tensorflow as tf

from goaldriven.tasks import base


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
        make_global_batch: Callable[[tf.Tensor, tf.Tensor], base.Batch],
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
        make_global_batch: Callable[[tf.Tensor, tf.Tensor], base.Batch],
        *,
        global_batch_size: int,
        num_batches: int,
        seed: int,
        args: tuple[Any, ...] = (),
    ) -> Iterator[dict[str, np.ndarray]]:
        """`run` over freshly distributed batches (streams them: memory stays bounded for long evaluations)."""
        return self.run(self._dataset(make_global_batch, global_batch_size, num_batches, seed), args)

    def _dataset(self, make_global_batch, global_batch_size, num_batches, seed):
        base.check_global_batch_size(global_batch_size, self.strategy.num_replicas_in_sync)
        return self.strategy.distribute_datasets_from_function(
            lambda ctx: base.step_indexed_dataset(
                make_global_batch,
                global_batch_size=global_batch_size,
                input_context=ctx,
                start_step=0,
                seed=seed,
                num_steps=num_batches,
            )
        )
