"""The goaldriven-train entry point: one-line errors that name the fix, and the config written to the workdir."""

import json
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
    return proc, _error_lines(proc.stderr)


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "goaldriven-train: error:" in line or "FATAL Flags" in line]


ERROR_CASES = {  # id -> (arguments, expected text of the one error line); "--workdir=<tmp>" is added unless named
    "unknown binding": ([EXPERIMENT, SMOKE, "--gin_bindings=NO_SUCH_THING.size = 3"], "gin config error"),
    "empty value": ([EXPERIMENT, SMOKE, "--gin_bindings=TRAIN_STEPS = "], "gin config error"),
    "misspelt macro": ([EXPERIMENT, SMOKE, "--gin_bindings=TRAIN_STESP = 5"], "which no config uses"),
    "unused macro": ([EXPERIMENT, SMOKE, "--gin_bindings=TRAIN = 5"], "which no config uses"),
    "no workdir": ([EXPERIMENT, SMOKE], "--workdir is required"),
    "missing file": (["--gin_file=gin/experiments/no_such_experiment.gin"], "not found"),
    "no gin file": ([], "no --gin_file given"),
    "eval without checkpoint": ([EXPERIMENT, SMOKE, "--mode=eval"], "no checkpoint"),
    "quoted number": (
        [EXPERIMENT, SMOKE, "--gin_bindings=TRAIN_STEPS = '10'"],
        "write numbers without quotes: TRAIN_STEPS = 10",
    ),
    "negative steps": ([EXPERIMENT, SMOKE, "--gin_bindings=TRAIN_STEPS = -3"], "macro TRAIN_STEPS = -3 is negative"),
    "undefined macro": (
        [EXPERIMENT, SMOKE, "--gin_bindings=TRAIN_STEPS = %STEPS"],
        "macro %STEPS is used but never set",
    ),
    "no tpu": ([EXPERIMENT, SMOKE, "--strategy=tpu", "--tpu=local"], "no TPU reachable with --tpu=local"),
    "bad TF_CONFIG json": ([EXPERIMENT, SMOKE, "--strategy=multi_worker"], "TF_CONFIG is not valid JSON"),
    "TF_CONFIG without cluster": ([EXPERIMENT, SMOKE, "--strategy=multi_worker"], 'needs a "cluster"'),
    "workdir is a file": ([EXPERIMENT, SMOKE, "--workdir=<file>"], "is a file, not a folder"),
    "unknown strategy": ([EXPERIMENT, SMOKE, "--strategy=quantum"], "mirrored"),
}
ENVIRONMENTS = {
    "bad TF_CONFIG json": {"TF_CONFIG": "{bad json"},
    "TF_CONFIG without cluster": {"TF_CONFIG": '{"task": {"type": "worker", "index": 0}}'},
}


@pytest.fixture(scope="module")
def error_runs(tmp_path_factory):
    """Every ERROR_CASES command line, run in one process by tests/train_cli_batch.py: id -> (result, error lines)."""
    root = tmp_path_factory.mktemp("train_errors")
    (root / "file").write_text("")
    runs = []
    for i, (name, (args, _)) in enumerate(ERROR_CASES.items()):
        args = [a.replace("<file>", str(root / "file")) for a in args]
        if name != "no workdir" and not any(a.startswith("--workdir") for a in args):
            args.append(f"--workdir={root / str(i)}")
        runs.append({"args": args, "env": ENVIRONMENTS.get(name, {})})
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "tests", "train_cli_batch.py"), json.dumps(runs)],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    return {name: (result, _error_lines(result["stderr"])) for name, result in zip(ERROR_CASES, results)}


@pytest.mark.parametrize("name", list(ERROR_CASES))
def test_bad_invocations_get_one_line_errors(name, error_runs):
    result, errors = error_runs[name]
    assert result["returncode"] != 0
    assert len(errors) == 1, result["stderr"][-2000:]
    assert ERROR_CASES[name][1] in errors[0], errors[0]


def test_config_errors_exit_2_and_an_undefined_macro_is_named_without_dumping_the_config(error_runs):
    for name in ("undefined macro", "bad TF_CONFIG json", "TF_CONFIG without cluster", "workdir is a file"):
        assert error_runs[name][0]["returncode"] == 2, name
    assert len(error_runs["undefined macro"][1][0]) < 300


def test_unknown_strategy_is_refused_by_the_flag_parser_listing_the_kinds(error_runs):
    result, errors = error_runs["unknown strategy"]
    assert "FATAL Flags" in errors[0] and "tpu" in errors[0] and "mirrored" in errors[0]


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
