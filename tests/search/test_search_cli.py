"""goaldriven-search's command line: one-line errors, and `create` enqueueing a released configuration."""

import subprocess
import sys

import optuna
import pytest

from goaldriven.search import spaces, storage


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "goaldriven.search_cli", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "args, message",
    [
        ((), "give one command"),
        (("worker",), "--study is required"),
        (("create", "--study=s", "--root=ROOT", "--space=nope"), "unknown search space 'nope'"),
        (("create", "--study=s", "--root=ROOT", "--space=wm", "--enqueue=rgc_median"), "not a point of space 'wm'"),
        (("worker", "--study=s", "--root=ROOT"), "--max_trials"),
        (("report", "--study=s", "--root=ROOT"), "--output_dir"),
    ],
)
def test_errors_are_one_line(args, message, tmp_path):
    result = _cli(*[a.replace("ROOT", str(tmp_path)) for a in args])
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("goaldriven-search: error: ") and message in last, result.stderr[-1000:]


def test_create_enqueues_rgc_median_and_refuses_a_second_create(tmp_path):
    args = ("create", "--study=rgc", f"--root={tmp_path}", "--space=rgc", "--enqueue=rgc_median", "--nocheck_config")
    assert _cli(*args).returncode == 0
    url = storage.resolve_url(None, str(tmp_path))
    study = optuna.load_study(study_name="rgc", storage=storage.make_storage(url, heartbeat_interval=None))
    (waiting,) = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert waiting.params == {}  # an enqueued trial gets its parameters when a worker runs it ...
    assert waiting.system_attrs["fixed_params"] == spaces.RGC_MEDIAN  # ... from these
    again = _cli(*args)
    assert again.returncode == 2 and "already exists" in again.stderr.strip().splitlines()[-1]
