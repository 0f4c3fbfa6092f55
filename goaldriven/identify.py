"""Learning-rule identification (thesis Chapter 6): from a grid of training runs to the tables and figures.

Usage (one grid file describes the runs; gin/identification/grid_*.gin):
  goaldriven-identify expand  --grid=gin/identification/grid_small.gin --root=/tmp/ch6   # the runs, example count
  goaldriven-identify worker  --grid=... --root=/tmp/ch6 [--max_runs=N]   # any number of these, on any hosts
  goaldriven-identify status  --grid=... --root=/tmp/ch6
  goaldriven-identify analyze --grid=... --root=/tmp/ch6 --output_dir=/tmp/ch6_report [--classifiers=svm,rf,conv1d]

`worker` trains every run that is neither finished nor held by another process (the workdir lock claims a run; no
coordinator): start several on one machine or one per host on a shared folder. `analyze` reads each finished run's
observables.h5, assembles the examples (one per layer and run) and runs the classifiers and protocols of spec ch5
11.4-11.6, writing results.json, tables (markdown) and figures to --output_dir.
"""

import os
import shlex
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # Hide TensorFlow's C++ start-up notices (before importing it).

from absl import app, flags, logging  # pylint: disable=g-import-not-at-top

import gin
from goaldriven import atomic_write, cli_config
from goaldriven.identification import grid as grid_lib

PROG = "goaldriven-identify"
COMMANDS = ("expand", "worker", "status", "analyze")
_GRID = flags.DEFINE_multi_string("grid", [], "Grid gin file(s) configuring identification.grid.GridSpec.")
_BINDINGS = flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings for the grid file (e.g. 'GRID_EPOCHS = 20').")
_ROOT = flags.DEFINE_string("root", None, "Folder of the grid's run workdirs (overrides the grid file's GRID_ROOT).")
_MAX_RUNS = flags.DEFINE_integer("max_runs", None, "worker: stop after this many runs (default: until none is left).")
_WORKER = flags.DEFINE_string("worker_name", None, "worker: name in progress lines and its run order (host:pid).")
_ATTEMPTS = flags.DEFINE_integer("max_attempts", 2, "worker: give a run up after this many failed attempts.")
_IN_PROCESS = flags.DEFINE_bool(
    "in_process", False, "worker: train runs in this process (saves TF start-up per run; small grids) not subprocesses."
)
_TRAIN_FLAGS = flags.DEFINE_multi_string(
    "train_flag",
    [],
    "worker: a goaldriven-train flag added to every run (repeatable), e.g. --train_flag=--strategy=tpu",
)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "analyze: folder for results.json, tables and figures.")
_CLASSIFIERS = flags.DEFINE_list("classifiers", ["svm", "rf", "conv1d"], "analyze: classifiers to run.")
_GRIDS = flags.DEFINE_enum("search", "scaled_down", ["scaled_down", "thesis"], "analyze: hyperparameter grids.")
_PARTS = flags.DEFINE_list(
    "parts", ["measures", "averaged", "pairwise", "holdout", "subsampling", "portions"], "analyze: analyses to run."
)
_STANDARDIZE = flags.DEFINE_bool(
    "standardize", True, "analyze: z-score features per training split for the SVM (the thesis code: off)."
)
_PARTIAL = flags.DEFINE_bool("allow_partial", False, "analyze: use the finished runs when some are not finished.")
_SPLITS = flags.DEFINE_integer("n_splits", 10, "analyze: class-balanced 75/25 splits.")
_SEED = flags.DEFINE_integer("seed", 0, "analyze: seed of splits and classifiers.")


def _fail(message: str) -> None:
    cli_config.fail(PROG, message)


def load_grid(grid_files, bindings, root: str | None) -> grid_lib.GridSpec:
    """The GridSpec a grid gin file configures (root from --root when given)."""
    extra = [f"GRID_ROOT = '{root}'"] if root else []
    cli_config.parse_gin_config(grid_files, [*bindings, *extra], clear=True)
    try:
        make = gin.get_configurable(grid_lib.GridSpec)
    except (ValueError, KeyError):
        raise cli_config.ConfigError(
            "the grid file does not configure identification.grid.GridSpec; start from gin/identification/grid_small.gin."
        ) from None
    return make()


def in_process_launcher():
    """launch(run) training in this process: parse the run's gin, call loop.run, report like a subprocess."""
    import io  # pylint: disable=g-import-not-at-top
    import subprocess  # pylint: disable=g-import-not-at-top

    import keras  # pylint: disable=g-import-not-at-top

    from goaldriven import distribute  # pylint: disable=g-import-not-at-top
    from goaldriven.tasks import loop  # pylint: disable=g-import-not-at-top

    def launch(run: grid_lib.RunSpec):
        buffer = io.StringIO()

        def log(line):
            buffer.write(line + "\n")

        code = 0
        try:
            cli_config.parse_gin_config(run.gin_files, run.bindings, clear=True)
            keras.backend.clear_session()
            result = gin.get_configurable(loop.run)(
                strategy=distribute.get_strategy("cpu"), workdir=run.workdir, mode="train", log=log
            )
            if result["status"] == "preempted":
                code = 143  # as goaldriven-train's exit on SIGTERM: the worker stops, the run resumes later
                log(f"preempted at step {result['step']}")
            elif result["status"] != "finished":
                code = 1
                log(f"status {result['status']} at step {result['step']}")
        except Exception as e:  # pylint: disable=broad-except  A failed run is recorded; the worker goes on.
            code = 1
            log(f"{type(e).__name__}: {cli_config.one_line(e)}")
        atomic_write.write_text(
            os.path.join(run.workdir, f"train.{time.strftime('%Y%m%d-%H%M%S')}.log"), buffer.getvalue()
        )
        return subprocess.CompletedProcess(args=[run.name], returncode=code, stdout=buffer.getvalue())

    return launch


def _expand(spec: grid_lib.GridSpec) -> None:
    runs = grid_lib.expand(spec)
    for run in runs:
        print(run.name)
    print(f"{len(runs)} runs under {spec.root}", flush=True)
    if spec.layer_counts:
        counts = grid_lib.expected_examples(spec)
        print(
            f"examples: {counts['total']} ({counts['per_rule']} per rule; {counts['layers_per_combination']} layers per "
            f"rule and hyperparameter combination x {spec.hyperparameter_combinations} combinations x "
            f"{len(spec.rules)} rules)"
        )
    if runs:
        print("first run: " + shlex.join(runs[0].command(python="python")))


def _status(spec: grid_lib.GridSpec) -> None:
    states = grid_lib.status(grid_lib.expand(spec))
    for state, names in states.items():
        print(
            f"{state}: {len(names)}"
            + (
                f"  ({', '.join(names[:5])}{', ...' if len(names) > 5 else ''})"
                if names and state != "finished"
                else ""
            )
        )


def main(argv: list[str]) -> None:
    if len(argv) != 2 or argv[1] not in COMMANDS:
        _fail(
            f"give one command, one of {', '.join(COMMANDS)}; e.g. {PROG} expand --grid=gin/identification/grid_small.gin"
        )
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    if not _GRID.value:
        _fail("--grid is required: a grid gin file, e.g. --grid=gin/identification/grid_small.gin")
    try:
        spec = load_grid(_GRID.value, _BINDINGS.value, _ROOT.value)
    except (cli_config.ConfigError, ValueError, TypeError) as e:
        _fail(cli_config.one_line(e))
    command = argv[1]
    if command == "expand":
        _expand(spec)
    elif command == "status":
        _status(spec)
    elif command == "worker":
        if _IN_PROCESS.value and _TRAIN_FLAGS.value:
            _fail("--train_flag applies to subprocess runs; drop --in_process (in-process runs train on this CPU).")
        launch = in_process_launcher() if _IN_PROCESS.value else None
        counts = grid_lib.run_worker(
            grid_lib.expand(spec),
            worker=_WORKER.value,
            max_runs=_MAX_RUNS.value,
            max_attempts=_ATTEMPTS.value,
            launch=launch,
            extra_flags=_TRAIN_FLAGS.value,
            log=lambda line: print(line, flush=True),
        )
        print("worker done: " + ", ".join(f"{k} {v}" for k, v in counts.items()), flush=True)
        if counts["failed"]:
            sys.exit(1)
    elif command == "analyze":
        if not _OUTPUT_DIR.value:
            _fail("--output_dir is required for analyze: a folder for results.json, tables and figures.")
        from goaldriven.identification import report  # pylint: disable=g-import-not-at-top

        try:
            report.analyze(
                grid_lib.expand(spec),
                _OUTPUT_DIR.value,
                classifiers=_CLASSIFIERS.value,
                search="full" if _GRIDS.value == "thesis" else _GRIDS.value,  # classifiers.FULL_GRIDS
                n_splits=_SPLITS.value,
                seed=_SEED.value,
                parts=_PARTS.value,
                allow_partial=_PARTIAL.value,
                standardize=_STANDARDIZE.value,
                log=lambda line: print(line, flush=True),
            )
        except (ValueError, OSError) as e:
            _fail(cli_config.one_line(e))


def run_main() -> None:
    """Console-script entry point (goaldriven-identify)."""
    app.run(main)


if __name__ == "__main__":
    run_main()
