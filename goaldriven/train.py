"""Train or evaluate one gin experiment on a tf.distribute strategy.

Usage:
  goaldriven-train --gin_file=gin/experiments/path_integration__quick.gin --workdir=/tmp/pi_quick --strategy=cpu
  goaldriven-train --gin_file=gin/experiments/path_integration__ugrnn_relu_place_cells.gin \
      --gin_file=gin/runtime/tpu.gin --workdir=gs://bucket/pi --strategy=tpu --tpu=my-tpu

Flags say where and how to run; gin says what (task, model, optimizer, schedule, steps, precision). Rerunning the
same command resumes from the last checkpoint in --workdir. Command-line knobs are gin macros:
  --gin_bindings='TRAIN_STEPS = 2000' --gin_bindings='GLOBAL_BATCH_SIZE = 64'
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # Hide TensorFlow's C++ start-up notices (before importing it).

from absl import (
    app,  # pylint: disable=g-import-not-at-top
    flags,
    logging,
)

import gin
from goaldriven import atomic_write, cli_config, distribute, workdir_lock
from goaldriven.tasks import loop

_GIN_FILE = flags.DEFINE_multi_string("gin_file", [], "Gin config files (repeatable; later ones override).")
_GIN_BINDINGS = flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings (repeatable), e.g. 'TRAIN_STEPS = 10'.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for checkpoints, summaries, metrics.json and evaluations.")
_STRATEGY = flags.DEFINE_enum("strategy", "cpu", list(distribute.KINDS), "tf.distribute strategy kind.")
_TPU = flags.DEFINE_string("tpu", None, "TPU name, grpc:// address, or 'local' (with --strategy=tpu).")
_MODE = flags.DEFINE_enum(
    "mode",
    "train",
    list(loop.MODES),
    "train: train (resuming if possible), then evaluate; eval: evaluate the last checkpoint.",
)
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "With --mode=eval: write the evaluation here; the workdir is only read (archived runs)."
)


def _fail(message: str) -> None:
    cli_config.fail("goaldriven-train", message)


def _parse_gin() -> list[str]:
    return cli_config.parse_gin("goaldriven-train", _GIN_FILE.value, _GIN_BINDINGS.value)


def _config_writer(workdir: str, is_chief: bool):
    """Writes the operative config to <workdir>/operative_config.gin without overwriting another run's config."""
    started = time.strftime("%Y%m%d-%H%M%S")
    state = {"path": None}

    def write() -> None:
        if not is_chief:
            return
        text = gin.operative_config_str()
        path = state["path"] or os.path.join(workdir, "operative_config.gin")
        if state["path"] is None and os.path.exists(path):
            with open(path) as f:
                if f.read() != text:
                    path = os.path.join(workdir, f"operative_config.{started}.gin")
                    print(
                        f"note: {workdir} holds a run with a different config; this run's config is written to {path}",
                        flush=True,
                    )
        atomic_write.write_text(path, text)
        state["path"] = path

    return write


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        _fail(f"unexpected arguments {argv[1:]}; every option is a --flag (see --helpfull).")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(
            logging.WARNING
        )  # TensorFlow's INFO lines drown the progress lines; --verbosity=0 shows them.
    if not _WORKDIR.value:
        _fail("--workdir is required: a folder (local or gs://) for checkpoints, logs and evaluations.")
    if os.path.exists(os.path.join(_WORKDIR.value, "import.json")):  # written by goaldriven-import (local folders)
        _fail(
            f"--workdir={_WORKDIR.value} holds weights converted by goaldriven-import (model only, kept unchanged); "
            f"train or evaluate them in a new workdir: --gin_file={_WORKDIR.value}/finetune.gin --workdir=<new> "
            "(add --gin_bindings='TRAIN_STEPS = 0' to evaluate only)."
        )
    _parse_gin()
    outputs = _OUTPUT_DIR.value or _WORKDIR.value
    try:
        strategy = distribute.get_strategy(_STRATEGY.value, tpu=_TPU.value)
        # An evaluation reads the training config's checkpoints and never rewrites that config.
        training = _MODE.value == "train" and distribute.is_chief(strategy)
        write_config = _config_writer(_WORKDIR.value, training)
        try:
            run = gin.get_configurable(loop.run)
        except (ValueError, KeyError):
            _fail(
                "the gin files do not configure goaldriven.tasks.loop.run; include a task config "
                "(gin/tasks/*.gin binds loop.run) or use an experiment from gin/experiments/."
            )
        result = run(
            strategy=strategy,
            workdir=_WORKDIR.value,
            mode=_MODE.value,
            output_dir=_OUTPUT_DIR.value,
            on_built=write_config,
            log=lambda line: print(line, flush=True),
        )
        write_config()
    except workdir_lock.WorkdirBusyError as e:  # another process's workdir: write nothing there
        _fail(cli_config.one_line(e))
    except (ValueError, ImportError, OSError, loop.NonFiniteLossError) as e:  # OSError: full disk, permissions, ...
        cli_config.fail_on_error("goaldriven-train", e, outputs)
    print(f"done: status {result['status']} at step {result['step']}; outputs in {outputs}", flush=True)


def run_main() -> None:
    """Console-script entry point (goaldriven-train)."""
    app.run(main)


if __name__ == "__main__":
    run_main()
