"""The Task protocol every objective implements, shaped like tensorflow/models' official/core/base_task.py.

A task owns what is trained: its data, its model, its loss and metrics, and its evaluation. The loop
(`goaldriven.tasks.loop.run`) owns how: strategy, precision, optimizer, checkpoints and logs. New tasks (ImageNet,
SimCLR, audio, CIFAR) subclass `Task` and plug into the loop without touching it.

Data contract (what makes resume and multi-replica runs exact): `train_dataset` yields the batches of training step
`start_step`, `start_step + 1`, ... and every batch is a pure function of (seed, step), so the step counter saved in a
checkpoint is the whole data state; `goaldriven.runtime.step_indexed_dataset` builds such a dataset from a batch
function.

What else a task declares: `input_spec` (how its images reach the model, so neural fits present new stimuli the same
way; None for tasks without images) and `hooks()` (loop hooks the task needs, e.g. a momentum encoder and its queue;
goaldriven/hooks.py).
"""

# b: batch (global or per replica, as named)
import abc
import dataclasses
from typing import Any, Callable, Sequence

import keras
import tensorflow as tf

from goaldriven import hooks as loop_hooks
from goaldriven.runtime import Batch


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """How a task's images reach its model: pixels in [0, 1], resized to (image_size, image_size, 3), then
    (x - pixel_mean) / pixel_std (per channel when sequences)."""

    image_size: int
    pixel_mean: float | tuple[float, ...]
    pixel_std: float | tuple[float, ...]

    def __post_init__(self):
        if not isinstance(self.image_size, int) or self.image_size < 1:
            raise ValueError(f"InputSpec.image_size must be a positive int (pixels). Received: {self.image_size!r}")


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

    @property
    def input_spec(self) -> InputSpec | None:
        """How images reach the model (image tasks), or None (path integration, audio before its front end)."""
        return None

    def hooks(self) -> Sequence[loop_hooks.LoopHook]:
        """Loop hooks this task needs in every run (the loop adds them before the run's own `hooks`)."""
        return ()

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
