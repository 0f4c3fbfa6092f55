"""The compiled train step of the loop (tasks/loop.py): one replica step per batch, run n times per call.

Per step, each replica computes the mean loss over its own batch; the optimizer all-reduces (sums) gradients across
replicas, so the loss is divided by the number of replicas to make that sum the gradient of the global-batch mean.
With aligned layers (goaldriven/alignment/) the step also collects the alignment loss R and applies the alignment
optimizer to the backward kernels (alignment/training.py); phases select which optimizers run.
"""

import keras
import tensorflow as tf

from goaldriven.alignment import scope as alignment_scope
from goaldriven.alignment import training as alignment_training
from goaldriven.tasks import base


def make_train_loop(
    task: base.Task,
    model: keras.Model,
    opt: keras.optimizers.Optimizer,
    strategy: tf.distribute.Strategy,
    *,
    jit_compile: bool,
    clip_global_norm: float | None,
    clip_value: float | None = None,
    groups: alignment_training.VariableGroups | None = None,
    align_opt: keras.optimizers.Optimizer | None = None,
    alignment: alignment_training.AlignmentTraining | None = None,
    phase: str = "both",
):
    """Returns a tf.function running n steps and returning per-metric sums over them (global-batch means).

    phase: "both" (task and alignment optimizers every step), "align" (alignment only: the delay), "alternate"
    (alignment-only and task-only steps in turn, alignment first; n must be even).
    """
    replicas = strategy.num_replicas_in_sync
    groups = groups or alignment_training.variable_groups(model)
    alignment = alignment or alignment_training.AlignmentTraining()
    names = ("loss", "reg_loss") + (("alignment_loss",) if groups.align or groups.tied_layers else ())
    names += tuple(task.metric_names)

    def replica_step(batch, apply_task: bool, apply_align: bool):
        with tf.GradientTape(persistent=apply_task and apply_align) as tape:
            with alignment_scope.collect_alignment_losses() as collected:
                loss, metrics = task.compute_loss(model, batch, training=True)
            reg = tf.add_n([tf.cast(term, tf.float32) for term in model.losses]) if model.losses else tf.constant(0.0)
            tied_r, align_r = alignment_training.split_alignment_loss(collected, groups)
            # Mean over this replica's batch / replicas: the optimizer's all-reduce SUM then yields the global mean.
            # The regulariser is added once per replica, hence divided by the replica count as well.
            scaled = (tf.cast(loss, tf.float32) + reg + tied_r) / replicas
            scaled_align = align_r / replicas
        if apply_task:
            # Weights that only steer a non-differentiable choice (a decoder's argmax) get a zero gradient, not None.
            grads = tape.gradient(scaled, groups.task)
            grads = [tf.zeros(v.shape, v.dtype) if g is None else g for g, v in zip(grads, groups.task)]
            if clip_global_norm or clip_value:
                grads = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, grads)
                if clip_global_norm:
                    grads, _ = tf.clip_by_global_norm(grads, clip_global_norm)
                if clip_value:
                    grads = [tf.clip_by_value(g, -clip_value, clip_value) for g in grads]
                grads = [
                    g / replicas for g in grads
                ]  # The optimizer's all-reduce sums these back to the clipped gradient.
            opt.apply_gradients(zip(grads, groups.task))
        if apply_align and align_opt is not None:
            align_grads = tape.gradient(scaled_align, groups.align)
            align_grads = [tf.zeros(v.shape, v.dtype) if g is None else g for g, v in zip(align_grads, groups.align)]
            align_opt.apply_gradients(zip(align_grads, groups.align))
        del tape
        out = {"loss": loss, "reg_loss": reg, "alignment_loss": tied_r + align_r, **metrics}
        return {name: tf.cast(out[name], tf.float32) / replicas for name in names}

    def compiled(apply_task, apply_align):
        fn = lambda batch: replica_step(batch, apply_task, apply_align)  # noqa: E731
        return tf.function(fn, jit_compile=True) if jit_compile else fn

    noisy_align = groups.align if align_opt is not None else groups.tied_kernels
    noisy_align_opt = align_opt if align_opt is not None else opt

    def run_step(step_fn, iterator, apply_task, apply_align):
        out = strategy.run(step_fn, args=(next(iterator),))
        if apply_align and alignment.update_noise_stddev and noisy_align:
            lr = alignment_training.current_learning_rate(noisy_align_opt)
            alignment_training.add_update_noise(noisy_align, alignment.update_noise_stddev, lr)
        if apply_task and alignment.task_update_noise_stddev:
            noisy_ids = {id(v) for v in noisy_align}
            task_vars = [v for v in groups.task if id(v) not in noisy_ids]
            alignment_training.add_update_noise(
                task_vars, alignment.task_update_noise_stddev, alignment_training.current_learning_rate(opt)
            )
        return {name: strategy.reduce(tf.distribute.ReduceOp.SUM, out[name], axis=None) for name in names}

    if phase not in ("both", "align", "alternate"):
        raise ValueError(f"unknown phase {phase!r}; use 'both', 'align' or 'alternate'.")
    schedule = {"both": [(True, True)], "align": [(False, True)], "alternate": [(False, True), (True, False)]}[phase]
    step_fns = [(compiled(t, a), t, a) for t, a in schedule]

    @tf.function
    def train_loop(iterator, n):
        sums = {name: tf.constant(0.0) for name in names}
        for _ in tf.range(n // len(step_fns)):
            for step_fn, apply_task, apply_align in step_fns:
                out = run_step(step_fn, iterator, apply_task, apply_align)
                sums = {name: sums[name] + out[name] for name in names}
        return sums

    return train_loop
