"""The distributed custom training loop that runs any `Task` (tasks/base.py) on any tf.distribute strategy.

One call of the compiled loop function runs `steps_per_loop` steps (`strategy.run` inside `tf.range`, the TPU host
loop), so the host talks to the accelerators once per loop, not once per step; the step itself is
tasks/train_step.py (global-batch means over replicas, the alignment optimizer of aligned models).

Around it: precision policy (float32 or mixed_bfloat16), optional XLA (`jit_compile`) of the step, checkpoints every
`checkpoint_every` steps with resume on rerun, SIGTERM/SIGINT (TPU preemption, Ctrl-C) write a checkpoint and return,
a non-finite loss stops the run with the last good checkpoint intact, progress lines, TensorBoard and metrics.json.
"""

import contextlib
import math
import os
import signal
import threading
import time
from typing import Any, Callable

import keras
import tensorflow as tf

from goaldriven import checkpointing, distribute, reporting, runtime
from goaldriven.alignment import diagnostics as alignment_diagnostics
from goaldriven.alignment import layers as alignment_layers
from goaldriven.alignment import training as alignment_training
from goaldriven.tasks import base, train_step

PRECISIONS = ("float32", "mixed_bfloat16")
MODES = ("train", "eval")


class NonFiniteLossError(FloatingPointError):
    """Raised when the training loss becomes NaN or infinite."""


def run(
    *,
    task: base.Task,
    strategy: tf.distribute.Strategy,
    workdir: str,
    train_steps: int,
    global_batch_size: int,
    optimizer: Callable[..., keras.optimizers.Optimizer] = keras.optimizers.Adam,
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule = 1e-4,
    steps_per_loop: int = 100,
    checkpoint_every: int = 1000,
    max_checkpoints: int = 3,
    precision: str = "float32",
    jit_compile: bool = False,
    seed: int = 0,
    clip_global_norm: float | None = None,
    clip_value: float | None = None,
    mode: str = "train",
    evaluate_at_end: bool = True,
    evaluate_at_start: bool = False,
    eval_every: int = 0,
    alignment: alignment_training.AlignmentTraining | None = None,
    on_built: Callable[[], None] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Trains (and evaluates) `task` in `workdir`; rerunning the same call resumes from the last checkpoint.

    Args:
      task: what to train (data, model, loss, metrics, evaluation).
      strategy: where to train (see goaldriven.distribute.get_strategy).
      workdir: checkpoints, TensorBoard summaries, metrics.json and evaluation outputs.
      train_steps: total number of optimizer steps (a resumed run trains the remainder); 0 saves and evaluates the
        untrained model (the thesis' untrained controls).
      global_batch_size: examples per step over all replicas (must divide evenly).
      optimizer: optimizer class or factory, called as `optimizer(learning_rate=...)` inside the strategy scope.
      learning_rate: constant or a Keras learning-rate schedule.
      steps_per_loop: steps per compiled loop call (and per progress line).
      checkpoint_every: steps between checkpoints (the last step is always saved).
      max_checkpoints: checkpoints kept on disk.
      precision: "float32" or "mixed_bfloat16" (Keras dtype policy: bfloat16 compute, float32 variables).
      jit_compile: compile the train step with XLA (what TPUs run; on CPU often slower).
      seed: seeds weights (keras.utils.set_random_seed) and the training data.
      clip_global_norm: clip the all-reduced gradient to this global norm.
      clip_value: clip each element of the all-reduced gradient to [-clip_value, clip_value] (the shallow "LSTM Opt"
        of thesis Chapter 2 trained with 0.3237).
      mode: "train" (train, then evaluate if `evaluate_at_end`) or "eval" (evaluate the latest checkpoint).
      evaluate_at_end: run `task.evaluate` after the last step.
      evaluate_at_start: also evaluate the untrained model when a run starts from scratch (the "before" figures).
      eval_every: also evaluate every this many steps (0: never during training).
      alignment: how backward kernels are trained when the model has aligned layers (a learning rule other than
        backprop; goaldriven/alignment/training.py): their optimizer and schedule, alternation, delay, update noise,
        diagnostics. None: the defaults (Adam 1e-3, simultaneous, no delay, no noise, no diagnostics).
      on_built: called once the task and model are built (the entry point writes the operative gin config then).
      log: where progress lines go.

    Returns:
      {"step": last step, "status": "finished" | "preempted" | "evaluated", "train": last train metrics,
       "eval": evaluation metrics}.
    """
    _validate(
        strategy=strategy,
        workdir=workdir,
        train_steps=train_steps,
        global_batch_size=global_batch_size,
        steps_per_loop=steps_per_loop,
        checkpoint_every=checkpoint_every,
        precision=precision,
        jit_compile=jit_compile,
        mode=mode,
        eval_every=eval_every,
    )
    alignment = alignment or alignment_training.AlignmentTraining()
    alignment.check_schedule(train_steps=train_steps, steps_per_loop=steps_per_loop, checkpoint_every=checkpoint_every)
    os.makedirs(workdir, exist_ok=True)
    chief = distribute.is_chief(strategy)
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(precision)
    try:
        keras.utils.set_random_seed(seed)
        with strategy.scope():
            model = task.build_model()
            groups = alignment_training.variable_groups(model)
            opt = optimizer(learning_rate=learning_rate)
            opt.build(groups.task)
            align_opt = None
            if groups.has_alignment_optimizer:
                align_opt = alignment.optimizer(learning_rate=alignment.learning_rate)
                align_opt.build(groups.align)
            step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        extra = {"alignment_optimizer": align_opt} if align_opt is not None else {}
        ckpt = checkpointing.Checkpointer(
            workdir,
            is_chief=chief,
            worker_id=distribute.worker_id(strategy),
            max_to_keep=max_checkpoints,
            model=model,
            optimizer=opt,
            step=step_var,
            **extra,
        )
        restored = ckpt.restore_latest()
        start = int(step_var.numpy())
        if on_built is not None:
            on_built()
        reporter = reporting.Reporter(workdir, total_steps=train_steps, is_chief=chief, log=log)
        n_params = sum(int(tf.size(v)) for v in model.trainable_variables)
        log(
            f"{task.name}: {n_params:,} trainable parameters, {strategy.num_replicas_in_sync} replica(s) "
            f"({type(strategy).__name__}), precision {precision}, jit_compile {jit_compile}"
        )
        aligned = groups.align or groups.frozen or groups.tied_layers
        if aligned:
            rules = sorted({layer.rule.name for layer in alignment_layers.aligned_layers(model)})
            log(
                f"learning rule {', '.join(rules)}: {len(groups.task)} task variables, {len(groups.align)} backward "
                f"kernels trained on R, {len(groups.frozen)} fixed, {len(groups.tied_layers)} layers tied (KP)"
            )
        diagnose = None
        if aligned and alignment.diagnostics_every and chief:
            diagnose = alignment_diagnostics.make_logger(task, model, alignment, seed=seed, workdir=workdir, log=log)

        def evaluate(step: int) -> dict[str, Any]:
            if chief:
                out_dir = _fresh_directory(os.path.join(workdir, "eval", f"step_{step}"), log)
            else:
                out_dir = os.path.join(workdir, "eval_scratch", f"worker_{distribute.worker_id(strategy)}")
            metrics = task.evaluate(model, strategy=strategy, output_dir=out_dir, step=step, log=log)
            reporter.evaluation(step, metrics)
            if not chief:
                checkpointing.remove_scratch(out_dir)
            return metrics

        if mode == "eval":
            if restored is None:
                raise FileNotFoundError(f"no checkpoint in {ckpt.directory} to evaluate; train first (mode='train').")
            log(f"evaluating {restored} (step {start})")
            metrics = evaluate(start)
            reporter.status(status="evaluated", step=start)
            return {"step": start, "status": "evaluated", "train": {}, "eval": metrics}

        if restored:
            log(f"resumed from {restored} at step {start}")
        elif evaluate_at_start and train_steps > 0:
            evaluate(0)
        loops = {}

        def train_loop(phase, iterator, n):
            if phase not in loops:
                loops[phase] = train_step.make_train_loop(
                    task,
                    model,
                    opt,
                    strategy,
                    jit_compile=jit_compile,
                    clip_global_norm=clip_global_norm,
                    clip_value=clip_value,
                    groups=groups,
                    align_opt=align_opt,
                    alignment=alignment,
                    phase=phase,
                )
            return loops[phase](iterator, n)

        dataset = strategy.distribute_datasets_from_function(
            lambda ctx: task.train_dataset(
                global_batch_size=global_batch_size, input_context=ctx, start_step=start, seed=seed
            )
        )
        iterator = iter(dataset)
        step, values, last_saved = start, {}, start if restored else None
        with _preemption_guard() as stop_requested:
            while step < train_steps:
                n = min(steps_per_loop, train_steps - step, checkpoint_every - step % checkpoint_every)
                if step < alignment.delay_steps:
                    n = min(n, alignment.delay_steps - step)
                if diagnose is not None:
                    n = min(n, alignment.diagnostics_every - step % alignment.diagnostics_every)
                began = time.perf_counter()
                sums = train_loop(alignment.phase(step), iterator, tf.constant(n, tf.int32))
                values = {name: float(value) / n for name, value in sums.items()}
                elapsed = time.perf_counter() - began
                if not all(math.isfinite(v) for v in values.values()):
                    reporter.status(status="non_finite_loss", step=step)
                    raise NonFiniteLossError(
                        f"non-finite loss ({reporting.format_metrics(values)}) in steps {step + 1}-{step + n}; training "
                        f"stopped. The last good checkpoint is {ckpt.latest} (step {last_saved}); rerunning resumes from it. "
                        "Lower the learning rate, set clip_global_norm, or use float32 precision."
                    )
                step += n
                step_var.assign(step)
                reporter.train(step, values, steps_per_second=n / elapsed, steps_done=n)
                if diagnose is not None and step % alignment.diagnostics_every == 0:
                    diagnose(step)
                if step % checkpoint_every == 0 or step == train_steps:
                    ckpt.save(step)
                    last_saved = step
                if stop_requested():
                    if last_saved != step:
                        ckpt.save(step)
                    log(
                        f"stop signal received: checkpoint at step {step} written to {ckpt.directory}; rerun to resume."
                    )
                    reporter.status(status="preempted", step=step)
                    return {"step": step, "status": "preempted", "train": values, "eval": {}}
                if eval_every and step % eval_every == 0 and step < train_steps:
                    evaluate(step)
        if last_saved != step:  # train_steps = 0 (untrained control), or a rerun of a finished run's config
            ckpt.save(step)
        metrics = evaluate(step) if evaluate_at_end else {}
        reporter.status(status="finished", step=step)
        return {"step": step, "status": "finished", "train": values, "eval": metrics}
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


def _validate(
    *,
    strategy,
    workdir,
    train_steps,
    global_batch_size,
    steps_per_loop,
    checkpoint_every,
    precision,
    jit_compile,
    mode,
    eval_every,
) -> None:
    if not workdir:
        raise ValueError("workdir is empty; pass --workdir=<folder for checkpoints and logs>.")
    if not isinstance(train_steps, int) or train_steps < 0:
        raise ValueError(
            f"train_steps must be an integer >= 0 (0: evaluate the untrained model); received {train_steps!r}."
        )
    for name, value in (("steps_per_loop", steps_per_loop), ("checkpoint_every", checkpoint_every)):
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer; received {value!r}.")
    if eval_every < 0:
        raise ValueError(f"eval_every must be >= 0 (0 disables evaluation during training); received {eval_every}.")
    if precision not in PRECISIONS:
        raise ValueError(
            f"precision {precision!r} is not supported; use one of {PRECISIONS} "
            "(mixed_float16 would need loss scaling, which TPUs do not need)."
        )
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not one of {MODES}.")
    runtime.check_global_batch_size(global_batch_size, strategy.num_replicas_in_sync)
    devices = getattr(strategy.extended, "worker_devices", ())
    if jit_compile and strategy.num_replicas_in_sync > 1 and all("CPU" in d.upper() for d in devices):
        raise ValueError(
            "jit_compile=True under a multi-replica CPU strategy fails in TensorFlow "
            "(keras-team/keras#18716); set JIT_COMPILE = False or use --strategy=cpu."
        )


def _fresh_directory(path: str, log: Callable[[str], None]) -> str:
    """`path`, or `path.1`, `path.2`, ... if it exists: an evaluation never overwrites an earlier one."""
    candidate, index = path, 0
    while os.path.exists(candidate):
        index += 1
        candidate = f"{path}.{index}"
    if index:
        log(f"{path} exists (an earlier evaluation of this step); writing this one to {candidate}")
    return candidate


@contextlib.contextmanager
def _preemption_guard():
    """While active, SIGTERM (preemption) and a first SIGINT only set a flag that the loop checks between loops."""
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested.is_set
        return

    def handler(signum, frame):
        del frame
        if signum == signal.SIGINT and requested.is_set():
            raise KeyboardInterrupt  # A second Ctrl-C stops at once.
        requested.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield requested.is_set
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
