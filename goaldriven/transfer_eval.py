"""Score a trained model on the transfer tasks of thesis Fig. 3.11: checkpoint -> features -> linear readouts.

Usage:
  goaldriven-transfer --gin_file=gin/experiments/<the training experiment>.gin --checkpoint=/tmp/run \
      --hvm=/data/hvm/ventral_neural_data.hdf5 --dtd_data_dir=/data/tfds --workdir=/tmp/run_transfer
  goaldriven-transfer ... --tasks=categorization,size --layers=VISpor,pool --n_splits=3   (a part of it)

The gin files are the ones the checkpoint was trained with: they configure the task (loop.run.task), which builds
the model and gives its input normalisation (task.input_spec). HvM is one HDF5 file (images + image_meta; both the
ventral_neural_data.hdf5 and the Brain-Score meta spellings are read); DTD is read through TFDS from
--dtd_data_dir and never downloaded (prepare it once with tfds.load('dtd', data_dir=...)); --dtd_labels_dir gives
the official label files for folds 2..10 (TFDS itself has fold 1 only). Details: docs/transfer_tasks.md.
Outputs in --workdir: features_hvm.h5, features_dtd.h5 (resumable caches), transfer_options.json,
scores_partial.json (a killed run resumes from it), results.json, table.md, transfer.png. A run with other options
goes to <workdir>/run.1/, run.2/, ... (never overwriting an earlier run); a second process in the same workdir is
refused in one line. A thin wrapper: flags -> gin -> the configured task ->
goaldriven.transfer.run.evaluate_checkpoint (the same call a notebook makes) -> one-line errors.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # Hide TensorFlow's C++ start-up notices (before importing it).

from absl import app, flags, logging  # pylint: disable=g-import-not-at-top

from goaldriven import cli_config, distribute, workdir_lock
from goaldriven.transfer.evaluate import TASK_ORDER
from goaldriven.transfer.hvm import HvMFormatError
from goaldriven.transfer.images import CROP_FRACTION
from goaldriven.transfer.readouts import C_GRID, THESIS_C_GRID, ReadoutConfig
from goaldriven.transfer.run import TransferConfig, evaluate_checkpoint

PROG = "goaldriven-transfer"
_FLAGS = cli_config.CheckpointFlags(
    workdir_help="Output folder: feature caches, results.json, table.md, transfer.png.",
    batch_help="Images per feature-extraction batch (all replicas).",
)
_HVM = flags.DEFINE_string("hvm", None, "HvM HDF5 file (images + image_meta) for categorization/position/pose/size.")
_DTD_DIR = flags.DEFINE_string("dtd_data_dir", None, "TFDS data_dir holding the prepared 'dtd' (texture task).")
_DTD_LABELS = flags.DEFINE_string("dtd_labels_dir", None, "DTD's official labels/ folder (folds 2..10); optional.")
_TASKS = flags.DEFINE_list("tasks", list(TASK_ORDER), "Tasks to run (default: all five).")
_LAYERS = cli_config.shared_flag(
    flags.DEFINE_list, "layers", [], "Model layers to read out (default: every feature the model returns)."
)
_SPLITS = cli_config.shared_flag(
    flags.DEFINE_integer, "n_splits", 10, "Train/test splits per task (HvM draws; DTD folds 1..n)."
)
_GRID = flags.DEFINE_enum("c_grid", "code", ["code", "thesis"], "C grid: [C]'s 33 values or Eq. 3.17 as printed.")
_CV = flags.DEFINE_integer("cv_folds", 5, "Cross-validation folds that choose C on each train split.")
_COMPONENTS = flags.DEFINE_integer("max_components", 1000, "PCA dimensions for layers with more features.")
_MAX_ITER = flags.DEFINE_integer("max_iter", 2000, "LinearSVC iterations per fit.")
_JOBS = flags.DEFINE_integer("n_jobs", 1, "Parallel LinearSVC fits during the C search.")
_CROP = flags.DEFINE_float("crop_fraction", CROP_FRACTION, "Centre crop (of the shorter side) before the 64 px resize.")
_SEED = cli_config.shared_flag(
    flags.DEFINE_integer, "seed", 0, "Seed of the HvM test draws, the CV folds and the fallback DTD folds."
)


def _config() -> TransferConfig:
    readout = ReadoutConfig(
        c_grid=C_GRID if _GRID.value == "code" else THESIS_C_GRID,
        cv_folds=_CV.value,
        max_components=_COMPONENTS.value,
        max_iter=_MAX_ITER.value,
        n_jobs=_JOBS.value,
        seed=_SEED.value,
    )
    return TransferConfig(
        tasks=tuple(_TASKS.value),
        layers=tuple(_LAYERS.value) or None,
        n_splits=_SPLITS.value,
        readout=readout,
        crop_fraction=_CROP.value,
        seed=_SEED.value,
    )


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        cli_config.fail(PROG, f"unexpected arguments {argv[1:]}; every option is a --flag (see --helpfull).")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    for flag, value in (("workdir", _FLAGS.workdir.value), ("checkpoint", _FLAGS.checkpoint.value)):
        if not value:
            cli_config.fail(PROG, f"--{flag} is required (see --help).")
    try:  # The options first: a bad one fails at once, before TensorFlow restores or extracts anything.
        config = _config()
    except ValueError as e:
        cli_config.fail(PROG, " ".join(str(e).split()))
    if "hvm" in config.datasets() and not _HVM.value:
        cli_config.fail(PROG, "the HvM tasks need --hvm=<file.h5>; or choose others (--tasks=texture).")
    if _HVM.value and not os.path.exists(_HVM.value):
        cli_config.fail(PROG, f"--hvm={_HVM.value} does not exist; pass the HvM HDF5 file.")
    cli_config.parse_gin(PROG, _FLAGS.gin_file.value, _FLAGS.gin_bindings.value)
    workdir = _FLAGS.workdir.value

    def log(line: str) -> None:
        print(line, flush=True)

    try:
        task = cli_config.configured_task()
        run = evaluate_checkpoint(
            _FLAGS.checkpoint.value,
            task=task,
            hvm=_HVM.value if "hvm" in config.datasets() else None,
            dtd=_DTD_DIR.value,
            dtd_labels_dir=_DTD_LABELS.value,
            workdir=workdir,
            config=config,
            strategy=distribute.get_strategy(_FLAGS.strategy.value, tpu=_FLAGS.tpu.value),
            global_batch_size=_FLAGS.global_batch_size.value,
            features_dtype=_FLAGS.features_dtype.value,
            log=log,
        )
    except cli_config.ConfigError as e:
        cli_config.fail(PROG, str(e))
    except workdir_lock.WorkdirBusyError as e:  # another process works in this workdir: leave it alone
        cli_config.fail(PROG, str(e))
    except (ValueError, HvMFormatError, ImportError, OSError) as e:  # OSError: a full disk, a missing file, ...
        cli_config.fail_on_error(PROG, e, workdir)
    log("wrote " + ", ".join(run.paths))


def run_main() -> None:
    """Console-script entry point (goaldriven-transfer)."""
    app.run(main)


if __name__ == "__main__":
    run_main()
