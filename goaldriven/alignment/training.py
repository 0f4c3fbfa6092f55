"""How the training loop trains a model under a learning rule (thesis Sections 5.8.3, 5.9; spec ch5 5).

Each step computes the task loss J (+ L2) and the alignment loss R (the sum of the aligned layers' R, alignment/
rules.py) in one forward pass and applies two optimizers to disjoint variable groups:

    task optimizer (the loop's)        forward kernels, biases, BN, ... on the pseudogradient of J + L2
                                       (+ Kolen-Pollack's backward kernels, which get W's update, and their decay)
    alignment optimizer (Adam default) backward kernels of rules with an R, on the gradient of R

Feedback alignment's backward kernels are in neither group (they never change). Variables are partitioned, not
zero-gradient: a zero gradient would still move momentum SGD or Adam through their accumulators.

Options (`AlignmentTraining`, bound in gin as `loop.run.alignment`):
  * alternate: alternating minimisation; steps alternate R only / J only, R first (spec 5.3). Each optimizer's
    schedule runs on its own update count, so every objective sees its whole schedule over twice the steps.
  * delay_steps: only R is optimised for the first steps (the thesis' delay epochs x steps per epoch); the task
    optimizer's schedule starts after them (its update count starts at 0), so its drops shift by the delay.
  * update_noise_stddev: after each update of the backward kernels add lr_t * N(0, stddev^2) (Section 5.6; for
    Kolen-Pollack the task optimizer's lr); task_update_noise_stddev does the same to the task optimizer's variables
    (the thesis' noisy backprop). The noise is drawn once per step and is identical on every replica.
  * diagnostics_every: every this many steps the loop logs the per-layer angles of alignment/diagnostics.py.
"""

import dataclasses
from typing import Callable

import keras
import tensorflow as tf

from goaldriven.alignment import layers as aligned_layers
from goaldriven.alignment import scope

PHASES = ("both", "align", "task")


@dataclasses.dataclass(frozen=True)
class AlignmentTraining:
    """Training options of the backward kernels (module docstring)."""

    optimizer: Callable[..., keras.optimizers.Optimizer] = keras.optimizers.Adam
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule = 1e-3
    alternate: bool = False
    delay_steps: int = 0
    update_noise_stddev: float = 0.0
    task_update_noise_stddev: float = 0.0
    diagnostics_every: int = 0
    diagnostics_batch_size: int = 16

    def __post_init__(self):
        for name in ("delay_steps", "diagnostics_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"AlignmentTraining.{name} must be an int >= 0. Received: {value!r}")
        for name in ("update_noise_stddev", "task_update_noise_stddev"):
            if getattr(self, name) < 0:
                raise ValueError(f"AlignmentTraining.{name} must be >= 0. Received: {getattr(self, name)}")
        if self.diagnostics_batch_size < 1:
            raise ValueError(f"diagnostics_batch_size must be >= 1. Received: {self.diagnostics_batch_size}")

    def check_schedule(self, *, train_steps: int, steps_per_loop: int, checkpoint_every: int) -> None:
        """Alternating steps run in (R, J) pairs inside a compiled loop, so every boundary must be even."""
        if not self.alternate:
            return
        odd = {
            name: value
            for name, value in (
                ("train_steps", train_steps),
                ("steps_per_loop", steps_per_loop),
                ("checkpoint_every", checkpoint_every),
                ("delay_steps", self.delay_steps),
                ("diagnostics_every", self.diagnostics_every),
            )
            if value % 2
        }
        if odd:
            raise ValueError(
                f"alternate=True runs steps in (alignment, task) pairs, so these must be even: {odd}. Make them even "
                "(the alternating runs of the thesis take twice the steps of simultaneous ones)."
            )

    def phase(self, step: int) -> str:
        """The phase of the loop starting at `step`: "align" during the delay, else "alternate" or "both"."""
        if step < self.delay_steps:
            return "align"
        return "alternate" if self.alternate else "both"


@dataclasses.dataclass
class VariableGroups:
    """The model's trainable variables split by optimizer (module docstring)."""

    task: list
    align: list
    frozen: list
    tied_layers: tuple
    loss_layers: tuple

    @property
    def has_alignment_optimizer(self) -> bool:
        return bool(self.align)

    @property
    def tied_kernels(self) -> list:
        """The backward kernels of Kolen-Pollack layers (trained by the task optimizer)."""
        return [v for layer in self.tied_layers for v in aligned_layers.layer_backward_kernels(layer)]


def variable_groups(model: keras.Model) -> VariableGroups:
    aligned = aligned_layers.aligned_layers(model)
    kernels = aligned_layers.layer_backward_kernels
    tied = tuple(layer for layer in aligned if layer.rule.tie_grad)
    with_loss = tuple(layer for layer in aligned if layer.rule.has_alignment_loss and not layer.rule.tie_grad)
    align = [v for layer in with_loss for v in kernels(layer)]
    frozen = [v for layer in aligned if layer not in tied and layer not in with_loss for v in kernels(layer)]
    backward_ids = {id(v) for layer in aligned for v in kernels(layer)}
    tied_ids = {id(v) for layer in tied for v in kernels(layer)}
    task = [v for v in model.trainable_variables if id(v) not in backward_ids or id(v) in tied_ids]
    return VariableGroups(task=task, align=align, frozen=frozen, tied_layers=tied, loss_layers=with_loss)


def split_alignment_loss(collected: scope.AlignmentLosses, groups: VariableGroups) -> tuple[tf.Tensor, tf.Tensor]:
    """(R of the tied (Kolen-Pollack) layers, which joins the task objective; R trained by the alignment optimizer)."""
    tied_ids = {id(layer) for layer in groups.tied_layers}
    tied = [loss for layer, loss in zip(collected.layers, collected.losses) if id(layer) in tied_ids]
    other = [loss for layer, loss in zip(collected.layers, collected.losses) if id(layer) not in tied_ids]
    total = lambda losses: tf.add_n(losses) if losses else tf.constant(0.0)  # noqa: E731
    return total(tied), total(other)


def current_learning_rate(opt: keras.optimizers.Optimizer) -> tf.Tensor:
    """The optimizer's learning rate at its current update count (float32)."""
    return tf.cast(opt.learning_rate, tf.float32)


def add_update_noise(variables: list, stddev: float, learning_rate: tf.Tensor) -> None:
    """v += lr * N(0, stddev^2) for each variable; call in cross-replica context (identical on every replica)."""
    for v in variables:
        noise = tf.random.normal(v.shape, stddev=stddev, dtype=tf.float32) * learning_rate
        v.assign_add(tf.cast(noise, v.dtype))
