"""Workers on one PostgreSQL study: a worker killed mid-trial (SIGKILL, as a preempted TPU host) has its trial marked
failed and re-run with the same parameters in the same workdir; the completed count ends equal to the cap."""

import json
import os
import signal
import subprocess
import sys
import time

import optuna

from goaldriven.search import objective, spaces, storage, worker

CAP = 6
STATES = optuna.trial.TrialState


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "goaldriven.search_cli", *args]


def _load(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage.make_storage(url, heartbeat_interval=None))


def test_killed_worker_trial_is_retried_with_same_params(postgres_url, study_name, tmp_path):
    root = str(tmp_path / "trials")
    subprocess.run(
        _cli("create", f"--study={study_name}", f"--storage={postgres_url}", f"--root={root}", "--space=toy"),
        check=True,
        capture_output=True,
    )
    common = [f"--study={study_name}", f"--storage={postgres_url}", f"--max_trials={CAP}", "--heartbeat_interval=1",
              "--grace_period=2", "--poll_seconds=0.3", "--toy_seconds=1.5"]  # fmt: skip
    logs = {name: open(tmp_path / f"{name}.log", "w") for name in ("a", "b")}
    a = subprocess.Popen(_cli("worker", *common, "--worker_name=a"), stdout=logs["a"], stderr=subprocess.STDOUT)
    b = subprocess.Popen(_cli("worker", *common, "--worker_name=b"), stdout=logs["b"], stderr=subprocess.STDOUT)
    try:
        study = _load(postgres_url, study_name)
        deadline, victim = time.time() + 60, None
        while victim is None and time.time() < deadline:
            running = study.get_trials(deepcopy=False, states=(STATES.RUNNING,))
            victim = next((t for t in running if t.user_attrs.get("worker") == "a" and "pid" in t.user_attrs), None)
            time.sleep(0.1)
        assert victim is not None, "worker a never ran a trial: " + open(tmp_path / "a.log").read()[-2000:]
        os.kill(a.pid, signal.SIGKILL)
        a.wait(timeout=10)
        b.wait(timeout=90)
    finally:
        for process in (a, b):
            if process.poll() is None:
                process.kill()
        for f in logs.values():
            f.close()
    assert b.returncode == 0, open(tmp_path / "b.log").read()[-3000:]
    trials = _load(postgres_url, study_name).get_trials()
    killed = next(t for t in trials if t.number == victim.number)
    assert killed.state == STATES.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retries) == 1
    assert retries[0].params == victim.params
    assert retries[0].state == STATES.COMPLETE
    assert retries[0].user_attrs["worker"] == "b"
    assert retries[0].user_attrs["workdir"] == os.path.join(root, f"trial_{victim.number}")
    assert sum(t.state == STATES.COMPLETE for t in trials) == CAP


def test_planted_dominant_parameter_has_fanova_importance_above_0_8(postgres_url, study_name, tmp_path):
    from goaldriven.search import report  # pylint: disable=g-import-not-at-top

    config = worker.SearchConfig(space="toy", root=str(tmp_path), seed=3)
    worker.create_search(study_name, config, postgres_url, log=lambda _: None)
    study, _ = worker.load_search(study_name, storage.make_storage(postgres_url, heartbeat_interval=None))

    def planted(trial):  # only "y" matters; x and kind are noise-free distractors
        spaces.toy_space(trial)
        return -((trial.params["y"] - 0.7) ** 2)

    worker.run_worker(study, planted, max_trials=30, poll_seconds=0.1, log=lambda _: None)
    record = report.importances(study, seeds=(0, 1, 2))
    assert record["fanova"]["y"]["mean"] > 0.8
    assert max(record["fanova"], key=lambda k: record["fanova"][k]["mean"]) == "y"
    assert sum(t.state == STATES.COMPLETE for t in study.get_trials()) == 30


def test_a_saved_result_is_returned_without_training(tmp_path):
    """A trial whose score was saved but not recorded (lost connection) returns the saved score when re-run; the
    experiment here does not exist, so any attempt to train would fail."""
    params = {"x": 0.1, "y": 0.2, "kind": "a"}
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial(params)
    trial = study.ask()
    os.makedirs(tmp_path / "trial_0")
    with open(tmp_path / "trial_0" / objective.RESULT_FILE, "w") as f:
        json.dump({"value": 0.625, "params": params}, f)
    train = objective.TrainObjective(
        root=str(tmp_path), gin_files=["/nonexistent/experiment.gin"], space="toy", log=lambda _: None
    )
    assert train(trial) == 0.625
    assert trial.user_attrs["workdir"] == str(tmp_path / "trial_0")


def test_worker_refuses_a_study_that_was_not_created(postgres_url, tmp_path):
    result = subprocess.run(
        _cli("worker", "--study=never_created_here", f"--storage={postgres_url}", "--max_trials=2"),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "create it first" in result.stderr.strip().splitlines()[-1]
