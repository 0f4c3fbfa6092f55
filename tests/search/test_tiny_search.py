"""A real search end to end on PostgreSQL: 3 trials of the digits task under the information-alignment space (thesis
search 4 at a small task's scale), each an ordinary goaldriven-train run; the report's best.gin retrains as is."""

import json
import os
import subprocess
import sys

import optuna

from goaldriven.search import storage

TRIALS = 3
FIXED = ["TRAIN_STEPS = 12", "STEPS_PER_LOOP = 6", "WARMUP_STEPS = 2", "CHECKPOINT_EVERY = 6", "IMAGE_SIZE = 8"]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300)


def test_tiny_learning_rule_search_and_its_best_config_retrains(postgres_url, study_name, tmp_path):
    root = str(tmp_path / "trials")
    where = [f"--study={study_name}", f"--storage={postgres_url}"]
    created = _run(
        "-m", "goaldriven.search_cli", "create", *where, f"--root={root}", "--space=ia",
        "--gin_file=gin/experiments/digits__small_resnet8.gin", *[f"--gin_bindings={b}" for b in FIXED],
        "--space_option=schedule=\"steps\"", "--space_option=batch_sizes=[16, 32]", "--space_option=steps_per_epoch=2",
        "--nocheck_config",  # tests/search/test_spaces.py parses sampled trials; saves a TensorFlow start-up here
    )  # fmt: skip
    assert created.returncode == 0, created.stderr[-2000:]
    worked = _run("-m", "goaldriven.search_cli", "worker", *where, f"--max_trials={TRIALS}", "--strategy=cpu")
    assert worked.returncode == 0, worked.stdout[-2000:] + worked.stderr[-2000:]
    study = optuna.load_study(
        study_name=study_name, storage=storage.make_storage(postgres_url, heartbeat_interval=None)
    )
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(complete) == TRIALS
    for trial in complete:  # each trial's value is the final top-1 its own run wrote
        with open(os.path.join(root, f"trial_{trial.number}", "metrics.json")) as f:
            evaluations = json.load(f)["eval"]
        assert trial.value == max(evaluations, key=lambda e: e["step"])["top1"]
        assert 0.0 <= trial.value <= 1.0
    report_dir = str(tmp_path / "report")
    reported = _run("-m", "goaldriven.search_cli", "report", *where, f"--output_dir={report_dir}")
    assert reported.returncode == 0, reported.stderr[-2000:]
    with open(os.path.join(report_dir, "importances.json")) as f:
        has_importances = "error" not in json.load(f)["fanova"]  # 3 tiny trials may all score the same
    figures = ("history.png", "slice.png", "parallel_coordinates.png") + (
        ("importance.png",) if has_importances else ()
    )
    for name in ("best.gin", "importances.json", *figures):
        assert os.path.getsize(os.path.join(report_dir, name)) > 0, name
    with open(os.path.join(report_dir, "best.gin")) as f:
        best = f.read()
    assert "include 'experiments/digits__small_resnet8.gin'" in best
    assert "LEARNING_RULE = @rules.InformationAlignment()" in best
    retrain = str(tmp_path / "retrain")
    trained = _run("-m", "goaldriven.train", f"--gin_file={report_dir}/best.gin", f"--workdir={retrain}")
    assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-2000:]
    with open(os.path.join(retrain, "metrics.json")) as f:
        assert json.load(f)["eval"][-1]["step"] == 12
    best_trial_config = open(os.path.join(root, f"trial_{study.best_trial.number}", "operative_config.gin")).read()
    retrained_config = open(os.path.join(retrain, "operative_config.gin")).read()
    assert retrained_config == best_trial_config  # the exported file is the best trial's configuration
