"""A data source whose training order has its own seed, apart from the run's model-initialisation seed.

The loop seeds weights and data with one `seed` (tasks/loop.py). The Chapter 6 grid (spec ch5 11.1) varies the two
separately: model-init seed x dataset-order seed. `DataWithSeed(data, seed)` wraps any data source of the tasks'
contract (`train_dataset(*, global_batch_size, input_context, start_step, seed)`, `eval_dataset`, ...) and feeds its
own `seed` to `train_dataset`, so the loop's seed only initialises the model. Everything else is the wrapped source's.
"""

from typing import Any


class DataWithSeed:
    """`data` with its training-stream seed fixed to `seed` (None: the loop's seed, i.e. no change)."""

    def __init__(self, data: Any, seed: int | None):
        if not hasattr(data, "train_dataset"):
            raise ValueError(f"DataWithSeed wraps a data source with train_dataset(...); got {type(data).__name__}.")
        if seed is not None and (not isinstance(seed, int) or seed < 0):
            raise ValueError(f"the dataset seed must be a non-negative int or None; got {seed!r}.")
        self.data = data
        self.seed = seed

    def train_dataset(self, *, global_batch_size, input_context, start_step, seed):
        return self.data.train_dataset(
            global_batch_size=global_batch_size,
            input_context=input_context,
            start_step=start_step,
            seed=seed if self.seed is None else self.seed,
        )

    def __getattr__(self, name: str) -> Any:
        if name == "data":  # not set yet (during unpickling or a failed __init__): no recursion
            raise AttributeError(name)
        return getattr(self.data, name)
