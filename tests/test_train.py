"""The goaldriven-train entry point: one-line errors that name the fix, and the config written to the workdir."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENT = "--gin_file=gin/experiments/path_integration__ugrnn_relu_place_cells.gin"
SMOKE = "--gin_file=gin/testing/smoke.gin"


def _train(*args, cwd=REPO):
    proc = subprocess.run(
        [sys.executable, "-m", "goaldriven.train", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    errors = [line for line in proc.stderr.splitlines() if "goaldriven-train: error:" in line or "FATAL Flags" in line]
    return proc, errors


@pytest.mark.parametrize(
    "args, expected",
    [
        ([EXPERIMENT, SMOKE, "--gin_bindings=NO_SUCH_THING.size = 3"], "gin config error"),
        ([EXPERIMENT, SMOKE, "--gin_bindings=TRAIN_STEPS = "], "gin config error"),
        ([EXPERIMENT, SMOKE, "--gin_bindings=TRAIN_STESP = 5"], "which no config uses"),
        ([EXPERIMENT, SMOKE, "--gin_bindings=TRAIN = 5"], "which no config uses"),
        ([EXPERIMENT, SMOKE], "--workdir is required"),
        (["--gin_file=gin/experiments/no_such_experiment.gin"], "not found"),
        ([], "no --gin_file given"),
        ([EXPERIMENT, SMOKE, "--mode=eval"], "no checkpoint"),
    ],
)
def test_bad_invocations_get_one_line_errors(args, expected, tmp_path):
    if "workdir" not in expected:
        args = [*args, f"--workdir={tmp_path}"]
    proc, errors = _train(*args)
    assert proc.returncode != 0
    assert len(errors) == 1, proc.stderr[-2000:]
    assert expected in errors[0], errors[0]


def test_unknown_strategy_is_refused_by_the_flag_parser(tmp_path):
    proc, errors = _train(EXPERIMENT, SMOKE, f"--workdir={tmp_path}", "--strategy=quantum")
    assert proc.returncode != 0 and len(errors) == 1
    assert "tpu" in errors[0] and "mirrored" in errors[0]  # lists the valid kinds


def test_run_writes_config_metrics_and_finishes(tmp_path):
    proc, errors = _train(EXPERIMENT, SMOKE, f"--workdir={tmp_path}", "--gin_bindings=KNOCKOUT_BATCHES = 0")
    assert proc.returncode == 0 and not errors, proc.stderr[-2000:]
    config = (tmp_path / "operative_config.gin").read_text()
    assert "build_path_integrator.kind = 'ugrnn'" in config and "TRAIN_STEPS = 4" in config
    assert "done: status finished at step 4" in proc.stdout
    assert (tmp_path / "training_curves.png").stat().st_size > 1000
    # A rerun with a different config keeps the first run's operative config and writes its own beside it.
    proc, _ = _train(
        EXPERIMENT,
        SMOKE,
        f"--workdir={tmp_path}",
        "--gin_bindings=TRAIN_STEPS = 6",
        "--gin_bindings=KNOCKOUT_BATCHES = 0",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "operative_config.gin").read_text() == config
    assert len(list(tmp_path.glob("operative_config.*.gin"))) == 1


def test_configs_are_found_from_another_directory(tmp_path):
    proc, errors = _train(
        "--gin_file=experiments/path_integration__ugrnn_relu_place_cells.gin",
        "--gin_file=testing/smoke.gin",
        f"--workdir={tmp_path / 'w'}",
        "--gin_bindings=KNOCKOUT_BATCHES = 0",
        "--gin_bindings=TRAIN_STEPS = 2",
        cwd=str(tmp_path),
    )
    assert proc.returncode == 0 and not errors, proc.stderr[-2000:]
