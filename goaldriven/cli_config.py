"""Gin parsing shared by the entry points (goaldriven-train, goaldriven-fit), tests, benchmarks and notebooks.

Library code never imports this module (nor gin). `parse_gin_config` raises `ConfigError` with a one-line message that
names the problem and the fix; `parse_gin` is the entry points' variant, which prints that line and exits with code 2.
"""

import os
import re
import sys
import traceback
from typing import Iterator, Sequence

from absl import flags, logging

import gin
from goaldriven import atomic_write, config_paths, distribute


def shared_flag(define, name: str, default, *args, **kwargs) -> flags.FlagHolder:
    """`define(name, default, *args, **kwargs)` (an absl `flags.DEFINE_*`), or the holder of the flag another entry point
    imported into the same process (a test session) already defined with the same default."""
    if name not in flags.FLAGS:
        return define(name, default, *args, **kwargs)
    existing = flags.FLAGS[name]
    if existing.default != default:
        raise ValueError(f"flag --{name} is defined twice with different defaults ({existing.default!r}, {default!r}).")
    return flags.FlagHolder(flags.FLAGS, existing)


class CheckpointFlags:
    """The flags of the entry points that run a trained checkpoint on stimuli (goaldriven-fit, goaldriven-transfer):
    its gin files and bindings, the checkpoint, the output workdir, the strategy and the feature extraction.
    Both entry points may be imported into one process (tests): the second reuses the first's flags."""

    def __init__(self, workdir_help: str, batch_help: str):
        self.gin_file = shared_flag(
            flags.DEFINE_multi_string, "gin_file", [], "Gin config files the checkpoint was trained with."
        )
        self.gin_bindings = shared_flag(
            flags.DEFINE_multi_string, "gin_bindings", [], "Gin bindings (repeatable), as at training time."
        )
        self.checkpoint = shared_flag(
            flags.DEFINE_string, "checkpoint", None, "Training workdir, its checkpoints/ folder, or a prefix."
        )
        self.workdir = shared_flag(flags.DEFINE_string, "workdir", None, workdir_help)
        self.strategy = shared_flag(
            flags.DEFINE_enum, "strategy", "cpu", list(distribute.KINDS), "tf.distribute strategy kind."
        )
        self.tpu = shared_flag(flags.DEFINE_string, "tpu", None, "TPU name or address (with --strategy=tpu).")
        self.global_batch_size = shared_flag(flags.DEFINE_integer, "global_batch_size", 64, batch_help)
        self.features_dtype = shared_flag(
            flags.DEFINE_enum, "features_dtype", "float32", ["float32", "float16"], "Stored feature precision."
        )


class ConfigError(ValueError):
    """A gin config that cannot be used; the message names the problem and the fix."""


class MissingDependencyError(ConfigError):
    """A config imports a module whose third-party dependency is not installed."""


def fail(prog: str, message: str) -> None:
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def parse_gin_config(
    gin_files: Sequence[str], bindings: Sequence[str] = (), *, clear: bool = False, check_bindings: bool = True
) -> list[str]:
    """Parses the config files (repo-relative, package-relative or absolute) and bindings; returns the files' paths.

    clear: forget any earlier configuration first (tests and notebooks that parse several experiments).
    check_bindings: refuse a binding of a macro that no config reads (the command line's typo check); tests that
      apply one set of bindings to many experiments turn it off.
    Raises ConfigError (MissingDependencyError for an uninstalled package) with a one-line message.
    """
    if not gin_files:
        raise ConfigError(
            "no --gin_file given; pass an experiment, e.g. --gin_file=gin/experiments/path_integration__quick.gin. "
            f"Available experiments: {', '.join(config_paths.list_experiments()) or 'none found'}."
        )
    try:
        files = [config_paths.resolve_gin_file(name) for name in gin_files]
    except FileNotFoundError as e:
        raise ConfigError(str(e)) from e
    for name, packaged in config_paths.shadowed_includes(files):
        print(
            f"warning: include {name!r} is read from {os.path.abspath(name)} in the current directory, not the packaged "
            f"{packaged}; run from another folder or rename the local file to use the packaged config",
            file=sys.stderr,
            flush=True,
        )
    if clear:
        gin.clear_config()
    for root in config_paths.gin_roots():
        gin.add_config_file_search_path(str(root))
    verbosity = logging.get_verbosity()
    logging.set_verbosity(logging.FATAL)  # gin logs an ERROR for every include it then finds on a search path.
    try:
        gin.parse_config_files_and_bindings(files, list(bindings))
    except Exception as e:  # pylint: disable=broad-except  Any parse error is a config error; report it in one line.
        missing = _missing_module(e)
        if missing is not None:
            raise MissingDependencyError(
                f"the config imports a module that needs the Python package {missing!r}, which is not installed: "
                f"{_install_hint(missing)}"
            ) from e
        detail = " ".join(str(e).split())
        undefined = re.search(r"No bindings specified for '([A-Za-z0-9_.]+)/gin.macro'", detail)
        if undefined:
            raise ConfigError(
                f"macro %{undefined.group(1)} is used but never set; set it (--gin_bindings='{undefined.group(1)} = "
                "...') or correct its name in the gin file."
            ) from e
        detail = detail.split(" in config string:")[0][:600]  # gin appends the whole config: keep the message short
        raise ConfigError(
            f"gin config error: {detail}. Fix the named binding in --gin_bindings or the gin file "
            "(command-line knobs are macros such as 'TRAIN_STEPS = 10')."
        ) from e
    finally:
        logging.set_verbosity(verbosity)
    add_extra_hooks()
    if check_bindings:
        check_macro_bindings(bindings)
    check_macro_values()
    warn_unused_file_macros(files)
    return files


EXTRA_HOOKS = "EXTRA_HOOKS"
_LOOP_HOOKS = "goaldriven.tasks.loop.run.hooks"


def add_extra_hooks() -> None:
    """Appends the hooks of macro EXTRA_HOOKS to loop.run's own (those a task or rule file binds), keeping both.

    A gin binding replaces a list; a file that adds a capability to any run (the observables recorder of
    gin/identification/observables.gin) sets `EXTRA_HOOKS = [@...]` instead of `loop.run.hooks`, and this puts its
    hooks after the configured ones (e.g. a rule's AlignmentTraining).
    """
    try:
        extra = gin.query_parameter(f"{EXTRA_HOOKS}/macro.value")
    except ValueError:
        return
    try:
        base = gin.query_parameter(_LOOP_HOOKS)
    except ValueError:
        base = []
    if not isinstance(extra, list | tuple):
        raise ConfigError(f"macro {EXTRA_HOOKS} must be a list of hooks, e.g. [@recorder.ObservablesRecorder()].")
    with gin.unlock_config():
        gin.bind_parameter(_LOOP_HOOKS, [*(base or []), *extra])


def parse_gin(prog: str, gin_files: Sequence[str], bindings: Sequence[str]) -> list[str]:
    """`parse_gin_config` for entry points: a ConfigError ends the program with its one line (exit code 2).

    A program's configuration is its command line alone: anything parsed earlier in the process (a notebook, another
    entry point's main) is cleared first, so a second call neither inherits it nor meets gin's locked config.
    """
    try:
        return parse_gin_config(gin_files, bindings, clear=True)
    except ConfigError as e:
        fail(prog, str(e))


def check_macro_bindings(bindings: Sequence[str]) -> None:
    """A command-line macro that no config reads is almost always a typo: refuse it rather than ignore it."""
    config = gin.config_str()
    known = sorted(set(re.findall(r"%([A-Z][A-Z0-9_]*)", config)) | {EXTRA_HOOKS})  # EXTRA_HOOKS: add_extra_hooks
    for binding in bindings:
        match = re.match(r"\s*([A-Z][A-Z0-9_]*)\s*=", binding)
        if match and match.group(1) not in known:  # whole names: TRAIN must not pass because %TRAIN_STEPS exists
            raise ConfigError(
                f"--gin_bindings sets macro {match.group(1)}, which no config uses; macros these configs read: "
                f"{', '.join(known)}."
            )


_COUNT_MACRO = re.compile(r"(_STEPS|_EVERY|EPOCHS|_BATCH_SIZE|_BATCHES)$")


def macro_values() -> dict[str, object]:
    """{macro name: value} of every macro the parsed config sets."""
    names = re.findall(r"^([A-Z][A-Z0-9_]*) = ", gin.config_str(), flags=re.MULTILINE)
    return {name: gin.query_parameter(f"{name}/macro.value") for name in names}


def check_macro_values() -> None:
    """Catches the usual slips before anything runs: a number written as a string, a negative step or batch count."""
    for name, value in macro_values().items():
        if isinstance(value, str) and re.fullmatch(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*", value):
            raise ConfigError(
                f"macro {name} = {value!r} is a string; write numbers without quotes: {name} = {value.strip()}."
            )
        if _COUNT_MACRO.search(name) and isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
            raise ConfigError(f"macro {name} = {value} is negative; it counts steps, epochs or examples: use >= 0.")


def warn_unused_file_macros(files: Sequence[str]) -> list[str]:
    """Warns (stderr) about macros set in the user's own files (not the packaged configs, which serve several tasks)
    that no config reads, as the command line refuses them."""
    config = gin.config_str()
    used = set(re.findall(r"%([A-Z][A-Z0-9_]*)", config)) | {EXTRA_HOOKS}  # read by add_extra_hooks
    roots = [str(root) + os.sep for root in config_paths.gin_roots()]
    warnings = []
    for path in files:
        if any(os.path.abspath(path).startswith(root) for root in roots):
            continue
        with open(path, encoding="utf-8") as f:
            for name in re.findall(r"^([A-Z][A-Z0-9_]*)\s*=", f.read(), flags=re.MULTILINE):
                if name not in used:
                    warnings.append(f"warning: macro {name} is set in {path} but no config uses it (a typo?)")
    for line in warnings:
        print(line, file=sys.stderr, flush=True)
    return warnings


def _missing_module(error: BaseException) -> str | None:
    """The top-level name of a third-party module whose import failed somewhere in `error`'s chain, if any."""
    for link in error_chain(error):
        top = (getattr(link, "name", None) or "").split(".")[0]
        if isinstance(link, ModuleNotFoundError) and top and top != "goaldriven":
            return top
    return None


def error_chain(error: BaseException | None) -> Iterator[BaseException]:
    """The error and the errors it was raised from or during (gin re-raises errors with its own message)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def one_line(error: BaseException) -> str:
    """The error's message on one line, without the "In call to configurable ..." that gin appends."""
    text = re.sub(r"\s*In call to configurable '[^']*' \(<[^>]*>\)", "", str(error))
    return " ".join(text.split())


def fail_on_error(prog: str, error: BaseException, folder: str) -> None:
    """Ends the program (exit 2) with one line for `error` and its traceback in <folder>/error_traceback.txt; an
    OSError (full disk, quota, permissions) names the file and the fix."""
    message = one_line(error)
    if isinstance(error, OSError) and not isinstance(error, FileNotFoundError | FileExistsError):
        original = next((e for e in error_chain(error) if isinstance(e, OSError) and e.filename), error)
        where = f" {original.filename}" if original.filename else ""
        message = (
            f"cannot write{where}: {original.strerror or one_line(original)}. Free space on that disk, check its "
            "permissions and quotas, or use another --workdir"
        )
    fail(prog, f"{message} (traceback: {_write_traceback(folder)})")


def _write_traceback(folder: str) -> str:
    """Writes the current exception's traceback to <folder>/error_traceback.txt; returns the path or 'not written'."""
    path = os.path.join(folder, "error_traceback.txt")
    try:
        with atomic_write.atomic_open(path) as f:
            traceback.print_exc(file=f)
    except OSError:
        return "not written"
    return path


_PACKAGES = {"tensorflow_datasets": "tensorflow-datasets", "sklearn": "scikit-learn", "gin": "gin-config"}


def _install_hint(module: str) -> str:
    package = _PACKAGES.get(module, module.replace("_", "-"))
    return f"pip install {package} (or reinstall goaldriven with its dependencies: pip install -e '.[cpu]')."


def configured_task():
    """A new instance of the task the parsed config binds to `loop.run.task` (ConfigError when it binds none)."""
    try:
        reference = gin.query_parameter("loop.run.task")
    except (ValueError, KeyError) as e:
        raise ConfigError(
            "the gin files configure no loop.run.task; pass an experiment from gin/experiments/ (or the one the "
            "checkpoint was trained with)."
        ) from e
    return reference.scoped_configurable_fn()
