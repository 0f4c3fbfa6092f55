"""The goaldriven-train entry point: one-line errors that name the fix, and the config written to the workdir."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENT = "--gin_file=gin/experiments/path_integration__ugrnn_relu_place_cells.gin"
SMOKE = "--gin_file=gin/testing/smoke.gin"


def _train(*args, cwd=REPO, env=None, preexec_fn=None):
    proc = subprocess.run(
        [sys.executable, "-m", "goaldriven.train", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env=None if env is None else {**os.environ, **env},
        preexec_fn=preexec_fn,
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
        ([EXPERIMENT, SMOKE, "--gin_bindings=TRAIN_STEPS = '10'"], "write numbers without quotes: TRAIN_STEPS = 10"),
        ([EXPERIMENT, SMOKE, "--gin_bindings=TRAIN_STEPS = -3"], "macro TRAIN_STEPS = -3 is negative"),
        ([EXPERIMENT, SMOKE, "--gin_bindings=TRAIN_STEPS = %STEPS"], "macro %STEPS is used but never set"),
        ([EXPERIMENT, SMOKE, "--strategy=tpu", "--tpu=local"], "no TPU reachable with --tpu=local"),
    ],
)
def test_bad_invocations_get_one_line_errors(args, expected, tmp_path):
    if "workdir" not in expected:
        args = [*args, f"--workdir={tmp_path}"]
    proc, errors = _train(*args)
    assert proc.returncode != 0
    assert len(errors) == 1, proc.stderr[-2000:]
    assert expected in errors[0], errors[0]


def test_an_undefined_macro_is_named_without_dumping_the_config(tmp_path):
    proc, errors = _train(EXPERIMENT, SMOKE, f"--workdir={tmp_path}", "--gin_bindings=TRAIN_STEPS = %STEPS")
    assert proc.returncode == 2 and len(errors) == 1 and len(errors[0]) < 300, errors


@pytest.mark.parametrize(
    "tf_config, expected",
    [("{bad json", "TF_CONFIG is not valid JSON"), ('{"task": {"type": "worker", "index": 0}}', 'needs a "cluster"')],
)
def test_a_malformed_tf_config_is_one_line(tf_config, expected, tmp_path):
    proc, errors = _train(
        EXPERIMENT, SMOKE, f"--workdir={tmp_path}", "--strategy=multi_worker", env={"TF_CONFIG": tf_config}
    )
    assert proc.returncode == 2 and len(errors) == 1 and expected in errors[0], proc.stderr[-2000:]


def test_a_workdir_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    proc, errors = _train(EXPERIMENT, SMOKE, f"--workdir={tmp_path / 'file'}")
    assert proc.returncode == 2 and len(errors) == 1 and "is a file, not a folder" in errors[0], proc.stderr[-2000:]


def _small_files_only():
    """A file-size limit of 2 kB (writes beyond fail with EFBIG, as a full disk fails with ENOSPC)."""
    import resource  # pylint: disable=g-import-not-at-top
    import signal  # pylint: disable=g-import-not-at-top

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))


def test_a_full_disk_is_one_line_that_names_the_file(tmp_path):
    proc, errors = _train(EXPERIMENT, SMOKE, f"--workdir={tmp_path}", preexec_fn=_small_files_only)
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr[-2000:]
    assert "cannot write /" in errors[0] and "File too large" in errors[0] and "Free space" in errors[0], errors[0]


def test_a_macro_no_config_uses_in_a_users_gin_file_is_warned(tmp_path, capsys):
    from goaldriven import cli_config  # pylint: disable=g-import-not-at-top  (the entry point's parser)

    user = tmp_path / "mine.gin"
    user.write_text("include 'experiments/path_integration__ugrnn_relu_place_cells.gin'\nTRAIN_STESP = 3\n")
    cli_config.parse_gin_config([str(user), "testing/smoke.gin"], ["TRAIN_STEPS = 0"], clear=True)
    err = capsys.readouterr().err
    assert f"warning: macro TRAIN_STESP is set in {user} but no config uses it" in err
    assert "smoke.gin" not in err  # packaged configs serve several tasks: never warned about


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
    # An evaluation into another folder neither rewrites the config nor writes anything in the workdir.
    before = {p: p.stat().st_mtime for p in tmp_path.rglob("*")}
    out = tmp_path.parent / f"{tmp_path.name}_evaluation"
    proc, _ = _train(EXPERIMENT, SMOKE, f"--workdir={tmp_path}", "--mode=eval", f"--output_dir={out}",
                     "--gin_bindings=TRAIN_STEPS = 6", "--gin_bindings=KNOCKOUT_BATCHES = 0")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {p: p.stat().st_mtime for p in tmp_path.rglob("*")} == before
    assert (out / "eval" / "step_6" / "summary.json").exists() and "status evaluated at step 6" in proc.stdout


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
