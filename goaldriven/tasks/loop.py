"""The distributed custom training loop that runs any `Task` (tasks/base.py) on any tf.distribute strategy.

One call of the compiled loop function runs `steps_per_loop` steps (`strategy.run` inside `tf.range`, the TPU host
loop), so the host talks to the accelerators once per loop, not once per step; the step itself is
tasks/train_step.py (global-batch means over replicas).

The loop owns what every run needs: precision policy (float32 or mixed_bfloat16), optional XLA (`jit_compile`) of
the step, checkpoints every `checkpoint_every` steps with resume on rerun, SIGTERM/SIGINT (TPU preemption, Ctrl-C)
write a checkpoint and return, a non-finite loss stops the run with the last good checkpoint intact, evaluation,
progress lines, TensorBoard and metrics.json. Everything task- or rule-specific (a learning rule's second optimizer,
a momentum encoder, a queue, a recorder) is a loop hook (goaldriven/hooks.py): the task's own `hooks()` and the
run's `hooks`. A run is three steps around one `_Session`: `_build` (model, optimizer, hooks, checkpoint, restore),
`_train` (the host loop) and `_Session.evaluate`.
"""

import contextlib
import dataclasses
import math
import os
import signal
import threading
import time
from typing import Any, Callable, Sequence

import keras
import tensorflow as tf

from goaldriven import checkpointing, distribute, fused_optimizers, reporting, workdir_lock
from goaldriven import hooks as loop_hooks
from goaldriven.tasks import base, loop_settings, train_step

PRECISIONS, MODES = loop_settings.PRECISIONS, loop_settings.MODES


class NonFiniteLossError(FloatingPointError):
    """Raised when the training loss, the weights or the optimizer state become NaN or infinite."""


def run(
    *,
    task: base.Task,
    strategy: tf.distribute.Strategy,
    workdir: str,
    train_steps: int,
    global_batch_size: int,
    optimizer: Callable[..., keras.optimizers.Optimizer] = fused_optimizers.Adam,
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
    output_dir: str | None = None,
    hooks: Sequence[loop_hooks.LoopHook] = (),
    on_built: Callable[[], None] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Trains (and evaluates) `task` in `workdir`; rerunning the same call resumes from the last checkpoint.

    Args:
      task: what to train (data, model, loss, metrics, evaluation, the task's own hooks).
      strategy: where to train (see goaldriven.distribute.get_strategy).
      workdir: checkpoints, TensorBoard summaries, metrics.json and evaluation outputs.
      train_steps: total number of optimizer steps (a resumed run trains the remainder); 0 saves and evaluates the
        untrained model (the thesis' untrained controls).
      global_batch_size: examples per step over all replicas (must divide evenly).
      optimizer: optimizer class or factory, called as `optimizer(learning_rate=...)` inside the strategy scope
        (default: Adam with fused update kernels, goaldriven/fused_optimizers.py).
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
      output_dir: mode="eval" only: where the evaluation and metrics.json go instead of the workdir (which is then
        only read: an archived, read-only run can be evaluated).
      hooks: loop hooks of this run, after the task's own (goaldriven/hooks.py), e.g. a learning rule's training
        (`alignment.training.AlignmentTraining(...)`: its optimizer and schedule, alternation, delay, update noise,
        diagnostics; a model with aligned layers gets one with the defaults when no hook trains them).
      on_built: called once the task and model are built (the entry point writes the operative gin config then).
      log: where progress lines go.

    Returns:
      {"step": last step, "status": "finished" | "preempted" | "evaluated", "train": last train metrics,
       "eval": evaluation metrics}.
    """
    settings = loop_settings.Settings(
        workdir=workdir,
        train_steps=train_steps,
        global_batch_size=global_batch_size,
        steps_per_loop=steps_per_loop,
        checkpoint_every=checkpoint_every,
        max_checkpoints=max_checkpoints,
        precision=precision,
        jit_compile=jit_compile,
        seed=seed,
        clip_global_norm=clip_global_norm,
        clip_value=clip_value,
        mode=mode,
        evaluate_at_end=evaluate_at_end,
        evaluate_at_start=evaluate_at_start,
        eval_every=eval_every,
        output_dir=output_dir,
    )
    settings.validate(strategy)
    hooks = [*task.hooks(), *hooks]
    for hook in hooks:
        hook.check(train_steps=train_steps, steps_per_loop=steps_per_loop, checkpoint_every=checkpoint_every)
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(precision)
    lock = workdir_lock.hold(settings.outputs, mode, log) if distribute.is_chief(strategy) else contextlib.nullcontext()
    try:
        with lock:
            session = _build(task, strategy, lambda: optimizer(learning_rate=learning_rate), hooks, settings, log)
            if on_built is not None:
                on_built()
            if mode == "eval":
                return session.evaluate_checkpoint()
            return _train(session)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


@dataclasses.dataclass
class _Session:
    """One run's built state: what `_train` and the evaluations work on."""

    task: base.Task
    settings: loop_settings.Settings
    prepared: train_step.Prepared
    checkpointer: checkpointing.Checkpointer
    reporter: reporting.Reporter
    restored: str | None
    start: int
    log: Callable[[str], None]

    @property
    def state(self) -> loop_hooks.LoopState:
        return self.prepared.state

    def evaluate(self, step: int) -> dict[str, Any]:
        strategy, workdir = self.state.strategy, self.settings.outputs
        if self.state.is_chief:
            out_dir = _fresh_directory(os.path.join(workdir, "eval", f"step_{step}"), self.log)
        else:
            out_dir = os.path.join(workdir, "eval_scratch", f"worker_{distribute.worker_id(strategy)}")
        metrics = self.task.evaluate(self.state.model, strategy=strategy, output_dir=out_dir, step=step, log=self.log)
        self.reporter.evaluation(step, metrics)
        if not self.state.is_chief:
            checkpointing.remove_scratch(out_dir)
        return metrics

    def evaluate_checkpoint(self) -> dict[str, Any]:
        if self.restored is None:
            raise FileNotFoundError(
                f"no checkpoint in {self.checkpointer.directory} to evaluate; train first (mode='train')."
            )
        self.log(f"evaluating {self.restored} (step {self.start})")
        metrics = self.evaluate(self.start)
        self.reporter.status(status="evaluated", step=self.start)
        return {"step": self.start, "status": "evaluated", "train": {}, "eval": metrics}


def _build(task, strategy, make_optimizer, hooks, settings: loop_settings.Settings, log) -> _Session:
    """Model, optimizer and hooks in the strategy scope, the checkpoint (restored if one exists), the reporter."""
    chief = distribute.is_chief(strategy)
    keras.utils.set_random_seed(settings.seed)
    with strategy.scope():
        model = task.build_model()
        opt = make_optimizer()
    prepared = train_step.prepare(
        task,
        model,
        opt,
        strategy,
        hooks,
        workdir=settings.workdir,
        seed=settings.seed,
        train_steps=settings.train_steps,
        is_chief=chief,
        log=log,
    )
    checkpointer = checkpointing.Checkpointer(
        settings.workdir,
        is_chief=chief,
        worker_id=distribute.worker_id(strategy),
        max_to_keep=settings.max_checkpoints,
        model=model,
        optimizer=opt,
        step=prepared.state.step,
        **prepared.trackables,
    )
    if chief and settings.mode == "train":
        checkpointer.remove_interrupted_saves(log)
    restored = checkpointer.restore_latest(log)
    reporter = reporting.Reporter(settings.outputs, total_steps=settings.train_steps, is_chief=chief, log=log)
    n_params = sum(int(tf.size(v)) for v in model.trainable_variables)
    log(
        f"{task.name}: {n_params:,} trainable parameters, {strategy.num_replicas_in_sync} replica(s) "
        f"({type(strategy).__name__}), precision {settings.precision}, jit_compile {settings.jit_compile}"
    )
    start = int(prepared.state.step.numpy())
    return _Session(task, settings, prepared, checkpointer, reporter, restored, start, log)


def _loop_length(step: int, settings: loop_settings.Settings, hooks) -> int:
    """Steps of the next compiled loop: up to the next progress line, checkpoint, end, or step a hook needs."""
    n = min(
        settings.steps_per_loop,
        settings.train_steps - step,
        settings.checkpoint_every - step % settings.checkpoint_every,
    )
    stop = loop_hooks.next_stop(hooks, step)
    return n if stop is None else min(n, stop - step)


def _train(session: _Session) -> dict[str, Any]:
    """The host loop: compiled loops of steps, checks, reports, checkpoints, preemption, evaluations."""
    settings, state, hooks, task = session.settings, session.state, session.prepared.hooks, session.task
    strategy, ckpt, reporter, log = state.strategy, session.checkpointer, session.reporter, session.log
    start = session.start
    if session.restored:
        log(f"resumed from {session.restored} at step {start}")
    elif settings.evaluate_at_start and settings.train_steps > 0:
        session.evaluate(0)
    for hook in hooks:
        hook.on_train_begin(state, start)
    loops: dict[tuple, Callable] = {}
    finite = _finiteness_check(session)
    dataset = strategy.distribute_datasets_from_function(
        lambda ctx: task.train_dataset(
            global_batch_size=settings.global_batch_size, input_context=ctx, start_step=start, seed=settings.seed
        )
    )
    iterator = iter(dataset)
    step, values = start, {}
    last_saved, last_path = (start, session.restored) if session.restored else (None, None)
    with _preemption_guard() as stop_requested:
        while step < settings.train_steps:
            n, key = _loop_length(step, settings, hooks), loop_hooks.phase_key(hooks, step)
            k = loop_hooks.substeps(hooks, key)
            if n % k:
                raise ValueError(
                    f"the hooks' phase {key} runs {k} substeps per iteration but the loop from step {step} has {n} "
                    f"steps; make train_steps, steps_per_loop, checkpoint_every and the hooks' boundaries multiples "
                    f"of {k}."
                )
            if key not in loops:
                loops[key] = train_step.make_train_loop(
                    task,
                    session.prepared,
                    key=key,
                    jit_compile=settings.jit_compile,
                    clip_global_norm=settings.clip_global_norm,
                    clip_value=settings.clip_value,
                )
            began = time.perf_counter()
            sums = loops[key](iterator, tf.constant(n, tf.int32))
            values = {name: float(value) / n for name, value in sums.items()}
            elapsed = time.perf_counter() - began
            if not all(math.isfinite(v) for v in values.values()) or not bool(finite()):
                reporter.status(status="non_finite_loss", step=step)
                raise NonFiniteLossError(_divergence_message(values, step, n, last_path, last_saved))
            step += n
            state.step.assign(step)
            reporter.train(step, values, steps_per_second=n / elapsed, steps_done=n)
            for hook in hooks:
                hook.on_loop_end(state, step)
            if step % settings.checkpoint_every == 0 or step == settings.train_steps:
                last_path, last_saved = ckpt.save(step), step
            if stop_requested():
                if last_saved != step:
                    last_path, last_saved = ckpt.save(step), step
                log(f"stop signal received: checkpoint at step {step} written to {ckpt.directory}; rerun to resume.")
                reporter.status(status="preempted", step=step)
                return {"step": step, "status": "preempted", "train": values, "eval": {}}
            if settings.eval_every and step % settings.eval_every == 0 and step < settings.train_steps:
                session.evaluate(step)
    if last_saved != step:  # train_steps = 0 (untrained control), or a rerun of a finished run's config
        ckpt.save(step)
    for hook in hooks:
        hook.on_train_end(state, step)
    metrics = session.evaluate(step) if settings.evaluate_at_end else {}
    reporter.status(status="finished", step=step)
    return {"step": step, "status": "finished", "train": values, "eval": metrics}


def _finiteness_check(session: _Session) -> Callable[[], tf.Tensor]:
    """A compiled check that every float variable a checkpoint would hold (model, optimizers, hooks) is finite: a
    checkpoint is only written from such a state, so the last checkpoint is always a good one."""
    tracked = [session.state.model, session.state.optimizer, *session.prepared.trackables.values()]
    variables, seen = [], set()
    for item in tracked:
        for v in item if isinstance(item, list | tuple) else getattr(item, "variables", [item]):
            if isinstance(v, tf.Variable | keras.Variable) and tf.as_dtype(v.dtype).is_floating and id(v) not in seen:
                seen.add(id(v))
                variables.append(v)

    @tf.function
    def finite():
        return tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in variables] or [True])

    return finite


def _divergence_message(values: dict, step: int, n: int, latest: str | None, last_saved: int | None) -> str:
    what = (
        f"non-finite loss ({reporting.format_metrics(values)})"
        if not all(math.isfinite(v) for v in values.values())
        else "non-finite weights or optimizer state"
    )
    fix = "Lower the learning rate, set clip_global_norm, or use float32 precision"
    if latest is None:
        return (
            f"{what} in steps {step + 1}-{step + n}; training stopped before any checkpoint was written. {fix}, and "
            "rerun from scratch (the workdir holds no checkpoint to resume from)."
        )
    return (
        f"{what} in steps {step + 1}-{step + n}; training stopped. The last good checkpoint is {latest} (step "
        f"{last_saved}), whose weights are finite; rerunning resumes from it. {fix}."
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
