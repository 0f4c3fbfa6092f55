"""Plateau learning-rate drops: the rate x `factor` whenever a validation metric stops improving.

Reference: thesis Section 2.5.1 (spec ch2 7.4): the searched ConvRNNs (LSTM Opt, RGC Random, RGC Median) had their
learning rate lowered x0.1 by hand whenever top-1 validation accuracy saturated. The thesis gives no rule, patience or
threshold; this module makes the manual drops a rule (Keras' ReduceLROnPlateau semantics) that runs inside training.
The thresholds chosen for the experiments are in gin/schedules/plateau.gin and docs/decisions/plateau.md.

  lr(step) = base(step) * multiplier,   multiplier = factor ** drops     (a tf.Variable: no retrace when it changes)

Every `eval_every` steps (the hook asks the loop for control there, `next_stop`) the hook computes the validation
metric v (the weighted mean over the validation data of `metric_fn(model, batch)[metric]`, default top-1), then
(`PlateauRule.update`, mode "max"; "min" mirrors it):

  in_cooldown = cooldown_left > 0;  if in_cooldown: cooldown_left -= 1, wait = 0
  if first evaluation or v > best + min_delta:  best = v, wait = 0
  elif not in_cooldown:                          wait += 1
      if wait >= patience and drops < max_drops: drops += 1, wait = 0, cooldown_left = cooldown

With patience p the rate drops at the p-th evaluation in a row not beating the best by more than min_delta. After
`max_drops` drops the hook stops evaluating; max_drops = 0 never evaluates (the base schedule alone).
State (multiplier, best, wait, drops, cooldown_left, evaluations) is variables returned from `build`: checkpointed,
so a resumed run continues bit-identically (the evaluation runs in `on_loop_end`, before the checkpoint at that step).
Records: the per-step metric "learning_rate" (metrics.json, TensorBoard train/), a line per evaluation in
<workdir>/plateau.jsonl, TensorBoard scalars in <workdir>/plateau/ (chief), a log line per evaluation and per drop.
The hook wraps the loop optimizer's own schedule (rebuilt from its config, or `learning_rate`) in `build`, so the
schedule is configured once (loop.run.learning_rate); a float rate's optimizer variable is assigned instead.
"""

# b: batch (per replica)
import dataclasses
import json
import math
import os
from typing import Any, Callable, Mapping

import keras
import tensorflow as tf

from goaldriven import atomic_write
from goaldriven import hooks as loop_hooks
from goaldriven.tasks import validation_metric

MODES, LOG_FILE = ("max", "min"), "plateau.jsonl"


@keras.saving.register_keras_serializable(package="goaldriven")
class PlateauScaled(keras.optimizers.schedules.LearningRateSchedule):
    """lr(step) = schedule(step) * multiplier, with `multiplier` a scalar float32 tf.Variable read at run time.

    Args:
      schedule: the base rate: a float or a Keras LearningRateSchedule.
      multiplier: a scalar float32 variable (a float makes a new one; PlateauDrop passes its checkpointed variable).
    """

    def __init__(self, schedule: float | keras.optimizers.schedules.LearningRateSchedule, multiplier: Any = 1.0):
        super().__init__()
        self.schedule = schedule
        if not isinstance(multiplier, tf.Variable):
            multiplier = tf.Variable(float(multiplier), dtype=tf.float32, trainable=False, name="lr_multiplier")
        self.multiplier = multiplier

    def __call__(self, step):
        return base_rate(self.schedule, step) * tf.cast(self.multiplier, tf.float32)

    def get_config(self):
        schedule = self.schedule
        if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            schedule = keras.optimizers.schedules.serialize(schedule)
        return {"schedule": schedule, "multiplier": float(self.multiplier.numpy())}

    @classmethod
    def from_config(cls, config):
        schedule = config["schedule"]
        if isinstance(schedule, dict):
            schedule = keras.optimizers.schedules.deserialize(schedule)
        return cls(schedule, config["multiplier"])


def base_rate(schedule: float | keras.optimizers.schedules.LearningRateSchedule, step) -> tf.Tensor:
    """The float32 rate of a float or a Keras schedule at `step`."""
    if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        return tf.cast(schedule(step), tf.float32)
    return tf.constant(float(schedule), tf.float32)


@dataclasses.dataclass(frozen=True)
class Counters:
    """The rule's state between evaluations (host values of the hook's variables)."""

    evaluations: int = 0
    best: float = 0.0  # unset while evaluations == 0 (kept finite: the loop checks saved floats for NaN/inf)
    wait: int = 0
    drops: int = 0
    cooldown_left: int = 0


@dataclasses.dataclass(frozen=True)
class PlateauRule:
    """When to drop (module docstring); `update` is pure, so the rule is tested without training."""

    mode: str = "max"
    patience: int = 3
    min_delta: float = 0.0
    factor: float = 0.1
    max_drops: int = 3
    cooldown: int = 0

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES} (max for accuracy, min for a loss). Received: {self.mode!r}")
        for name in ("patience", "max_drops", "cooldown"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < (1 if name == "patience" else 0):
                raise ValueError(f"{name} must be an int >= {1 if name == 'patience' else 0}. Received: {value!r}")
        if not self.min_delta >= 0:
            raise ValueError(f"min_delta must be >= 0 (an improvement must exceed it). Received: {self.min_delta!r}")
        if not 0.0 < self.factor < 1.0:
            raise ValueError(f"factor must be in (0, 1) (thesis: 0.1). Received: {self.factor!r}")

    def improved(self, value: float, best: float) -> bool:
        return value > best + self.min_delta if self.mode == "max" else value < best - self.min_delta

    def update(self, counters: Counters, value: float) -> tuple[Counters, bool]:
        """(counters after evaluation `value`, whether the rate drops now)."""
        if not math.isfinite(value):
            raise ValueError(f"the validation metric is {value}: the model diverged; lower the learning rate.")
        c = dataclasses.replace(counters, evaluations=counters.evaluations + 1)
        in_cooldown = c.cooldown_left > 0
        if in_cooldown:
            c = dataclasses.replace(c, cooldown_left=c.cooldown_left - 1, wait=0)
        if counters.evaluations == 0 or self.improved(value, c.best):
            return dataclasses.replace(c, best=float(value), wait=0), False
        if in_cooldown:
            return c, False
        c = dataclasses.replace(c, wait=c.wait + 1)
        if c.wait >= self.patience and c.drops < self.max_drops:
            return dataclasses.replace(c, drops=c.drops + 1, wait=0, cooldown_left=self.cooldown), True
        return c, False

    def multiplier(self, drops: int) -> float:
        return self.factor**drops


class PlateauDrop(loop_hooks.LoopHook):
    """Drops the loop optimizer's learning rate x `factor` when the validation metric plateaus (module docstring).

    Args:
      data: the validation data, with `eval_dataset(*, global_batch_size, input_context)` (one finite pass; batches
        with an optional 0/1 "weight"), e.g. image_datasets.ImageNetData.
      eval_every: steps between evaluations (e.g. one epoch, schedules.whole_steps_per_epoch).
      metric: the key of metric_fn's output to monitor ("top1" by default).
      mode: "max" (accuracy) or "min" (a loss).
      patience: evaluations in a row without an improvement larger than min_delta before a drop.
      min_delta: an improvement must exceed this (absolute, in the metric's units).
      factor: the rate's multiplier per drop (thesis: 0.1).
      max_drops: at most this many drops (0: never evaluate, the base schedule alone).
      cooldown: evaluations after a drop during which no plateau is counted.
      metric_fn: (model, batch) -> {name: per-example (b,) values}; default top-1/top-5/loss of "logits".
      eval_batch_size: global batch of the validation pass (a multiple of the replica count).
      max_eval_batches: evaluate only this many global batches (None: the whole split).
      learning_rate: the base rate (float or schedule); None takes the loop optimizer's own (rebuilt from its
        config). When given it must equal the optimizer's at step 0.
      log_file: the per-evaluation record in the workdir.
    """

    def __init__(
        self,
        data: Any,
        *,
        eval_every: int,
        metric: str = "top1",
        mode: str = "max",
        patience: int = 3,
        min_delta: float = 0.0,
        factor: float = 0.1,
        max_drops: int = 3,
        cooldown: int = 0,
        metric_fn: Callable[
            [keras.Model, Mapping[str, tf.Tensor]], Mapping[str, tf.Tensor]
        ] = validation_metric.classification_metrics,
        eval_batch_size: int = 256,
        max_eval_batches: int | None = None,
        learning_rate: float | keras.optimizers.schedules.LearningRateSchedule | None = None,
        log_file: str = LOG_FILE,
    ):
        if not callable(getattr(data, "eval_dataset", None)):
            raise TypeError(
                f"PlateauDrop.data needs an eval_dataset(*, global_batch_size, input_context) method; got {data!r}."
            )
        if not isinstance(eval_every, int) or eval_every < 1:
            raise ValueError(f"PlateauDrop.eval_every must be a positive int (steps). Received: {eval_every!r}")
        if not isinstance(eval_batch_size, int) or eval_batch_size < 1:
            raise ValueError(f"PlateauDrop.eval_batch_size must be a positive int. Received: {eval_batch_size!r}")
        if max_eval_batches is not None and (not isinstance(max_eval_batches, int) or max_eval_batches < 1):
            raise ValueError(
                f"PlateauDrop.max_eval_batches must be None or an int >= 1. Received: {max_eval_batches!r}"
            )
        self.rule = PlateauRule(mode, patience, float(min_delta), float(factor), max_drops, cooldown)
        self.data, self.eval_every, self.metric, self.metric_fn = data, eval_every, metric, metric_fn
        self.eval_batch_size, self.max_eval_batches = eval_batch_size, max_eval_batches
        self.learning_rate, self.log_file = learning_rate, log_file
        self.schedule: PlateauScaled | None = None
        self.variables: dict[str, tf.Variable] = {}
        self._optimizer = self._evaluate = self._writer = None
        self._assigns_rate = False

    # -- state ------------------------------------------------------------------------------------------------------

    def counters(self) -> Counters:
        """The rule's state now (host values of the checkpointed variables)."""
        values = {f.name: self.variables[f"plateau_{f.name}"].numpy() for f in dataclasses.fields(Counters)}
        return Counters(**{name: (float if name == "best" else int)(value) for name, value in values.items()})

    def _assign(self, c: Counters) -> None:
        for f in dataclasses.fields(Counters):
            self.variables[f"plateau_{f.name}"].assign(getattr(c, f.name))
        self.variables["plateau_multiplier"].assign(self.rule.multiplier(c.drops))
        if self._assigns_rate:
            self._optimizer.learning_rate = float(self.schedule(0))

    # -- loop hook --------------------------------------------------------------------------------------------------

    def build(self, state: loop_hooks.LoopState) -> dict[str, tf.Variable]:
        """The state variables (in the strategy scope) and the optimizer's rate, wrapped with the multiplier."""
        base = self._base_rate(state.optimizer)
        make = lambda name, value, dtype: tf.Variable(value, dtype=dtype, trainable=False, name=name)  # noqa: E731
        self.variables = {
            "plateau_multiplier": make("plateau_multiplier", 1.0, tf.float32),
            "plateau_best": make("plateau_best", 0.0, tf.float64),
            **{
                f"plateau_{n}": make(f"plateau_{n}", 0, tf.int64)
                for n in ("evaluations", "wait", "drops", "cooldown_left")
            },
        }
        self.schedule = PlateauScaled(base, self.variables["plateau_multiplier"])
        self._optimizer = state.optimizer
        # A float rate lives in an optimizer variable (checkpointed with it) that Keras would untrack, breaking the
        # optimizer's checkpoint, if a schedule replaced it: drops assign that variable instead.
        self._assigns_rate = any(v.name == "learning_rate" for v in state.optimizer.variables)
        if not self._assigns_rate:
            state.optimizer.learning_rate = self.schedule
        return dict(self.variables)

    def _base_rate(self, optimizer: keras.optimizers.Optimizer):
        if self.learning_rate is None:
            config = optimizer.get_config()["learning_rate"]
            try:
                base = keras.optimizers.schedules.deserialize(config) if isinstance(config, dict) else float(config)
            except (TypeError, ValueError) as error:
                raise ValueError(
                    f"PlateauDrop cannot rebuild the optimizer's learning-rate schedule ({error}); pass it as "
                    "PlateauDrop.learning_rate (the same value as loop.run.learning_rate)."
                ) from error
        else:
            base, ours, theirs = self.learning_rate, base_rate(self.learning_rate, 0), float(optimizer.learning_rate)
            if not math.isclose(float(ours), theirs, rel_tol=1e-6):
                raise ValueError(
                    f"PlateauDrop.learning_rate gives {float(ours):.6g} at step 0 but the loop's optimizer {theirs:.6g}; "
                    "bind both to the same schedule (or leave PlateauDrop.learning_rate unset)."
                )
        if isinstance(base, PlateauScaled):
            raise ValueError("the loop's learning rate is already a PlateauScaled; bind the base schedule instead.")
        return base

    def metric_names(self) -> tuple[str, ...]:
        return ("learning_rate",)

    def objectives(self, ctx: loop_hooks.StepContext, phase, substep) -> dict[str, tf.Tensor]:
        del ctx, phase, substep
        return {"learning_rate": tf.cast(self._optimizer.learning_rate, tf.float32)}  # this step's rate

    def on_train_begin(self, state: loop_hooks.LoopState, step: int) -> None:
        self._evaluate = validation_metric.make_evaluator(
            state.model,
            state.strategy,
            self.data,
            metric=self.metric,
            metric_fn=self.metric_fn,
            eval_batch_size=self.eval_batch_size,
            max_batches=self.max_eval_batches,
        )
        if state.is_chief:
            _truncate_log(os.path.join(state.workdir, self.log_file), step)
        c = self.counters()
        if c.evaluations:
            state.log(
                f"plateau: resumed after {c.evaluations} evaluations (best {self.metric} {c.best:.4f}, wait {c.wait}, "
                f"{c.drops}/{self.rule.max_drops} drops, multiplier {self.rule.multiplier(c.drops):.4g})"
            )

    def _done(self) -> bool:
        return not self.variables or int(self.variables["plateau_drops"].numpy()) >= self.rule.max_drops

    def next_stop(self, step: int) -> int | None:
        return None if self._done() else (step // self.eval_every + 1) * self.eval_every

    def on_loop_end(self, state: loop_hooks.LoopState, step: int) -> None:
        if step % self.eval_every or step >= state.train_steps or self._done():
            return
        value, examples = self._evaluate()
        counters, dropped = self.rule.update(self.counters(), value)
        self._assign(counters)
        r, c = self.rule, counters
        state.log(
            f"plateau eval at step {step}: val {self.metric} {value:.4f} over {examples:,} examples (best {c.best:.4f}, "
            f"{c.wait}/{r.patience} without improvement > {r.min_delta:g})"
        )
        rate = float(self.schedule(self._optimizer.iterations))
        if dropped:
            state.log(
                f"plateau drop {c.drops}/{r.max_drops} at step {step}: val {self.metric} did not improve by more than "
                f"{r.min_delta:g} on {c.best:.4f} for {r.patience} evaluations; learning rate x{r.factor:g} -> "
                f"{rate:.4g} (multiplier {r.multiplier(c.drops):.4g})"
            )
        if state.is_chief:
            self._record(state.workdir, step, value, examples, c, dropped, rate)

    def _record(self, workdir: str, step: int, value: float, examples: int, c: Counters, dropped: bool, rate: float):
        entry = {"step": step, "metric": self.metric, "value": value, "examples": examples, "best": c.best,
                 "wait": c.wait, "drops": c.drops, "multiplier": self.rule.multiplier(c.drops), "dropped": dropped,
                 "learning_rate": rate}  # fmt: skip
        path = os.path.join(workdir, self.log_file)
        old = tf.io.gfile.GFile(path).read() if tf.io.gfile.exists(path) else ""
        atomic_write.write_text(path, old + json.dumps(entry) + "\n")
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(os.path.join(workdir, "plateau"))
        with self._writer.as_default():
            tf.summary.scalar(f"val_{self.metric}", value, step=step)
            tf.summary.scalar(f"best_{self.metric}", c.best, step=step)
            tf.summary.scalar("lr_multiplier", self.rule.multiplier(c.drops), step=step)
            tf.summary.scalar("learning_rate", rate, step=step)
        self._writer.flush()


def _truncate_log(path: str, step: int) -> None:
    """Drops the entries after `step` (written, then the run was stopped before the next checkpoint)."""
    if not tf.io.gfile.exists(path):
        return
    lines = [line for line in tf.io.gfile.GFile(path).read().splitlines() if line.strip()]
    kept = [line for line in lines if json.loads(line)["step"] <= step]
    if len(kept) != len(lines):
        atomic_write.write_text(path, "".join(line + "\n" for line in kept))
