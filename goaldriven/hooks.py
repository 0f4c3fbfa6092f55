"""The hook interface of the training loop (goaldriven/tasks/loop.py): how task- and rule-specific work plugs in.

The loop owns what every run needs: strategy, precision, the task optimizer, checkpoints, preemption, the NaN stop,
evaluation and reporting. Everything else is a `LoopHook` (orbit's trainer/action split, shaped for a compiled step):
the learning rules' second optimizer and schedule (alignment/training.py), a momentum encoder and a queue (MoCo), a
memory bank (instance recognition), an observables recorder. A task brings its own hooks (`Task.hooks()`); a run adds
more with `loop.run(hooks=[...])`. Imports nothing of goaldriven but runtime.py.

Where each method runs, in the order of a run:

  host, once        check(...)                   reject settings the hook cannot honour, before anything is built
                    build(state) -> trackables   in `strategy.scope()` after the model and the task optimizer exist,
                                                 before the checkpoint is restored: create variables and optimizers
                                                 (returned by name, so checkpoints hold and restore them) and narrow
                                                 `state.task_variables` (what the loop's optimizer trains)
                    metric_names()               extra per-step metrics that `objectives` returns
                    on_train_begin(state, step)  after the restore (step: where training starts)
  host, per loop    phase(step), substeps(phase) which compiled loop runs next (one is traced per phase)
                    next_stop(step)              the next step at which the host must regain control (None: any)
  compiled replica step, per substep (trace time; `ctx` is a `StepContext`):
                    forward_context()            entered around the task's forward pass and loss, inside the tape
                    objectives(ctx, phase, substep) -> metrics
                                                 inside the tape: add terms to an objective's loss, add objectives
                                                 with their own optimizer and variables, disable objectives
                    after_replica_step(ctx, phase, substep)
                                                 replica context, after the optimizers: buffer and queue writes
  compiled loop, per substep (cross-replica context)
                    after_step(state, phase, substep)
                                                 EMA updates, update noise (identical on every replica)
  host, per loop    on_loop_end(state, step)     diagnostics, recorders (after the step counter moved to `step`)
  host, once        on_train_end(state, step)

Tensors produced in the forward pass reach hooks through `record(name, tensor)`: code inside the step (a task's
`compute_loss`, a layer) records them and hooks read `ctx.outputs[name]`. Outside a step `record` does nothing.
Compiled code must not have Python side effects beyond trace time: hooks keep run state in variables they return
from `build` (checkpointed, so a resumed run continues bit-identically), never in Python attributes changed per step.
"""

# b: batch
import contextlib
import dataclasses
import math
import threading
from typing import Any, Callable, Hashable, Mapping, Sequence

import keras
import tensorflow as tf

from goaldriven.runtime import Batch

_STATE = threading.local()  # per replica thread: MirroredStrategy runs each replica's step in its own thread


@dataclasses.dataclass
class LoopState:
    """What the loop built, as hooks see it (no task: hooks get its loss and batches through the callables).

    task_variables: what the loop's optimizer trains (model.trainable_variables unless a hook narrows it in build).
    loss_fn(model, batch): the task's scalar loss with training=False (nothing updated).
    sample_batch(n): the first global training batch of n examples, on the host (one input pipeline).
    workdir: where the run writes (for evaluations to an output_dir, the checkpoints' folder).
    """

    model: keras.Model
    optimizer: keras.optimizers.Optimizer
    strategy: tf.distribute.Strategy
    step: tf.Variable
    workdir: str
    is_chief: bool
    seed: int
    train_steps: int
    task_variables: list
    loss_fn: Callable[[keras.Model, Batch], tf.Tensor]
    sample_batch: Callable[[int], Batch]
    log: Callable[[str], None] = print


@dataclasses.dataclass
class Objective:
    """One optimizer's share of a step: gradients of `loss` for `variables`, applied by `optimizer`.

    loss: this replica's batch mean (the loop divides by the replica count: the optimizer's all-reduce sums).
    clip: the loop's gradient clipping (clip_global_norm, clip_value) applies.
    """

    loss: tf.Tensor
    variables: Sequence[tf.Variable]
    optimizer: keras.optimizers.Optimizer
    clip: bool = False
    enabled: bool = True


@dataclasses.dataclass
class StepContext:
    """One replica step as hooks see it (trace time)."""

    batch: Batch
    loss: tf.Tensor
    metrics: dict[str, tf.Tensor]
    objectives: dict[str, Objective]
    forward: dict[int, Any]
    outputs: dict[str, tf.Tensor]

    def forward_state(self, hook: "LoopHook") -> Any:
        """What `hook.forward_context()` yielded in this step."""
        return self.forward[id(hook)]


class LoopHook:
    """Base class of loop hooks: every method is optional (module docstring)."""

    def check(self, *, train_steps: int, steps_per_loop: int, checkpoint_every: int) -> None:
        del train_steps, steps_per_loop, checkpoint_every

    def build(self, state: LoopState) -> Mapping[str, Any]:
        del state
        return {}

    def metric_names(self) -> tuple[str, ...]:
        return ()

    def on_train_begin(self, state: LoopState, step: int) -> None:
        del state, step

    def phase(self, step: int) -> Hashable:
        del step
        return None

    def substeps(self, phase: Hashable) -> int:
        del phase
        return 1

    def next_stop(self, step: int) -> int | None:
        del step
        return None

    def forward_context(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def objectives(self, ctx: StepContext, phase: Hashable, substep: int) -> dict[str, tf.Tensor]:
        del ctx, phase, substep
        return {}

    def after_replica_step(self, ctx: StepContext, phase: Hashable, substep: int) -> None:
        del ctx, phase, substep

    def after_step(self, state: LoopState, phase: Hashable, substep: int) -> None:
        del state, phase, substep

    def on_loop_end(self, state: LoopState, step: int) -> None:
        del state, step

    def on_train_end(self, state: LoopState, step: int) -> None:
        del state, step


def record(name: str, tensor: tf.Tensor) -> None:
    """Makes `tensor` available to hooks as `ctx.outputs[name]` in the current step (no-op outside a step)."""
    stack = getattr(_STATE, "outputs", None)
    if not stack:
        return
    if name in stack[-1]:
        raise ValueError(f"step output {name!r} was recorded twice in one step; record each name once.")
    stack[-1][name] = tensor


@contextlib.contextmanager
def recording_outputs():
    """Used by the loop around a replica step's forward pass: yields the dict that `record` fills."""
    if not hasattr(_STATE, "outputs"):
        _STATE.outputs = []
    _STATE.outputs.append({})
    try:
        yield _STATE.outputs[-1]
    finally:
        _STATE.outputs.pop()


def phase_key(hooks: Sequence[LoopHook], step: int) -> tuple:
    """The phases of all hooks for the loop starting at `step` (one compiled loop per distinct key)."""
    return tuple(hook.phase(step) for hook in hooks)


def substeps(hooks: Sequence[LoopHook], key: tuple) -> int:
    """Replica steps per iteration of the compiled loop: the least common multiple of the hooks' substeps."""
    return math.lcm(1, *(hook.substeps(phase) for hook, phase in zip(hooks, key)))


def next_stop(hooks: Sequence[LoopHook], step: int) -> int | None:
    """The earliest step after `step` at which some hook needs the host (None: no hook does)."""
    stops = []
    for hook in hooks:
        stop = hook.next_stop(step)
        if stop is not None and stop <= step:
            raise ValueError(f"{type(hook).__name__}.next_stop({step}) returned {stop}; it must be > {step}.")
        if stop is not None:
            stops.append(stop)
    return min(stops) if stops else None


def checkpoint_items(hooks: Sequence[LoopHook], state: LoopState, reserved: Sequence[str]) -> dict[str, Any]:
    """Builds every hook; returns their trackables by name (a name used twice, or by the loop, is an error)."""
    items: dict[str, Any] = {}
    for hook in hooks:
        for name, trackable in dict(hook.build(state) or {}).items():
            if name in items or name in reserved:
                raise ValueError(
                    f"{type(hook).__name__} checkpoints {name!r}, a name already taken by the loop or another hook; "
                    "give it a unique name."
                )
            items[name] = trackable
    return items
