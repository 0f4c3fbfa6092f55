"""Gin parsing shared by the two entry points (goaldriven-train, goaldriven-fit); library code never imports this.

Errors end the program with exit code 2 and one line that names the problem and the fix.
"""

import re
import sys

from absl import logging

import gin
from goaldriven import config_paths


def fail(prog: str, message: str) -> None:
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def parse_gin(prog: str, gin_files: list[str], bindings: list[str]) -> list[str]:
    """Parses the experiment files (repo-relative, package-relative or absolute) and bindings; returns the files."""
    if not gin_files:
        fail(
            prog,
            "no --gin_file given; pass an experiment, e.g. --gin_file=gin/experiments/path_integration__quick.gin. "
            f"Available experiments: {', '.join(config_paths.list_experiments()) or 'none found'}.",
        )
    try:
        files = [config_paths.resolve_gin_file(name) for name in gin_files]
    except FileNotFoundError as e:
        fail(prog, str(e))
    for root in config_paths.gin_roots():
        gin.add_config_file_search_path(str(root))
    verbosity = logging.get_verbosity()
    logging.set_verbosity(logging.FATAL)  # gin logs an ERROR for every include it then finds on a search path.
    try:
        gin.parse_config_files_and_bindings(files, bindings)
    except Exception as e:  # pylint: disable=broad-except  Any parse error is a config error; report it in one line.
        detail = " ".join(str(e).split())
        fail(
            prog,
            f"gin config error: {detail}. Fix the named binding in --gin_bindings or the gin file "
            "(command-line knobs are macros such as 'TRAIN_STEPS = 10').",
        )
    finally:
        logging.set_verbosity(verbosity)
    check_macro_bindings(prog, bindings)
    return files


def check_macro_bindings(prog: str, bindings: list[str]) -> None:
    """A command-line macro that no config reads is almost always a typo: refuse it rather than ignore it."""
    config = gin.config_str()
    known = sorted(set(re.findall(r"%([A-Z][A-Z0-9_]*)", config)))
    for binding in bindings:
        match = re.match(r"\s*([A-Z][A-Z0-9_]*)\s*=", binding)
        if match and match.group(1) not in known:  # whole names: TRAIN must not pass because %TRAIN_STEPS exists
            fail(
                prog,
                f"--gin_bindings sets macro {match.group(1)}, which no config uses; macros these configs read: "
                f"{', '.join(known)}.",
            )
