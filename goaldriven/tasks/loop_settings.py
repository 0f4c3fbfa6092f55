"""The settings of a training run (`loop.run`'s arguments other than the task, strategy, optimizer and hooks), checked
before anything is built: each wrong value is one ValueError that names the setting and the fix."""

import dataclasses
import os

import tensorflow as tf

from goaldriven import runtime

PRECISIONS = ("float32", "mixed_bfloat16")
MODES = ("train", "eval")


@dataclasses.dataclass(frozen=True)
class Settings:
    """How a run trains (the arguments of `run` other than task, strategy, optimizer, hooks and callbacks)."""

    workdir: str
    train_steps: int
    global_batch_size: int
    steps_per_loop: int = 100
    checkpoint_every: int = 1000
    max_checkpoints: int = 3
    precision: str = "float32"
    jit_compile: bool = False
    seed: int = 0
    clip_global_norm: float | None = None
    clip_value: float | None = None
    mode: str = "train"
    evaluate_at_end: bool = True
    evaluate_at_start: bool = False
    eval_every: int = 0
    output_dir: str | None = None

    @property
    def outputs(self) -> str:
        """Where metrics.json, TensorBoard events and evaluations go: output_dir, else the workdir."""
        return self.output_dir or self.workdir

    def validate(self, strategy: tf.distribute.Strategy) -> None:
        """Raises ValueError naming the setting and the fix (before anything is built)."""
        if not self.workdir:
            raise ValueError("workdir is empty; pass --workdir=<folder for checkpoints and logs>.")
        check_folder(self.workdir, "--workdir", writable=self.mode == "train" or self.output_dir is None)
        if self.output_dir:
            if self.mode != "eval":
                raise ValueError("output_dir is for --mode=eval (training writes to its workdir); drop --output_dir.")
            check_folder(self.output_dir, "--output_dir", writable=True)
        if not isinstance(self.train_steps, int) or self.train_steps < 0:
            raise ValueError(
                f"train_steps must be an integer >= 0 (0: evaluate the untrained model); received {self.train_steps!r}."
            )
        for name in ("steps_per_loop", "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer; received {value!r}.")
        if self.eval_every < 0:
            raise ValueError(
                f"eval_every must be >= 0 (0 disables evaluation during training); received {self.eval_every}."
            )
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"precision {self.precision!r} is not supported; use one of {PRECISIONS} "
                "(mixed_float16 would need loss scaling, which TPUs do not need)."
            )
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r} is not one of {MODES}.")
        runtime.check_global_batch_size(self.global_batch_size, strategy.num_replicas_in_sync)
        devices = getattr(strategy.extended, "worker_devices", ())
        if self.jit_compile and strategy.num_replicas_in_sync > 1 and all("CPU" in d.upper() for d in devices):
            raise ValueError(
                "jit_compile=True under a multi-replica CPU strategy fails in TensorFlow "
                "(keras-team/keras#18716); set JIT_COMPILE = False or use --strategy=cpu."
            )


def check_folder(path: str, flag: str, *, writable: bool) -> None:
    """A one-line ValueError when `path` is a file, or is not writable when it must be (remote paths: no check)."""
    if "://" in path:
        return
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{flag}={path} is a file, not a folder; pass a folder for the run's outputs.")
    probe = path
    while not os.path.exists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)  # the nearest existing parent decides whether the folder can be created
    if writable and not os.access(probe, os.W_OK):
        hint = " (to evaluate an archived run, add --output_dir=<writable folder>)" if flag == "--workdir" else ""
        raise ValueError(f"{flag}={path} is not writable; pass a folder you can write to{hint}.")
