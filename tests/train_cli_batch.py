"""Runs several goaldriven-train command lines in one process, as `python -m goaldriven.train` would run each
(tests/test_train.py): one TensorFlow start-up for all the one-line-error cases instead of one per case.

Usage: python tests/train_cli_batch.py '<JSON list of {"args": [...], "env": {...}}>'
Prints one JSON line: a list of {"returncode", "stdout", "stderr"}, in order. Each run gets the environment
`env` on top of this process's, its own flags (parsed by absl.app.run, as the console script parses them) and an
empty gin config; stdout and stderr are captured.
"""

import contextlib
import io
import json
import os
import sys

import keras
from absl import app, flags

import gin
from goaldriven import train


def run_one(args: list[str], env: dict[str, str]) -> dict:
    saved = dict(os.environ)
    os.environ.update(env)
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            app.run(train.main, argv=["goaldriven-train", *args])
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        flags.FLAGS.unparse_flags()
        gin.clear_config()
        keras.backend.clear_session()
        os.environ.clear()
        os.environ.update(saved)
    return {"returncode": code, "stdout": out.getvalue(), "stderr": err.getvalue()}


if __name__ == "__main__":
    runs = json.loads(sys.argv[1])
    print(json.dumps([run_one(run["args"], run.get("env", {})) for run in runs]))
