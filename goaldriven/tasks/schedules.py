"""Learning-rate schedules of the ImageNet models (thesis Section 2.5.1; spec ch2 7.3-7.4), as Keras schedules.

  piecewise constant by epoch:  lr(step) = values[#{i : step >= round(boundaries[i] * steps_per_epoch)}]
  linear scaling rule:          base = reference_lr * global_batch_size / reference_batch_size
  ResNet schedule (all models except AlexNet): base, x0.1 at epochs 30, 60, 80; 90 epochs. ResNets: 0.1 per 256
    images, i.e. 0.025 at batch 64 (the thesis' setting).
  constant (thesis Chapter 6 CIFAR-10): base, scaled, for every step.
  AlexNet schedule: 0.01 -> 0.005 (epoch 30) -> 0.001 (epoch 60) -> 0.0005 (epoch 80), 90 epochs (length assumed,
    spec 7.4 [D]); scaled the same way when the batch differs from the reference.

SimCLR schedule (thesis Chapter 3; Chen et al. 2020, Appendix B.1): base = 0.3 x global_batch_size / 256 (4.8 at
batch 4096), linear warm-up over 10 epochs, then cosine decay to 0 at the end of training (200 epochs):
  lr(step) = base * (r + (1 - r) * step / W)                     for step < W (W warm-up steps, r the warm-up ratio)
           = base * (1 + cos(pi * (step - W) / (T - W))) / 2     for W <= step < T (T total steps)
           = 0                                                    for step >= T
so the first update uses base * r (r = 1e-4) and step W uses base.

`step` is the optimizer's iteration count (0 before the first update), so epochs [0, 30) use the first value and the
first step of epoch 30 (0-based) uses the second. Boundaries may be fractional epochs; `steps_per_epoch` may be
fractional too (ImageNet: 1,281,167 / global batch). The searched models (LSTM Opt, RGC Random, RGC Median) dropped
the rate x0.1 by hand when validation top-1 saturated (spec 7.4); that needs the evaluation metric, so it is a loop
hook wrapping one of these schedules: tasks/plateau.py.
"""

import math
from typing import Sequence

import keras
from keras import ops

IMAGENET_TRAIN_EXAMPLES = 1_281_167
RESNET_BOUNDARIES = (30, 60, 80)
ALEXNET_MULTIPLIERS = (1.0, 0.5, 0.1, 0.05)  # 0.01, 0.005, 0.001, 0.0005


@keras.saving.register_keras_serializable(package="goaldriven")
class EpochPiecewiseConstant(keras.optimizers.schedules.LearningRateSchedule):
    """Piecewise-constant learning rate with boundaries given in epochs.

    Args:
      values: learning rates, one more than boundaries.
      boundaries: strictly increasing epochs at which the next value starts.
      steps_per_epoch: optimizer steps per epoch (> 0; may be fractional).
      name: schedule name.
      warmup_epochs: linear warm-up from 0 over this many epochs: lr(step) = value(step) * step / warmup steps
        before it (TF official ResNets; the learning-rule runs of thesis Chapter 5 use 5 or 6 epochs).

    Call args:
      step: optimizer iteration (scalar, any numeric dtype).

    Returns:
      float32 scalar learning rate.
    """

    def __init__(
        self,
        values: Sequence[float],
        boundaries: Sequence[float],
        steps_per_epoch: float,
        name: str = "epoch_piecewise_constant",
        warmup_epochs: float = 0.0,
    ):
        super().__init__()
        values, boundaries = [float(v) for v in values], [float(b) for b in boundaries]
        if len(values) != len(boundaries) + 1:
            raise ValueError(
                f"values needs exactly one more entry than boundaries; received {len(values)} values and "
                f"{len(boundaries)} boundaries ({values}, {boundaries})."
            )
        if any(b <= a for a, b in zip(boundaries, boundaries[1:])) or any(b < 0 for b in boundaries):
            raise ValueError(f"boundaries must be non-negative and strictly increasing epochs. Received: {boundaries}")
        if not steps_per_epoch > 0:
            raise ValueError(
                f"steps_per_epoch must be > 0 (training examples / global batch). Received: {steps_per_epoch!r}"
            )
        if warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0 (0: no warm-up). Received: {warmup_epochs}")
        self.warmup_epochs = float(warmup_epochs)
        self.values = values
        self.boundaries = boundaries
        self.steps_per_epoch = float(steps_per_epoch)
        self.name = name

    @property
    def boundary_steps(self) -> list[int]:
        """The first optimizer step of each new value."""
        return [int(round(b * self.steps_per_epoch)) for b in self.boundaries]

    def __call__(self, step):
        step = ops.cast(step, "int64")
        if not self.boundaries:
            value = ops.convert_to_tensor(self.values[0], "float32")
        else:
            starts = ops.convert_to_tensor(self.boundary_steps, "int64")
            index = ops.sum(ops.cast(ops.greater_equal(step, starts), "int32"))
            value = ops.take(ops.convert_to_tensor(self.values, "float32"), index)
        warmup_steps = self.warmup_epochs * self.steps_per_epoch
        if warmup_steps > 0:
            value = value * ops.minimum(1.0, ops.cast(step, "float32") / warmup_steps)
        return value

    def get_config(self):
        return {
            "values": list(self.values),
            "boundaries": list(self.boundaries),
            "steps_per_epoch": self.steps_per_epoch,
            "name": self.name,
            "warmup_epochs": self.warmup_epochs,
        }


def scaled_learning_rate(base_learning_rate: float, *, global_batch_size: int, reference_batch_size: int) -> float:
    """Linear scaling rule: base * global_batch_size / reference_batch_size."""
    if global_batch_size <= 0 or reference_batch_size <= 0:
        raise ValueError(
            f"batch sizes must be positive; received global_batch_size={global_batch_size}, "
            f"reference_batch_size={reference_batch_size}."
        )
    return base_learning_rate * global_batch_size / reference_batch_size


def imagenet_steps_per_epoch(global_batch_size: int, num_examples: int = IMAGENET_TRAIN_EXAMPLES) -> float:
    """Optimizer steps per pass over `num_examples` (fractional; ImageNet train by default)."""
    if global_batch_size <= 0:
        raise ValueError(f"global_batch_size must be positive. Received: {global_batch_size}")
    return num_examples / global_batch_size


def whole_steps_per_epoch(
    global_batch_size: int, num_examples: int = IMAGENET_TRAIN_EXAMPLES, loop_steps_per_update: int = 1
) -> int:
    """Whole loop steps per epoch: optimizer steps rounded down (at least 1) x `loop_steps_per_update` (2 when task
    and alignment updates alternate). Epoch e is reached at e x this value, which never passes
    `train_steps_for_epochs(e)` (rounded up). Hooks that act per epoch (the observables recorder) use it."""
    if loop_steps_per_update < 1:
        raise ValueError(f"loop_steps_per_update must be >= 1. Received: {loop_steps_per_update}")
    return max(1, int(imagenet_steps_per_epoch(global_batch_size, num_examples))) * int(loop_steps_per_update)


def resnet_schedule(
    base_learning_rate: float = 0.1,
    *,
    global_batch_size: int,
    reference_batch_size: int = 256,
    steps_per_epoch: float,
    boundaries: Sequence[float] = RESNET_BOUNDARIES,
    factor: float = 0.1,
    warmup_epochs: float = 0.0,
) -> EpochPiecewiseConstant:
    """The "ResNet schedule": scaled base rate, multiplied by `factor` at each boundary epoch.

    Thesis settings: ResNets 0.1 per 256 at batch 64 (= 0.025); 6-layer BaseNet and shallow ConvRNNs 0.01 at 256;
    11-layer BaseNet and intermediate ConvRNNs 0.0025 at 64 (reference batch = the table's batch, no rescaling).
    """
    if not 0.0 < factor <= 1.0:
        raise ValueError(f"factor must be in (0, 1] (thesis: 0.1). Received: {factor}")
    base = scaled_learning_rate(
        base_learning_rate, global_batch_size=global_batch_size, reference_batch_size=reference_batch_size
    )
    values = [base * factor**i for i in range(len(boundaries) + 1)]
    return EpochPiecewiseConstant(
        values, boundaries, steps_per_epoch, name="resnet_schedule", warmup_epochs=warmup_epochs
    )


def constant_schedule(
    base_learning_rate: float, *, global_batch_size: int, reference_batch_size: int
) -> EpochPiecewiseConstant:
    """A constant rate base x global_batch_size / reference_batch_size, no warm-up: the thesis Chapter 6 CIFAR-10
    recipe (spec ch5 11.2; reference_batch_size = global_batch_size keeps the base rate, as for Adam/FA, A15)."""
    base = scaled_learning_rate(
        base_learning_rate, global_batch_size=global_batch_size, reference_batch_size=reference_batch_size
    )
    return EpochPiecewiseConstant([base], [], 1.0, name="constant_schedule")


def alexnet_schedule(
    base_learning_rate: float = 0.01,
    *,
    global_batch_size: int,
    reference_batch_size: int = 1024,
    steps_per_epoch: float,
    boundaries: Sequence[float] = RESNET_BOUNDARIES,
    multipliers: Sequence[float] = ALEXNET_MULTIPLIERS,
) -> EpochPiecewiseConstant:
    """The AlexNet schedule: scaled base x (1, 0.5, 0.1, 0.05) from epochs 0, 30, 60, 80 (thesis: batch 1024)."""
    base = scaled_learning_rate(
        base_learning_rate, global_batch_size=global_batch_size, reference_batch_size=reference_batch_size
    )
    return EpochPiecewiseConstant([base * m for m in multipliers], boundaries, steps_per_epoch, name="alexnet_schedule")


def train_steps_for_epochs(
    epochs: float = 90, *, global_batch_size: int, num_examples: int = IMAGENET_TRAIN_EXAMPLES
) -> int:
    """Optimizer steps of `epochs` passes over `num_examples` (rounded up): the TRAIN_STEPS of the ImageNet configs."""
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0. Received: {epochs}")
    return int(math.ceil(epochs * imagenet_steps_per_epoch(global_batch_size, num_examples)))


def warmup_cosine_decay(
    base_learning_rate: float, *, warmup_steps: int, train_steps: int
) -> keras.optimizers.schedules.CosineDecay:
    """Linear warm-up 0 -> base over `warmup_steps`, then cosine decay over `train_steps` further steps (the digits
    recipe). `train_steps = 0` (an untrained control) gives a schedule that is never read; Keras needs decay_steps > 0.
    """
    if train_steps < 0 or warmup_steps < 0:
        raise ValueError(f"steps must be >= 0. Received: warmup_steps={warmup_steps}, train_steps={train_steps}")
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        warmup_target=base_learning_rate,
        warmup_steps=warmup_steps,
        decay_steps=max(train_steps, 1),
    )


@keras.saving.register_keras_serializable(package="goaldriven")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from warmup_ratio * base to base, then cosine decay to 0 (formula in the module docstring).

    Args:
      base_learning_rate: the peak rate, reached at step `warmup_steps` (>= 0).
      warmup_steps: W >= 0 (0: cosine from step 0).
      total_steps: T > 0, the step at which the rate reaches 0 (and stays); W <= T.
      warmup_ratio: r in [0, 1], the rate of step 0 as a fraction of base (SimCLR runs: 1e-4).
      name: schedule name.

    Call args:
      step: optimizer iteration (scalar, any numeric dtype).

    Returns:
      float32 scalar learning rate.
    """

    def __init__(
        self,
        base_learning_rate: float,
        warmup_steps: int,
        total_steps: int,
        warmup_ratio: float = 0.0,
        name: str = "warmup_cosine",
    ):
        super().__init__()
        if not base_learning_rate >= 0:
            raise ValueError(f"base_learning_rate must be >= 0. Received: {base_learning_rate}")
        if not total_steps > 0:
            raise ValueError(f"total_steps must be > 0 (the training steps). Received: {total_steps}")
        if not 0 <= warmup_steps <= total_steps:
            raise ValueError(
                f"warmup_steps must be in [0, total_steps={total_steps}] (fewer warm-up epochs or more training). "
                f"Received: {warmup_steps}"
            )
        if not 0.0 <= warmup_ratio <= 1.0:
            raise ValueError(
                f"warmup_ratio must be in [0, 1] (the first step's fraction of base). Received: {warmup_ratio}"
            )
        self.base_learning_rate = float(base_learning_rate)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.warmup_ratio = float(warmup_ratio)
        self.name = name

    def __call__(self, step):
        step = ops.cast(step, "float32")
        base, ratio = self.base_learning_rate, self.warmup_ratio
        warmup = base * (ratio + (1.0 - ratio) * step / max(self.warmup_steps, 1))
        progress = ops.minimum(1.0, (step - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1))
        cosine = 0.5 * base * (1.0 + ops.cos(math.pi * progress))
        value = ops.where(ops.less(step, self.warmup_steps), warmup, cosine)
        return ops.where(ops.less(step, self.total_steps), value, 0.0)

    def get_config(self):
        return {
            "base_learning_rate": self.base_learning_rate,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "warmup_ratio": self.warmup_ratio,
            "name": self.name,
        }


def _epochs_to_steps(*, steps_per_epoch: float, epochs: float, warmup_epochs: float) -> tuple[int, int]:
    """(warm-up steps, total steps): the warm-up rounded, the total rounded up (as `train_steps_for_epochs`)."""
    if not steps_per_epoch > 0:
        raise ValueError(
            f"steps_per_epoch must be > 0 (training examples / global batch). Received: {steps_per_epoch!r}"
        )
    if not epochs > 0:
        raise ValueError(f"epochs must be > 0. Received: {epochs}")
    if not 0 <= warmup_epochs <= epochs:
        raise ValueError(f"warmup_epochs must be in [0, epochs={epochs}]. Received: {warmup_epochs}")
    return int(round(warmup_epochs * steps_per_epoch)), int(math.ceil(epochs * steps_per_epoch))


def simclr_schedule(
    base_learning_rate: float = 0.3,
    *,
    global_batch_size: int,
    reference_batch_size: int = 256,
    steps_per_epoch: float,
    epochs: float = 200,
    warmup_epochs: float = 10,
    warmup_ratio: float = 1e-4,
) -> WarmupCosine:
    """SimCLR's schedule: base x batch / 256 (4.8 at 4096), warm-up from base x warmup_ratio over `warmup_epochs`
    (rounded to steps), then cosine to 0 at the end of `epochs` (rounded up to steps)."""
    base = scaled_learning_rate(
        base_learning_rate, global_batch_size=global_batch_size, reference_batch_size=reference_batch_size
    )
    warmup_steps, total_steps = _epochs_to_steps(
        steps_per_epoch=steps_per_epoch, epochs=epochs, warmup_epochs=warmup_epochs
    )
    return WarmupCosine(base, warmup_steps, total_steps, warmup_ratio=warmup_ratio, name="simclr_schedule")


def cosine_schedule(
    base_learning_rate: float,
    *,
    global_batch_size: int,
    reference_batch_size: int,
    steps_per_epoch: float,
    epochs: float,
) -> WarmupCosine:
    """Cosine decay without warm-up from base x global_batch_size / reference_batch_size to 0 at the end of
    `epochs` (rounded up to steps)."""
    base = scaled_learning_rate(
        base_learning_rate, global_batch_size=global_batch_size, reference_batch_size=reference_batch_size
    )
    _, total_steps = _epochs_to_steps(steps_per_epoch=steps_per_epoch, epochs=epochs, warmup_epochs=0)
    return WarmupCosine(base, 0, total_steps, name="cosine_schedule")
