"""How the training loop trains a model under a learning rule: the loop hook of alignment/ (thesis Sections 5.8.3,
5.9; spec ch5 5).

Each step computes the task loss J (+ L2) and the alignment loss R (the sum of the aligned layers' R, alignment/
rules.py) in one forward pass, and two optimizers update disjoint variable groups:

    task optimizer (the loop's)        forward kernels, biases, BN, ... on the pseudogradient of J + L2
                                       (+ Kolen-Pollack's backward kernels, which get W's update, and their decay)
    alignment optimizer (Adam, fused) backward kernels of rules with an R, on the gradient of R

Feedback alignment's backward kernels are in neither group (they never change). Variables are partitioned, not
zero-gradient: a zero gradient would still move momentum SGD or Adam through their accumulators.

`AlignmentTraining` is a `hooks.LoopHook` (bound in gin as `loop.run.hooks = [@training.AlignmentTraining()]`; the
loop adds one with the defaults when a model has aligned layers and no run binds it). Its options:
  * alternate: alternating minimisation; steps alternate R only / J only, R first (spec 5.3). Each optimizer's
    schedule runs on its own update count, so every objective sees its whole schedule over twice the steps.
  * delay_steps: only R is optimised for the first steps (the thesis' delay epochs x steps per epoch); the task
    optimizer's schedule starts after them (its update count starts at 0), so its drops shift by the delay.
  * update_noise_stddev: after each update of the backward kernels add lr_t * N(0, stddev^2) (Section 5.6; for
    Kolen-Pollack the task optimizer's lr); task_update_noise_stddev does the same to the task optimizer's variables
    (the thesis' noisy backprop). The noise is drawn once per step and is identical on every replica.
  * diagnostics_every: every this many steps, the per-layer angles of alignment/diagnostics.py are logged.
"""

import dataclasses
from typing import Callable, Sequence

import keras
import tensorflow as tf

from goaldriven import fused_optimizers
from goaldriven import hooks as loop_hooks
from goaldriven.alignment import diagnostics, scope
from goaldriven.alignment import layers as aligned_layers

# phase -> [(task optimizer applies, alignment optimizer applies)] per substep
_SUBSTEPS = {"both": ((True, True),), "align": ((False, True),), "alternate": ((False, True), (True, False))}


@dataclasses.dataclass(eq=False)
class AlignmentTraining(loop_hooks.LoopHook):
    """Training options of the backward kernels, and the loop hook that applies them (module docstring)."""

    optimizer: Callable[..., keras.optimizers.Optimizer] = fused_optimizers.Adam
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
        self._groups = self._align_opt = self._task_opt = self._diagnose = None

    # --- host ------------------------------------------------------------------------------------------------------

    def check(self, *, train_steps: int, steps_per_loop: int, checkpoint_every: int) -> None:
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

    def build(self, state: loop_hooks.LoopState) -> dict:
        """Partitions the variables, narrows the task optimizer's share and builds the alignment optimizer."""
        self._groups = groups = variable_groups(state.model)
        state.task_variables = groups.task
        self._task_opt = state.optimizer
        self._align_opt = None
        if groups.align:
            self._align_opt = self.optimizer(learning_rate=self.learning_rate)
            self._align_opt.build(groups.align)
            return {"alignment_optimizer": self._align_opt}
        return {}

    def metric_names(self) -> tuple[str, ...]:
        return ("alignment_loss",) if self._groups.align or self._groups.tied_layers else ()

    def on_train_begin(self, state: loop_hooks.LoopState, step: int) -> None:
        del step
        groups = self._groups
        if not (groups.align or groups.frozen or groups.tied_layers):
            return  # a backprop model: nothing to train, log or diagnose
        rules = sorted({layer.rule.name for layer in aligned_layers.aligned_layers(state.model)})
        state.log(
            f"learning rule {', '.join(rules)}: {len(groups.task)} task variables, {len(groups.align)} backward "
            f"kernels trained on R, {len(groups.frozen)} fixed, {len(groups.tied_layers)} layers tied (KP)"
        )
        if self.diagnostics_every and state.is_chief:
            self._diagnose = diagnostics.make_logger(
                state.model,
                state.loss_fn,
                state.sample_batch(self.diagnostics_batch_size),
                workdir=state.workdir,
                log=state.log,
            )

    def phase(self, step: int) -> str:
        """The phase of the loop starting at `step`: "align" during the delay, else "alternate" or "both"."""
        if step < self.delay_steps:
            return "align"
        return "alternate" if self.alternate else "both"

    def substeps(self, phase: str) -> int:
        return len(_SUBSTEPS[phase])

    def next_stop(self, step: int) -> int | None:
        stops = [self.delay_steps] if step < self.delay_steps else []
        if self._diagnose is not None:
            stops.append((step // self.diagnostics_every + 1) * self.diagnostics_every)
        return min(stops) if stops else None

    def on_loop_end(self, state: loop_hooks.LoopState, step: int) -> None:
        del state
        if self._diagnose is not None and step % self.diagnostics_every == 0:
            self._diagnose(step)

    # --- compiled step ---------------------------------------------------------------------------------------------

    def forward_context(self):
        return scope.collect_alignment_losses()

    def objectives(self, ctx: loop_hooks.StepContext, phase: str, substep: int) -> dict[str, tf.Tensor]:
        """J gets the tied layers' R (Kolen-Pollack's decay); the alignment optimizer gets the other layers' R."""
        apply_task, apply_align = _SUBSTEPS[phase][substep]
        tied_r, align_r = split_alignment_loss(ctx.forward_state(self), self._groups)
        task = ctx.objectives["task"]
        task.loss = task.loss + tied_r
        task.enabled = task.enabled and apply_task
        if self._align_opt is not None:
            ctx.objectives["alignment"] = loop_hooks.Objective(
                loss=align_r, variables=self._groups.align, optimizer=self._align_opt, enabled=apply_align
            )
        return {"alignment_loss": tied_r + align_r} if self.metric_names() else {}

    def after_step(self, state: loop_hooks.LoopState, phase: str, substep: int) -> None:
        """Update noise after the optimizers of this substep (cross-replica: identical on every replica)."""
        del state
        apply_task, apply_align = _SUBSTEPS[phase][substep]
        groups = self._groups
        noisy_align = groups.align if self._align_opt is not None else groups.tied_kernels
        if apply_align and self.update_noise_stddev and noisy_align:
            opt = self._align_opt if self._align_opt is not None else self._task_opt
            add_update_noise(noisy_align, self.update_noise_stddev, current_learning_rate(opt))
        if apply_task and self.task_update_noise_stddev:
            noisy_ids = {id(v) for v in noisy_align}
            task_vars = [v for v in groups.task if id(v) not in noisy_ids]
            add_update_noise(task_vars, self.task_update_noise_stddev, current_learning_rate(self._task_opt))


def default_hooks(model: keras.Model, hooks: Sequence[loop_hooks.LoopHook]) -> list[loop_hooks.LoopHook]:
    """[AlignmentTraining()] when `model` has aligned layers and no hook trains them; else []."""
    if any(isinstance(hook, AlignmentTraining) for hook in hooks) or not aligned_layers.aligned_layers(model):
        return []
    return [AlignmentTraining()]


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
