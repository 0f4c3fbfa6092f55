"""Shared pieces of the entry-point tests (goaldriven-fit, goaldriven-transfer): the untrained digits checkpoint they
run on, and running an absl entry point in-process with its flags cleaned up afterwards."""

import os

import numpy as np
from absl import flags

import gin
from goaldriven import checkpointing, cli_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIGITS_EXPERIMENT = os.path.join(REPO, "gin", "experiments", "digits__small_resnet8.gin")


def save_untrained_digits_checkpoint(workdir: str) -> str:
    """An untrained small_resnet8 of the digits experiment, saved in `workdir` as a training run would save it."""
    cli_config.parse_gin_config([DIGITS_EXPERIMENT], clear=True)
    try:
        task = cli_config.configured_task()
        size = task.input_spec.image_size
        model = task.build_model()
        model(np.zeros((1, size, size, 3), np.float32), training=False)
        checkpointing.Checkpointer(workdir, model=model).save(0)
    finally:
        gin.clear_config()
    return workdir


def run_entry_point(main, program: str, *args: str) -> None:
    """Runs an entry point's `main` with `--gin_file=<digits experiment>` and `args` as its command line."""
    argv = [program, f"--gin_file={DIGITS_EXPERIMENT}", *args]
    try:
        flags.FLAGS(argv)
        main(argv[:1])
    finally:
        flags.FLAGS.unparse_flags()
        gin.clear_config()
