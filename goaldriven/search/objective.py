"""A trial's objective: an ordinary `goaldriven-train` run in its own workdir, scored by its validation metric.

Trial n trains in `<root>/trial_<n>` with the experiment's gin files and the space's bindings (kept in
`<workdir>/search_trial.json` so the run can be repeated by hand). A trial re-queued after its worker died (preemption;
`RetryHeartbeatStaleTrialCallback`) trains in the original trial's workdir, so `goaldriven-train` resumes from that
run's last checkpoint. The score is the last evaluation's `metric` in the run's metrics.json (goaldriven/reporting.py),
written to `<workdir>/search_result.json` before it is returned: if the store then cannot record it (lost
connection), the trial goes stale, is re-queued, and its retry returns the saved score without training again.
"""

import json
import math
import os
import signal
import subprocess
import sys
import time
import warnings
from typing import Any, Callable, Sequence

import optuna

from goaldriven.search import spaces

RESULT_FILE = "search_result.json"
TRIAL_FILE = "search_trial.json"
METRICS_FILE = "metrics.json"


class TrialFailed(RuntimeError):
    """A trial's training run failed (the trial is marked FAIL and the worker goes on)."""


class Preempted(SystemExit):
    """The worker was asked to stop (SIGTERM: TPU preemption) while its trial trained; the run checkpointed.

    A SystemExit passes through Optuna's trial runner without the trial being told: it stays RUNNING, its heartbeat
    stops, and another worker re-queues it, resuming from the checkpoint.
    """

    def __init__(self):
        super().__init__(143)


def original_trial_number(study: optuna.Study, trial: optuna.Trial) -> int:
    """The number of the trial this one re-runs (its own number for a fresh trial)."""
    for frozen in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if frozen.number == trial.number:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                retried = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(frozen)
            return trial.number if retried is None else retried
    return trial.number


def _is_remote(path: str) -> bool:
    return "://" in path  # gs://, s3://: TensorFlow's file system, as goaldriven-train uses for its workdir


def _open(path: str, mode: str = "r"):
    """open() for local paths, tf.io.gfile.GFile for remote ones (TensorFlow is imported only then)."""
    if _is_remote(path):
        import tensorflow as tf  # pylint: disable=g-import-not-at-top  remote roots only; workers stay light

        return tf.io.gfile.GFile(path, mode)
    return open(path, mode, encoding="utf-8", errors="replace")


def trial_workdir(root: str, number: int) -> str:
    return os.path.join(root, f"trial_{number}")


def read_metric(workdir: str, metric: str) -> float:
    """The `metric` of the last evaluation in <workdir>/metrics.json; raises TrialFailed when there is none."""
    path = os.path.join(workdir, METRICS_FILE)
    try:
        with _open(path) as f:
            record = json.load(f)
    except Exception as e:  # pylint: disable=broad-except  OSError, JSON errors, tf.errors.NotFoundError
        raise TrialFailed(f"no readable {path} ({e})") from e
    evaluations = [e for e in record.get("eval", []) if metric in e]
    if not evaluations:
        raise TrialFailed(f"{path} has no evaluation with {metric!r}; set the task to evaluate at the end of training.")
    value = float(max(evaluations, key=lambda e: e["step"])[metric])
    if not math.isfinite(value):
        raise TrialFailed(f"{metric} = {value} in {path}")
    return value


def _saved_result(workdir: str, params: dict[str, Any]) -> float | None:
    try:
        with _open(os.path.join(workdir, RESULT_FILE)) as f:
            saved = json.load(f)
    except Exception:  # pylint: disable=broad-except  None saved (missing or unreadable): train
        return None
    return float(saved["value"]) if saved.get("params") == params else None


def _write_json(path: str, payload: dict[str, Any]) -> None:
    """Writes JSON atomically (a temporary file renamed into place; a remote object is written in one piece)."""
    if _is_remote(path):
        with _open(path, "w") as f:
            f.write(json.dumps(payload, indent=1, sort_keys=True))
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f"{path}.tmp{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=1, sort_keys=True)
    os.replace(temporary, path)


def train_command(
    workdir: str, gin_files: Sequence[str], bindings: Sequence[str], extra_flags: Sequence[str] = ()
) -> list[str]:
    """The goaldriven-train command line of a trial (the runtime flags last: --strategy, --tpu, a runtime gin file)."""
    command = [sys.executable, "-m", "goaldriven.train", f"--workdir={workdir}"]
    command += [f"--gin_file={f}" for f in gin_files] + [f"--gin_bindings={b}" for b in bindings]
    return command + list(extra_flags)


def run_training(command: Sequence[str], log_path: str) -> tuple[int, str]:
    """Runs the command; returns (exit code, output) and writes the output to `log_path`. A SIGTERM to the worker is
    passed on (the run checkpoints and stops)."""
    process = subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: process.send_signal(signal.SIGTERM))
    try:
        output, _ = process.communicate()
    finally:
        signal.signal(signal.SIGTERM, previous)
    with _open(log_path, "w") as log:
        log.write(output)
    return process.returncode, output


class TrainObjective:
    """objective(trial) -> the validation metric of a goaldriven-train run of the experiment with the space's bindings.

    root: folder of the trial workdirs (shared between hosts when they should resume each other's trials).
    gin_files: the experiment (and e.g. a runtime file); bindings: fixed bindings before the space's (budget, steps).
    space / space_options: the search space and its keyword options.
    metric: key of the evaluation entries in metrics.json ("top1").
    extra_flags: goaldriven-train flags of this host (--strategy=tpu, --tpu=...).
    """

    def __init__(
        self,
        *,
        root: str,
        gin_files: Sequence[str],
        bindings: Sequence[str] = (),
        space: str,
        space_options: dict[str, Any] | None = None,
        metric: str = "top1",
        extra_flags: Sequence[str] = (),
        log: Callable[[str], None] = print,
    ):
        self.root = root
        self.gin_files = list(gin_files)
        self.bindings = list(bindings)
        self.space = spaces.get_space(space)
        self.space_options = dict(space_options or {})
        self.metric = metric
        self.extra_flags = list(extra_flags)
        self.log = log

    def __call__(self, trial: optuna.Trial) -> float:
        trial_bindings = self.space(trial, **self.space_options)
        number = original_trial_number(trial.study, trial)
        workdir = trial_workdir(self.root, number)
        trial.set_user_attr("workdir", workdir)
        saved = _saved_result(workdir, trial.params)
        if saved is not None:
            self.log(f"trial {trial.number}: {workdir} already finished ({self.metric} {saved:.4g}); not retrained")
            return saved
        bindings = self.bindings + trial_bindings
        command = train_command(workdir, self.gin_files, bindings, self.extra_flags)
        _write_json(
            os.path.join(workdir, TRIAL_FILE),
            {"trial": trial.number, "original_trial": number, "params": trial.params, "gin_files": self.gin_files,
             "bindings": bindings, "command": command},
        )  # fmt: skip
        resumed = " (resuming trial %d)" % number if number != trial.number else ""
        self.log(f"trial {trial.number}: training in {workdir}{resumed}")
        started = time.time()
        log_path = os.path.join(workdir, f"train.{time.strftime('%Y%m%d-%H%M%S')}.log")
        code, output = run_training(command, log_path)
        if "done: status preempted" in output or code in (143, -signal.SIGTERM):
            self.log(f"trial {trial.number}: preempted; it resumes from its checkpoint in {workdir} on another worker")
            raise Preempted()
        if code != 0:
            raise TrialFailed(f"goaldriven-train exited with code {code}; see the train.*.log in {workdir}")
        value = read_metric(workdir, self.metric)
        _write_json(
            os.path.join(workdir, RESULT_FILE),
            {"value": value, "metric": self.metric, "params": trial.params, "seconds": round(time.time() - started, 1)},
        )
        self.log(f"trial {trial.number}: {self.metric} {value:.4g} in {time.time() - started:.0f} s")
        return value


class ToyObjective:
    """The toy space's objective (`spaces.toy_value`), sleeping `seconds` to stand in for training (tests, benchmarks).

    With a root, the score is saved in <root>/trial_<n>/search_result.json like a training trial's, and a retried
    trial records the workdir it reuses.
    """

    def __init__(self, *, seconds: float = 0.0, root: str | None = None, log: Callable[[str], None] = print):
        self.seconds = seconds
        self.root = root
        self.log = log

    def __call__(self, trial: optuna.Trial) -> float:
        spaces.toy_space(trial)
        number = original_trial_number(trial.study, trial)
        if self.root:
            trial.set_user_attr("workdir", trial_workdir(self.root, number))
        trial.set_user_attr("pid", os.getpid())
        deadline = time.time() + self.seconds
        while time.time() < deadline:
            time.sleep(min(0.05, max(deadline - time.time(), 0.0)))
        value = spaces.toy_value(trial.params)
        if self.root:
            _write_json(
                os.path.join(trial_workdir(self.root, number), RESULT_FILE), {"value": value, "params": trial.params}
            )
        return value
