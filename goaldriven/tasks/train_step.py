"""The compiled train step of the loop (tasks/loop.py): one replica step per batch, run n times per call, with the
loop hooks (goaldriven/hooks.py) plugged in.

Per replica step: the hooks' forward contexts are entered, the task computes its loss on this replica's batch, the
loop adds the model's regularisation losses, and the objectives are formed: "task" (loss + L2 for the task
variables, the loop's optimizer, gradient clipping) plus whatever the hooks add or change. Each enabled objective's
loss is divided by the number of replicas, because the optimizer all-reduces (sums) gradients across replicas: the
sum is then the gradient of the global-batch mean. After the optimizers, `after_replica_step` hooks run in replica
context, then `after_step` hooks in cross-replica context. A phase with k substeps runs k replica steps per
iteration (e.g. alternating alignment and task steps), each on its own batch.
"""

import contextlib
import dataclasses
from typing import Any, Callable, Sequence

import keras
import tensorflow as tf

from goaldriven import hooks as loop_hooks
from goaldriven.alignment import training as alignment_training
from goaldriven.tasks import base

RESERVED = ("model", "optimizer", "step", "model_variables")  # checkpoint names the loop uses itself


@dataclasses.dataclass
class Prepared:
    """A model, its optimizer and the hooks, built for training (see `prepare`)."""

    state: loop_hooks.LoopState
    hooks: list
    trackables: dict[str, Any]
    metric_names: tuple[str, ...]


def prepare(
    task: base.Task,
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    strategy: tf.distribute.Strategy,
    hooks: Sequence[loop_hooks.LoopHook],
    *,
    workdir: str,
    seed: int,
    train_steps: int,
    is_chief: bool = True,
    log: Callable[[str], None] = print,
) -> Prepared:
    """Builds the hooks (with the alignment hook a model with aligned layers needs) and the optimizer, inside the
    strategy scope; returns what the train loop and the checkpoint need."""

    def sample_batch(global_batch_size: int) -> loop_hooks.Batch:
        dataset = task.train_dataset(
            global_batch_size=global_batch_size, input_context=tf.distribute.InputContext(), start_step=0, seed=seed
        )
        return next(iter(dataset))

    hooks = [*hooks, *alignment_training.default_hooks(model, hooks)]
    with strategy.scope():
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        state = loop_hooks.LoopState(
            model=model,
            optimizer=optimizer,
            strategy=strategy,
            step=step,
            workdir=workdir,
            is_chief=is_chief,
            seed=seed,
            train_steps=train_steps,
            task_variables=list(model.trainable_variables),
            loss_fn=lambda m, batch: task.compute_loss(m, batch, training=False)[0],
            sample_batch=sample_batch,
            log=log,
        )
        trackables = loop_hooks.checkpoint_items(hooks, state, reserved=RESERVED)
        optimizer.build(state.task_variables)
    names = ("loss", "reg_loss") + tuple(n for hook in hooks for n in hook.metric_names()) + tuple(task.metric_names)
    if len(set(names)) != len(names):
        raise ValueError(f"metric names collide between the loop, its hooks and the task: {names}; rename one.")
    return Prepared(state=state, hooks=hooks, trackables=trackables, metric_names=names)


def make_train_loop(
    task: base.Task,
    prepared: Prepared,
    *,
    key: tuple,
    jit_compile: bool,
    clip_global_norm: float | None = None,
    clip_value: float | None = None,
):
    """Returns a tf.function (iterator, n) -> per-metric sums over n steps (global-batch means) for the hooks'
    phases `key` (`hooks.phase_key`); n must be a multiple of the phases' substeps."""
    state, hooks, names = prepared.state, prepared.hooks, prepared.metric_names
    strategy, model = state.strategy, state.model
    replicas = strategy.num_replicas_in_sync
    k = loop_hooks.substeps(hooks, key)

    def own_substeps(substep: int):
        return [(hook, phase, substep % hook.substeps(phase)) for hook, phase in zip(hooks, key)]

    def replica_step(batch, substep: int):
        with tf.GradientTape(persistent=True) as tape:
            with contextlib.ExitStack() as stack:
                outputs = stack.enter_context(loop_hooks.recording_outputs())
                forward = {id(hook): stack.enter_context(hook.forward_context()) for hook in hooks}
                loss, metrics = task.compute_loss(model, batch, training=True)
            reg = tf.add_n([tf.cast(term, tf.float32) for term in model.losses]) if model.losses else tf.constant(0.0)
            # The regulariser is added once per replica, hence divided by the replica count like the loss.
            task_objective = loop_hooks.Objective(
                loss=tf.cast(loss, tf.float32) + reg,
                variables=state.task_variables,
                optimizer=state.optimizer,
                clip=True,
            )
            ctx = loop_hooks.StepContext(
                batch=batch,
                loss=loss,
                metrics=metrics,
                objectives={"task": task_objective},
                forward=forward,
                outputs=outputs,
            )
            extra = {}
            for hook, phase, own in own_substeps(substep):
                extra.update(hook.objectives(ctx, phase, own) or {})
            enabled = [objective for objective in ctx.objectives.values() if objective.enabled]
            scaled = [objective.loss / replicas for objective in enabled]  # all-reduce SUM -> global-batch mean
        for objective, scaled_loss in zip(enabled, scaled):
            _apply(tape, objective, scaled_loss, replicas, clip_global_norm, clip_value)
        del tape
        for hook, phase, own in own_substeps(substep):
            hook.after_replica_step(ctx, phase, own)
        out = {"loss": loss, "reg_loss": reg, **extra, **metrics}
        return {name: tf.cast(out[name], tf.float32) / replicas for name in names}

    def compiled(substep: int):
        fn = lambda batch: replica_step(batch, substep)  # noqa: E731
        return tf.function(fn, jit_compile=True) if jit_compile else fn

    step_fns = [compiled(s) for s in range(k)]

    def run_substep(substep, iterator):
        out = strategy.run(step_fns[substep], args=(next(iterator),))
        for hook, phase, own in own_substeps(substep):
            hook.after_step(state, phase, own)
        return {name: strategy.reduce(tf.distribute.ReduceOp.SUM, out[name], axis=None) for name in names}

    @tf.function
    def train_loop(iterator, n):
        sums = {name: tf.constant(0.0) for name in names}
        for _ in tf.range(n // k):
            for substep in range(k):
                out = run_substep(substep, iterator)
                sums = {name: sums[name] + out[name] for name in names}
        return sums

    return train_loop


def _apply(tape, objective, scaled_loss, replicas, clip_global_norm, clip_value) -> None:
    """Applies one objective's gradients; variables that only steer a non-differentiable choice (a decoder's
    argmax) get a zero gradient, not None."""
    variables = list(objective.variables)
    grads = tape.gradient(scaled_loss, variables)
    grads = [tf.zeros(v.shape, v.dtype) if g is None else g for g, v in zip(grads, variables)]
    if objective.clip and (clip_global_norm or clip_value):
        grads = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, grads)
        if clip_global_norm:
            grads, _ = tf.clip_by_global_norm(grads, clip_global_norm)
        if clip_value:
            grads = [tf.clip_by_value(g, -clip_value, clip_value) for g in grads]
        grads = [g / replicas for g in grads]  # The optimizer's all-reduce sums these back to the clipped gradient.
    objective.optimizer.apply_gradients(zip(grads, variables))


def build_train_loop(
    task: base.Task,
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    strategy: tf.distribute.Strategy,
    *,
    hooks: Sequence[loop_hooks.LoopHook] = (),
    jit_compile: bool = False,
    clip_global_norm: float | None = None,
    clip_value: float | None = None,
    seed: int = 0,
) -> tuple[Callable, Prepared]:
    """The loop's compiled train loop for a model and optimizer made in `strategy.scope()`, outside `loop.run`
    (benchmarks, tests): the hooks are built as the loop builds them, in the phases of step 0."""
    prepared = prepare(task, model, optimizer, strategy, hooks, workdir="", seed=seed, train_steps=0)
    key = loop_hooks.phase_key(prepared.hooks, 0)
    train = make_train_loop(
        task, prepared, key=key, jit_compile=jit_compile, clip_global_norm=clip_global_norm, clip_value=clip_value
    )
    return train, prepared
