"""Distributed TPE search over gin experiments (thesis Chapters 2 and 5): create once, run workers anywhere, report.

Usage (docs/search.md):
  goaldriven-search create --study=ia_digits --storage=postgresql+psycopg2://search@db-host/search \
      --root=gs://bucket/ia_digits --space=ia --space_option=schedule='"steps"' \
      --gin_file=gin/experiments/digits__small_resnet8.gin --gin_bindings='TRAIN_STEPS = 200'
  goaldriven-search worker --study=ia_digits --storage=... --max_trials=100 --strategy=tpu   # one per host
  goaldriven-search report --study=ia_digits --storage=... --output_dir=/tmp/ia_digits_report

The storage URL comes from --storage or $GOALDRIVEN_SEARCH_STORAGE (default: SQLite in --root, one machine). `create`
stores the search (space, experiment, bindings, metric, sampler) in the study, so a worker needs only the storage and
the study name; each worker runs its trials as goaldriven-train subprocesses with its own --strategy/--tpu until the
study has --max_trials complete trials. This program never imports TensorFlow itself (workers start in a second); the
trials do, in their own processes.
"""

import json
import sys
import warnings

from absl import app, flags, logging

PROG = "goaldriven-search"
COMMANDS = ("create", "worker", "report")
_STUDY = flags.DEFINE_string("study", None, "Study name (the same on every host).")
_STORAGE = flags.DEFINE_string(
    "storage", None, "Storage URL (default: $GOALDRIVEN_SEARCH_STORAGE, else SQLite in --root)."
)
_ROOT = flags.DEFINE_string(
    "root", None, "create: folder of the trial workdirs <root>/trial_<n> (shared by hosts); holds the SQLite default."
)
_SPACE = flags.DEFINE_string("space", None, "create: search space (rgc, lstm, wm, wm_ad, wm_ad_ops, ia, toy).")
_SPACE_OPTIONS = flags.DEFINE_multi_string(
    "space_option", [], "create: space option key=JSON, e.g. schedule='\"steps\"'."
)
_GIN_FILE = flags.DEFINE_multi_string("gin_file", [], "create: the experiment's gin files (default: the space's).")
_GIN_BINDINGS = flags.DEFINE_multi_string("gin_bindings", [], "create: fixed bindings before the space's.")
_METRIC = flags.DEFINE_string("metric", "top1", "create: evaluation metric of metrics.json to optimise.")
_DIRECTION = flags.DEFINE_enum("direction", "maximize", ["maximize", "minimize"], "create: of the metric.")
_SEED = flags.DEFINE_integer("seed", 0, "create: sampler seed (each worker derives its own from it).")
_HYPEROPT = flags.DEFINE_bool("hyperopt_compatible", False, "create: HyperOpt 0.1.2's TPE defaults (samplers.py).")
_MULTIVARIATE = flags.DEFINE_bool("multivariate", True, "create: one joint TPE density over all parameters.")
_STARTUP = flags.DEFINE_integer("n_startup_trials", None, "create: random trials before TPE (default 10; 20 hyperopt).")
_ENQUEUE = flags.DEFINE_multi_string("enqueue", [], "create: known points to run first (rgc_median, lstm_opt).")
_CHECK = flags.DEFINE_bool("check_config", True, "create: parse one sampled trial with the experiment first.")
_MAX_TRIALS = flags.DEFINE_integer("max_trials", None, "worker: stop when the study has this many complete trials.")
_STRATEGY = flags.DEFINE_enum("strategy", "cpu", ["cpu", "mirrored", "tpu"], "worker: goaldriven-train --strategy.")
_TPU = flags.DEFINE_string("tpu", None, "worker: goaldriven-train --tpu.")
_TRAIN_FLAGS = flags.DEFINE_multi_string("train_flag", [], "worker: extra goaldriven-train flag (repeatable).")
_HEARTBEAT = flags.DEFINE_integer("heartbeat_interval", 60, "worker: seconds between a running trial's heartbeats.")
_GRACE = flags.DEFINE_integer("grace_period", 180, "worker: seconds without heartbeat before a trial is re-queued.")
_MAX_RETRY = flags.DEFINE_integer("max_retry", 2, "worker: re-runs of a trial whose worker died.")
_POLL = flags.DEFINE_float("poll_seconds", 10.0, "worker: wait between checks when the cap is held by running trials.")
_TOY_SECONDS = flags.DEFINE_float("toy_seconds", 0.0, "worker, toy space: seconds each toy trial sleeps.")
_WORKER = flags.DEFINE_string("worker_name", None, "worker: name in the trials' attributes (default host:pid).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "report: folder for importances.json, figures and best.gin.")


def _fail(message: str) -> None:
    """One line on stderr and exit code 2, as goaldriven/cli_config.py `fail` (not imported: it loads TensorFlow)."""
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def _space_options() -> dict:
    options = {}
    for item in _SPACE_OPTIONS.value:
        key, sep, value = item.partition("=")
        if not sep:
            _fail(f"--space_option={item!r} is not key=JSON; e.g. --space_option=steps_per_epoch=21")
        try:
            options[key.strip()] = json.loads(value)
        except ValueError:
            _fail(f"--space_option={item!r}: {value!r} is not JSON (strings need quotes: schedule='\"steps\"').")
    return options


def _check_config(config) -> None:
    """Parses one trial of the space with the experiment (gin), so a broken search fails at create, not on 100 TPUs."""
    import optuna  # pylint: disable=g-import-not-at-top

    from goaldriven import cli_config  # pylint: disable=g-import-not-at-top  loads TensorFlow; create only
    from goaldriven.search import spaces  # pylint: disable=g-import-not-at-top

    trial = optuna.create_study(sampler=config.sampler()).ask()
    bindings = config.bindings + spaces.get_space(config.space)(trial, **config.space_options)
    try:
        cli_config.parse_gin_config(config.gin_files, bindings, clear=True)
    except cli_config.ConfigError as e:
        _fail(f"a sampled trial does not parse with {config.gin_files}: {e}")


def _create(url: str) -> None:
    from goaldriven.search import spaces, worker  # pylint: disable=g-import-not-at-top

    if not _SPACE.value or not _ROOT.value:
        _fail("create needs --space and --root (the folder of the trial workdirs).")
    try:
        spaces.get_space(_SPACE.value)
    except ValueError as e:
        _fail(str(e))
    gin_files = _GIN_FILE.value or ([spaces.EXPERIMENTS[_SPACE.value]] if _SPACE.value in spaces.EXPERIMENTS else [])
    if _SPACE.value != "toy" and not gin_files:
        _fail(f"--gin_file is required for space {_SPACE.value!r}: the experiment its trials train.")
    points = []
    for name in _ENQUEUE.value:
        space, params = spaces.POINTS.get(name, (None, None))
        if space != _SPACE.value:
            known = [k for k, (s, _) in spaces.POINTS.items() if s == _SPACE.value]
            _fail(f"--enqueue={name!r} is not a point of space {_SPACE.value!r}; its points: {known or 'none'}.")
        points.append(params)
    config = worker.SearchConfig(
        space=_SPACE.value, root=_ROOT.value, gin_files=gin_files, bindings=_GIN_BINDINGS.value,
        space_options=_space_options(), metric=_METRIC.value, direction=_DIRECTION.value, seed=_SEED.value,
        multivariate=_MULTIVARIATE.value, hyperopt_compatible=_HYPEROPT.value, n_startup_trials=_STARTUP.value,
    )  # fmt: skip
    if _CHECK.value and _SPACE.value != "toy":
        _check_config(config)
    worker.create_search(_STUDY.value, config, url, enqueue=tuple(points), log=_print)


def _print(line: str) -> None:
    print(line, flush=True)


def _worker(url: str) -> None:
    from goaldriven.search import objective, storage, worker  # pylint: disable=g-import-not-at-top

    if not _MAX_TRIALS.value or _MAX_TRIALS.value < 1:
        _fail("worker needs --max_trials=N (>= 1): it stops when the study has N complete trials.")
    store = storage.make_storage(
        url, heartbeat_interval=_HEARTBEAT.value, grace_period=_GRACE.value, max_retry=_MAX_RETRY.value
    )
    study, config = worker.load_search(_STUDY.value, store, _WORKER.value)
    if config.space == "toy":
        run = objective.ToyObjective(seconds=_TOY_SECONDS.value, root=config.root, log=_print)
    else:
        flags_ = [f"--strategy={_STRATEGY.value}"] + ([f"--tpu={_TPU.value}"] if _TPU.value else [])
        run = objective.TrainObjective(
            root=config.root, gin_files=config.gin_files, bindings=config.bindings, space=config.space,
            space_options=config.space_options, metric=config.metric, extra_flags=flags_ + _TRAIN_FLAGS.value,
            log=_print,
        )  # fmt: skip
    done = worker.run_worker(
        study, run, max_trials=_MAX_TRIALS.value, poll_seconds=_POLL.value, worker=_WORKER.value, log=_print
    )
    _print(f"worker done: {', '.join(f'{k} {v}' for k, v in done.items())}; study: {worker.summary(study)}")


def _report(url: str) -> None:
    from goaldriven.search import report, storage, worker  # pylint: disable=g-import-not-at-top

    if not _OUTPUT_DIR.value:
        _fail("report needs --output_dir: a folder for importances.json, the figures and best.gin.")
    study, _ = worker.load_search(_STUDY.value, storage.make_storage(url, heartbeat_interval=None))
    report.write_report(study, _OUTPUT_DIR.value, log=_print)


def main(argv: list[str]) -> None:
    if len(argv) != 2 or argv[1] not in COMMANDS:
        _fail(f"give one command, one of {', '.join(COMMANDS)}; e.g. {PROG} worker --study=NAME --max_trials=100")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    if not _STUDY.value:
        _fail("--study is required: the study's name (the same on every host).")
    try:
        import optuna  # pylint: disable=g-import-not-at-top

        from goaldriven.search import storage  # pylint: disable=g-import-not-at-top
    except ImportError as e:
        _fail(f"{e}; install the search dependencies: pip install optuna==5.1.0 psycopg2-binary")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Heartbeats, the retry callback and the matplotlib plots are "experimental" in Optuna 5.1; one warning per use
    # in every worker would drown its progress lines. (Their behaviour is pinned by setup.py and tests/search.)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    try:
        url = storage.resolve_url(_STORAGE.value, _ROOT.value)
        {"create": _create, "worker": _worker, "report": _report}[argv[1]](url)
    except (storage.StorageError, ValueError) as e:
        _fail(" ".join(str(e).split()))


def run_main() -> None:
    """Console-script entry point (goaldriven-search)."""
    app.run(main)


if __name__ == "__main__":
    run_main()
